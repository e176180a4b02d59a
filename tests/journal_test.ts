/** Tests of lib/shared/journal.ts: a journal that is atomic, refuses to be misread, and keeps the format of journals already on disk. */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  loadJournal,
  removeJournal,
  sameIdentity,
  saveJournal,
} from "../lib/shared/journal.ts";
import { journalTempPathFor } from "../lib/shared/part_file.ts";

/** `[start, end)` pairs as ranges, for short tables. */
function r(...pairs: Array<[number, number]>) {
  return pairs.map(([start, end]) => ({ start, end }));
}

Deno.test("saveJournal() and loadJournal() round-trip; a torn or foreign journal reads as absent", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "x.hsync-journal");
    const data = {
      remote: { size: 100, mtime: 5, etag: '"a"' },
      done: r([0, 10], [20, 30]),
    };
    await saveJournal(path, data);
    assert.deepEqual(await loadJournal(path), data);
    await assert.rejects(() => Deno.stat(journalTempPathFor(path)));
    for (
      const bad of [
        "",
        "{",
        '{"version":2}',
        JSON.stringify({ version: 1, ...data, done: [[0, 200]] }),
        JSON.stringify({ version: 1, ...data, done: [[5, 2]] }),
      ]
    ) {
      await Deno.writeTextFile(path, bad);
      assert.equal(await loadJournal(path), undefined, bad);
    }
    assert.equal(await loadJournal(join(dir, "absent")), undefined);
    assert.ok(sameIdentity(data.remote, { size: 100, mtime: 5, etag: '"a"' }));
    assert.ok(!sameIdentity(data.remote, { size: 100, mtime: 6, etag: '"a"' }));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("saveJournal() replaces a planted temporary link without following it; removeJournal() removes both names", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "x.hsync-journal");
    const victim = join(dir, "victim.txt");
    await Deno.writeTextFile(victim, "keep");
    await Deno.symlink(victim, journalTempPathFor(path));
    const data = {
      remote: { size: 10, mtime: 1, etag: '"e"' },
      done: r([0, 5]),
    };
    await saveJournal(path, data);
    assert.equal(await Deno.readTextFile(victim), "keep");
    assert.deepEqual(await loadJournal(path), data);
    // A journal that is a link is not believed.
    await Deno.remove(path);
    await Deno.writeTextFile(
      victim,
      JSON.stringify({ version: 1, ...data, done: [[0, 5]] }),
    );
    await Deno.symlink(victim, path);
    assert.equal(await loadJournal(path), undefined);
    await Deno.writeTextFile(journalTempPathFor(path), "torn");
    await removeJournal(path);
    await removeJournal(path);
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name),
      ["victim.txt"],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadJournal() reads unflushed ranges apart from the claimed ones, and refuses malformed ones", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "x.hsync-journal");
    const remote = { size: 100, mtime: 5, etag: '"a"' };
    await saveJournal(path, {
      remote,
      done: r([0, 10]),
      unflushed: r([5, 20], [30, 40]),
    });
    assert.deepEqual(await loadJournal(path), {
      remote,
      done: r([0, 10]),
      unflushed: r([10, 20], [30, 40]),
    });
    await saveJournal(path, { remote, done: r([0, 10]) });
    assert.deepEqual(await loadJournal(path), { remote, done: r([0, 10]) });
    for (const unflushed of [[[0, 101]], [[3, 1]], "x", [[1]]]) {
      await Deno.writeTextFile(
        path,
        JSON.stringify({ version: 1, remote, done: [], unflushed }),
      );
      assert.equal(await loadJournal(path), undefined, String(unflushed));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a journal on disk keeps its format: ranges as [start, end) pairs, padded to a page", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "x.hsync-journal");
    const remote = { size: 100, mtime: 5, etag: '"a"' };
    await saveJournal(path, {
      remote,
      done: r([0, 10]),
      unflushed: r([20, 30]),
    });
    const text = await Deno.readTextFile(path);
    assert.equal(text.length, 4096);
    assert.equal(
      text.trimEnd(),
      '{"version":1,"remote":{"size":100,"mtime":5,"etag":"\\"a\\""},"done":[[0,10]],"unflushed":[[20,30]]}',
    );
    // A journal written by an earlier hsync reads as it did.
    await Deno.writeTextFile(
      path,
      JSON.stringify({ version: 1, remote, done: [[0, 10], [10, 20]] }),
    );
    assert.deepEqual(await loadJournal(path), { remote, done: r([0, 20]) });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
