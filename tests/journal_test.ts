/** Tests of lib/shared/journal.ts: the range set, and a journal that is atomic and refuses to be misread. */
import assert from "node:assert/strict";
import fc from "fast-check";
import { join } from "node:path";
import {
  journalTempPathFor,
  loadJournal,
  RangeSet,
  removeJournal,
  sameIdentity,
  saveJournal,
} from "../lib/shared/journal.ts";

Deno.test("RangeSet merges overlapping and touching ranges and reports the gaps", () => {
  const r = new RangeSet([[10, 20], [0, 5], [5, 8], [18, 30]]);
  assert.deepEqual(r.toArray(), [[0, 8], [10, 30]]);
  assert.equal(r.covered, 28);
  assert.deepEqual(r.gaps(40), [[8, 10], [30, 40]]);
  assert.equal(r.isComplete(30), false);
  r.add(8, 10);
  assert.equal(r.isComplete(30), true);
  assert.deepEqual(new RangeSet().gaps(0), []);
  assert.equal(new RangeSet().isComplete(0), true);
});

Deno.test("RangeSet: covered bytes plus gaps always make up the whole file", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 10_000 }),
      fc.array(fc.tuple(fc.nat(10_000), fc.nat(10_000))),
      (size, pairs) => {
        const r = new RangeSet(
          pairs.map((
            [a, b],
          ) => [Math.min(a, b, size), Math.min(Math.max(a, b), size)]),
        );
        const gaps = r.gaps(size);
        const gapBytes = gaps.reduce((n, [s, e]) => n + e - s, 0);
        assert.equal(r.covered + gapBytes, size);
        const arr = r.toArray();
        for (let i = 1; i < arr.length; i++) {
          assert.ok(arr[i][0] > arr[i - 1][1]);
        }
        assert.equal(r.isComplete(size), gaps.length === 0);
      },
    ),
  );
});

Deno.test("saveJournal() and loadJournal() round-trip; a torn or foreign journal reads as absent", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "x.hsync-journal");
    const data = {
      version: 1 as const,
      remote: { size: 100, mtime: 5, etag: '"a"' },
      done: [[0, 10], [20, 30]] as Array<[number, number]>,
    };
    await saveJournal(path, data);
    assert.deepEqual(await loadJournal(path), data);
    await assert.rejects(() => Deno.stat(journalTempPathFor(path)));
    for (
      const bad of [
        "",
        "{",
        '{"version":2}',
        JSON.stringify({ ...data, done: [[0, 200]] }),
        JSON.stringify({ ...data, done: [[5, 2]] }),
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

Deno.test("RangeSet.remove() cuts bytes out of ranges, and covered plus gaps still make the whole", () => {
  const r = new RangeSet([[0, 100], [200, 300]]);
  r.remove(50, 250);
  assert.deepEqual(r.toArray(), [[0, 50], [250, 300]]);
  r.remove(0, 10);
  r.remove(290, 400);
  r.remove(20, 20);
  assert.deepEqual(r.toArray(), [[10, 50], [250, 290]]);
  assert.deepEqual(r.gaps(300), [[0, 10], [50, 250], [290, 300]]);
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(1000), fc.nat(1000), fc.boolean()), {
        maxLength: 30,
      }),
      (ops) => {
        const set = new RangeSet();
        const bits = new Uint8Array(1000);
        for (const [a, b, add] of ops) {
          const [s, e] = a <= b ? [a, b] : [b, a];
          if (add) set.add(s, e);
          else set.remove(s, e);
          bits.fill(add ? 1 : 0, s, e);
        }
        const want = bits.reduce((n, x) => n + x, 0);
        assert.equal(set.covered, want);
        for (const [s, e] of set.toArray()) {
          assert.ok(s < e);
          for (let i = s; i < e; i++) assert.equal(bits[i], 1);
        }
      },
    ),
  );
});

Deno.test("saveJournal() replaces a planted temporary link without following it; removeJournal() removes both names", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "x.hsync-journal");
    const victim = join(dir, "victim.txt");
    await Deno.writeTextFile(victim, "keep");
    await Deno.symlink(victim, journalTempPathFor(path));
    const data = {
      version: 1 as const,
      remote: { size: 10, mtime: 1, etag: '"e"' },
      done: [[0, 5]] as Array<[number, number]>,
    };
    await saveJournal(path, data);
    assert.equal(await Deno.readTextFile(victim), "keep");
    assert.deepEqual(await loadJournal(path), data);
    // A journal that is a link is not believed.
    await Deno.remove(path);
    await Deno.writeTextFile(victim, JSON.stringify(data));
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
      version: 1,
      remote,
      done: [[0, 10]],
      unflushed: [[5, 20], [30, 40]],
    });
    assert.deepEqual(await loadJournal(path), {
      version: 1,
      remote,
      done: [[0, 10]],
      unflushed: [[10, 20], [30, 40]],
    });
    await saveJournal(path, { version: 1, remote, done: [[0, 10]] });
    assert.deepEqual(await loadJournal(path), {
      version: 1,
      remote,
      done: [[0, 10]],
    });
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
