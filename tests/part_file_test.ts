/** Tests of lib/shared/part_file.ts: a part file is created fresh, stamped through its own handle, and renamed only while it is still itself. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileIdOf } from "../lib/shared/checked_open.ts";
import { LocalPathError } from "../lib/shared/errors.ts";
import {
  applyMeta,
  createPart,
  journalPathFor,
  journalTempPathFor,
  partNameFor,
  partPathFor,
  placePart,
  readyToSetModes,
  renamePartSync,
  writeNewPart,
} from "../lib/shared/part_file.ts";
import { existsSync } from "./_programs.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("partPathFor() and journalPathFor() name the part and journal beside the final path", () => {
  assert.equal(partPathFor("/o/a.bin"), "/o/a.bin.hsync-part");
  assert.equal(journalPathFor("/o/a.bin"), "/o/a.bin.hsync-journal");
});

Deno.test("a name too long for its part or journal suffix gets a shortened own name: within 255 bytes, the same every time, different for another name, cut between characters", async () => {
  const bytes = (s: string) => new TextEncoder().encode(s).length;
  const long = "a".repeat(250);
  const part = partPathFor(`/d/${long}`);
  assert.ok(part.startsWith("/d/a"));
  const name = part.slice(3);
  assert.ok(bytes(name) <= 255, `${bytes(name)} bytes`);
  assert.match(name, /^a+~[0-9a-f]{16}\.hsync-part$/);
  assert.equal(partPathFor(`/d/${long}`), part, "the same every run");
  assert.notEqual(partPathFor(`/d/${long.slice(1)}b`), part);
  const journal = journalPathFor(`/d/${long}`).slice(3);
  assert.ok(bytes(journal) <= 255 && journal.endsWith(".hsync-journal"));
  assert.ok(bytes(journalTempPathFor(`/d/${journal}`).slice(3)) <= 255);
  // Two-byte characters: the cut never splits one.
  const accented = "\u00e9".repeat(124);
  const own = partNameFor(accented);
  assert.ok(bytes(own) <= 255);
  assert.match(own, /^\u00e9+~[0-9a-f]{16}\.hsync-part$/);
  // A name that fits keeps the plain form, the one earlier runs left.
  assert.equal(partNameFor("a".repeat(244)), `${"a".repeat(244)}.hsync-part`);
  // And such a file can be made and found.
  await withDir(async (dir) => {
    const file = createPart(partPathFor(join(dir, long)));
    file.close();
    assert.ok((await Deno.lstat(partPathFor(join(dir, long)))).isFile);
  });
});

Deno.test("createPart() makes a new empty file; a leftover or a planted link is removed, never followed, and onLeftover is told", async () => {
  await withDir(async (dir) => {
    const part = join(dir, "f.hsync-part");
    let leftovers = 0;
    const onLeftover = () => leftovers++;
    createPart(part, { onLeftover }).close();
    assert.equal(leftovers, 0);
    await Deno.writeTextFile(part, "stale");
    createPart(part, { onLeftover }).close();
    assert.equal(leftovers, 1);
    assert.equal(await Deno.readTextFile(part), "");
    const victim = join(dir, "victim");
    await Deno.writeTextFile(victim, "keep");
    await Deno.remove(part);
    await Deno.symlink(victim, part);
    using file = createPart(part, { onLeftover });
    assert.equal(leftovers, 2);
    await file.write(new TextEncoder().encode("mine"));
    assert.equal(await Deno.readTextFile(victim), "keep");
    assert.ok((await Deno.lstat(part)).isFile);
  });
});

Deno.test("placePart() sets mtime and mode, runs beforeRename, then renames the part into place", async () => {
  await withDir(async (dir) => {
    const target = join(dir, "f");
    const part = partPathFor(target);
    let id;
    {
      using file = createPart(part);
      await file.write(new TextEncoder().encode("data"));
      id = fileIdOf(file.statSync());
    }
    const order: string[] = [];
    await placePart(part, id, target, {
      mtime: 1_500_000_000_000,
      mode: 0o640,
      beforeRename: async () => {
        order.push((await Deno.lstat(part)).isFile ? "part still there" : "?");
      },
    });
    assert.deepEqual(order, ["part still there"]);
    const info = await Deno.lstat(target);
    assert.equal(info.mtime?.getTime(), 1_500_000_000_000);
    assert.equal(info.mode! & 0o7777, 0o640);
    assert.equal(await Deno.readTextFile(target), "data");
    await assert.rejects(() => Deno.lstat(part));
  });
});

Deno.test("placePart() and renamePartSync() never move a link or another file swapped in at the part's name", async () => {
  await withDir(async (dir) => {
    const target = join(dir, "f");
    const part = partPathFor(target);
    const victim = join(dir, "victim");
    await Deno.writeTextFile(victim, "keep");
    await Deno.chmod(victim, 0o600);
    let id;
    {
      using file = createPart(part);
      id = fileIdOf(file.statSync());
    }
    // Moved away, not removed: its inode number cannot come back at the name.
    await Deno.rename(part, join(dir, "away"));
    await Deno.symlink(victim, part);
    await assert.rejects(
      () => placePart(part, id, target, { mtime: 0, mode: 0o777 }),
      (e: unknown) =>
        e instanceof LocalPathError && /symbolic link/.test(e.message),
    );
    assert.throws(
      () => renamePartSync(part, id, target),
      (e: unknown) =>
        e instanceof LocalPathError && /symbolic link/.test(e.message),
    );
    await Deno.remove(part);
    await Deno.writeTextFile(part, "theirs");
    assert.throws(() => renamePartSync(part, id, target), /replaced/);
    await assert.rejects(() => Deno.lstat(target));
    assert.equal(await Deno.readTextFile(victim), "keep");
    assert.equal((await Deno.stat(victim)).mode! & 0o7777, 0o600);
  });
});

Deno.test("applyMeta() leaves the time alone without an mtime", async () => {
  await withDir(async (dir) => {
    const part = join(dir, "p");
    using file = createPart(part);
    await file.write(new Uint8Array(1));
    const before = file.statSync().mtime?.getTime();
    applyMeta(file, part, {});
    assert.equal(file.statSync().mtime?.getTime(), before);
    applyMeta(file, part, { mtime: 1000, mode: 0o600 });
    assert.equal(file.statSync().mtime?.getTime(), 1000);
    assert.equal(file.statSync().mode! & 0o7777, 0o600);
  });
});

Deno.test("writeNewPart() writes the whole part through one descriptor: bytes, mtime to the millisecond, mode; the identity it returns is the file's", async () => {
  // Through node's descriptor (a Deno handle before: tests/pull_modes_test.ts).
  await readyToSetModes();
  await withDir(async (dir) => {
    // 1796578193.554 s, set as floating seconds, read back as .553999900.
    for (const mtime of [1796578193554, 1_600_000_000_123, 999]) {
      const part = join(dir, `f${mtime}.hsync-part`);
      const data = new Uint8Array(5000).map((_, i) => i & 0xff);
      const id = writeNewPart(part, data, { mtime, mode: 0o640 });
      assert.deepEqual(await Deno.readFile(part), data);
      const st = await Deno.lstat(part);
      assert.equal(st.mtime?.getTime(), mtime);
      assert.equal(st.mode! & 0o7777, 0o640);
      assert.deepEqual(id, fileIdOf(st));
    }
  });
});

Deno.test("writeNewPart() removes a leftover or a planted link, never following it, tells onLeftover, and names the part when it cannot write", async () => {
  await withDir(async (dir) => {
    const outside = join(dir, "outside");
    await Deno.writeTextFile(outside, "keep");
    const part = join(dir, "a.hsync-part");
    await Deno.symlink(outside, part);
    let told = 0;
    writeNewPart(part, new TextEncoder().encode("new"), {}, {
      onLeftover: () => told++,
    });
    assert.equal(told, 1);
    assert.equal(await Deno.readTextFile(outside), "keep");
    assert.ok((await Deno.lstat(part)).isFile);
    assert.equal(await Deno.readTextFile(part), "new");
    // A dangling link too: the create never makes its target.
    const dangling = join(dir, "b.hsync-part");
    await Deno.symlink(join(dir, "nowhere"), dangling);
    writeNewPart(dangling, new Uint8Array(1), {});
    assert.ok(!existsSync(join(dir, "nowhere")));
    const missing = join(dir, "no-such-dir", "c.hsync-part");
    assert.throws(
      () => writeNewPart(missing, new Uint8Array(1), {}),
      (error: unknown) =>
        error instanceof LocalPathError && error.path === missing &&
        /no such file or directory/.test(error.message),
    );
  });
});

Deno.test("writeNewPart() sets a time before 1970 too (node's futimes would take it as now)", async () => {
  await readyToSetModes();
  await withDir(async (dir) => {
    for (const mtime of [-18489600000, -1500]) {
      const part = join(dir, `old${mtime}.hsync-part`);
      const id = writeNewPart(part, new TextEncoder().encode("old"), {
        mtime,
        mode: 0o600,
      });
      const st = await Deno.lstat(part);
      assert.equal(st.mtime?.getTime(), mtime);
      assert.equal(st.mode! & 0o7777, 0o600);
      assert.deepEqual(id, fileIdOf(st));
      assert.equal(await Deno.readTextFile(part), "old");
    }
  });
});
