/** Tests of lib/shared/atomic_file.ts: a file replaced whole or not at all, never through a planted link. */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  removeIfPresent,
  replaceFile,
  replaceFileKeepOpen,
} from "../lib/shared/atomic_file.ts";

const enc = new TextEncoder();

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function names(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

Deno.test("replaceFile() replaces the whole file and leaves no temporary file", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "state.json");
    await replaceFile(path, enc.encode("one"));
    await replaceFile(path, enc.encode("two, longer"));
    assert.equal(await Deno.readTextFile(path), "two, longer");
    await replaceFile(path, enc.encode("x"), { sync: false });
    assert.equal(await Deno.readTextFile(path), "x");
    assert.deepEqual(names(dir), ["state.json"]);
  });
});

Deno.test("replaceFile() removes a link planted at its temporary name without following it", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "j");
    const temp = join(dir, "j.reserved");
    const victim = join(dir, "victim");
    await Deno.writeTextFile(victim, "keep");
    await Deno.symlink(victim, temp);
    await replaceFile(path, enc.encode("new"), { temp });
    assert.equal(await Deno.readTextFile(victim), "keep");
    assert.equal(await Deno.readTextFile(path), "new");
    assert.deepEqual(names(dir), ["j", "victim"]);
  });
});

Deno.test("replaceFile() replaces a link at the name itself, never its target", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "state.json");
    const victim = join(dir, "victim");
    await Deno.writeTextFile(victim, "keep");
    await Deno.symlink(victim, path);
    await replaceFile(path, enc.encode("new"));
    assert.equal(await Deno.readTextFile(victim), "keep");
    assert.ok((await Deno.lstat(path)).isFile);
    assert.equal(await Deno.readTextFile(path), "new");
  });
});

Deno.test("a failed replaceFile() leaves the old file and no temporary file", async () => {
  await withDir(async (dir) => {
    // A directory at the name: the rename fails.
    const path = join(dir, "d");
    await Deno.mkdir(path);
    await Deno.writeTextFile(join(path, "inside"), "old");
    await assert.rejects(() => replaceFile(path, enc.encode("new")));
    assert.deepEqual(names(dir), ["d"]);
    assert.equal(await Deno.readTextFile(join(path, "inside")), "old");
  });
});

Deno.test("replaceFileKeepOpen() writes later bytes to the inode it made, not to a link planted at its name", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "j");
    const victim = join(dir, "victim");
    await Deno.writeTextFile(victim, "keep");
    using file = await replaceFileKeepOpen(path, enc.encode("aaaa"));
    const inode = (await Deno.lstat(path)).ino;
    await Deno.rename(path, join(dir, "moved"));
    await Deno.symlink(victim, path);
    await file.seek(0, Deno.SeekMode.Start);
    await file.write(enc.encode("bbbb"));
    assert.equal(await Deno.readTextFile(victim), "keep");
    assert.equal((await Deno.lstat(join(dir, "moved"))).ino, inode);
    assert.equal(await Deno.readTextFile(join(dir, "moved")), "bbbb");
  });
});

Deno.test("removeIfPresent() removes a link itself and accepts an absent name", async () => {
  await withDir(async (dir) => {
    const victim = join(dir, "victim");
    await Deno.writeTextFile(victim, "keep");
    await Deno.symlink(victim, join(dir, "link"));
    await removeIfPresent(join(dir, "link"));
    await removeIfPresent(join(dir, "absent"));
    assert.deepEqual(names(dir), ["victim"]);
  });
});
