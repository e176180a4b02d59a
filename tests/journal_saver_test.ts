/** Tests of lib/shared/journal_saver.ts: the journal of a part file claims only flushed bytes and tells the rest as unflushed, whoever writes the part. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileIdOf } from "../lib/shared/checked_open.ts";
import { WrittenRanges } from "../lib/shared/chunk_writer.ts";
import { LocalPathError } from "../lib/shared/errors.ts";
import { loadJournal } from "../lib/shared/journal.ts";
import { JournalSaver } from "../lib/shared/journal_saver.ts";
import { RangeSet } from "../lib/shared/range_set.ts";

const identity = { size: 1000, mtime: 5, etag: '"e"' };

async function withPart(
  fn: (paths: { part: string; journal: string; dir: string }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    const part = join(dir, "f.hsync-part");
    await Deno.writeFile(part, new Uint8Array(600));
    await fn({ part, journal: join(dir, "f.hsync-journal"), dir });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a JournalSaver writes what was written as unflushed, and claims it only after a flush", async () => {
  await withPart(async ({ part, journal }) => {
    const written = new WrittenRanges([{ start: 0, end: 200 }]);
    const saver = JournalSaver.open({
      journal,
      part,
      partId: fileIdOf(await Deno.lstat(part)),
      identity,
      written,
      intervalMs: 1e9,
      flushed: new RangeSet([{ start: 0, end: 100 }]),
    });
    try {
      await saver.write();
      assert.deepEqual(await loadJournal(journal), {
        remote: identity,
        done: [{ start: 0, end: 100 }],
        unflushed: [{ start: 100, end: 200 }],
      });
      written.add({ start: 400, end: 600 });
      await saver.flushAndWrite();
      assert.deepEqual(await loadJournal(journal), {
        remote: identity,
        done: [{ start: 0, end: 200 }, { start: 400, end: 600 }],
      });
    } finally {
      saver.close();
    }
  });
});

Deno.test("a started JournalSaver saves bytes as they arrive, without being asked", async () => {
  await withPart(async ({ part, journal }) => {
    const written = new WrittenRanges();
    const saver = JournalSaver.open({
      journal,
      part,
      partId: fileIdOf(await Deno.lstat(part)),
      identity,
      written,
      intervalMs: 20,
    });
    try {
      saver.start();
      written.add({ start: 0, end: 300 });
      let saved;
      for (let i = 0; i < 200; i++) {
        saved = await loadJournal(journal);
        const bytes = [...(saved?.done ?? []), ...(saved?.unflushed ?? [])]
          .reduce((n, r) => n + r.end - r.start, 0);
        if (bytes === 300) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.equal(saved?.remote.etag, '"e"');
      assert.equal(
        [...saved!.done, ...(saved!.unflushed ?? [])].reduce(
          (n, r) => n + r.end - r.start,
          0,
        ),
        300,
      );
      await saver.stop();
    } finally {
      saver.close();
    }
  });
});

Deno.test("a JournalSaver refuses a part file that is not the inode it was given", async () => {
  await withPart(async ({ part, journal, dir }) => {
    const partId = fileIdOf(await Deno.lstat(part));
    await Deno.rename(part, join(dir, "away"));
    await Deno.writeFile(part, new Uint8Array(600));
    assert.throws(
      () =>
        JournalSaver.open({
          journal,
          part,
          partId,
          identity,
          written: new WrittenRanges(),
          intervalMs: 1000,
        }),
      (e: unknown) => e instanceof LocalPathError && /replaced/.test(e.message),
    );
  });
});
