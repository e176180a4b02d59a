/** Tests of lib/client/local_read.ts: a small local file is read whole only through a descriptor proven to be the file the walk found. */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  readSmallLocal,
  type Walked,
  walkedOf,
} from "../lib/client/local_read.ts";
import { tempDir } from "./_programs.ts";

function idOf(path: string): Walked {
  return walkedOf(Deno.lstatSync(path));
}

function refusedWith(why: RegExp) {
  return (error: unknown) => error instanceof Error && why.test(error.message);
}

Deno.test("readSmallLocal() gives the bytes and the fstat of the very file the walk found", async () => {
  await using dir = await tempDir();
  const path = join(dir.path, "a.txt");
  await Deno.writeTextFile(path, "hello");
  await Deno.utime(path, new Date(), new Date(1_600_000_000_123));
  const got = readSmallLocal(path, idOf(path), 64);
  assert.equal(got.kind, "read");
  if (got.kind !== "read") return;
  assert.equal(new TextDecoder().decode(got.data), "hello");
  assert.equal(got.info.size, 5);
  assert.equal(got.info.mtime?.getTime(), 1_600_000_000_123);
  assert.deepEqual(
    { dev: got.info.dev, ino: got.info.ino },
    idOf(path).id,
  );
  // Empty is read too.
  const empty = join(dir.path, "empty");
  await Deno.writeFile(empty, new Uint8Array(0));
  const none = readSmallLocal(empty, idOf(empty), 64);
  assert.equal(none.kind === "read" && none.data.length, 0);
});

Deno.test("readSmallLocal() takes a file written since the walk as it is now: its bytes with the fstat of those very bytes", async () => {
  await using dir = await tempDir();
  const path = join(dir.path, "f");
  await Deno.writeTextFile(path, "before");
  await Deno.utime(path, new Date(), new Date(1_600_000_000_000));
  const walked = idOf(path);
  // The same size, another time; then the same time set back (its ctime
  // still tells the write).
  for (
    const [text, ms] of [["after1", 1_700_000_000_000], [
      "after2",
      1_600_000_000_000,
    ]] as const
  ) {
    await Deno.writeTextFile(path, text);
    await Deno.utime(path, new Date(), new Date(ms));
    const got = readSmallLocal(path, walked, 64);
    assert.equal(got.kind, "read");
    if (got.kind !== "read") return;
    assert.equal(new TextDecoder().decode(got.data), text);
    assert.equal(got.info.mtime?.getTime(), ms);
    assert.equal(
      got.info.ctime?.getTime(),
      Deno.lstatSync(path).ctime?.getTime(),
    );
  }
  // Shorter and longer than the walk saw: read whole as they are.
  for (const text of ["x", "a longer text"]) {
    await Deno.writeTextFile(path, text);
    const got = readSmallLocal(path, walked, 64);
    assert.equal(
      got.kind === "read" && new TextDecoder().decode(got.data),
      text,
    );
    assert.equal(got.kind === "read" && got.info.size, text.length);
  }
});

Deno.test("readSmallLocal() tells a file that grew past the size asked for, reading none of it", async () => {
  await using dir = await tempDir();
  const path = join(dir.path, "grew");
  await Deno.writeFile(path, new Uint8Array(100));
  const got = readSmallLocal(path, idOf(path), 64);
  assert.equal(got.kind, "big");
  assert.equal(got.kind === "big" && got.info.size, 100);
});

Deno.test("readSmallLocal() never gives the bytes of a symlink, a FIFO or another inode swapped in at the name", async () => {
  await using dir = await tempDir();
  const path = join(dir.path, "f");
  await Deno.writeTextFile(path, "mine");
  const walked = idOf(path);
  const secret = join(dir.path, "secret");
  await Deno.writeTextFile(secret, "not yours");

  // Another file renamed over the name.
  const other = join(dir.path, "other");
  await Deno.writeTextFile(other, "other");
  await Deno.rename(other, path);
  assert.throws(
    () => readSmallLocal(path, walked, 64),
    refusedWith(/^Cannot read ".*\/f": it was replaced while hsync used it$/),
  );

  // A symbolic link to another file, the walked one still alive elsewhere
  // (its inode number cannot be reused meanwhile).
  const mine = idOf(path);
  await Deno.rename(path, join(dir.path, "kept"));
  await Deno.symlink(secret, path);
  assert.throws(
    () => readSmallLocal(path, mine, 64),
    refusedWith(/it was replaced while hsync used it$/),
  );

  // A FIFO: opened without blocking (no writer), then refused.
  await Deno.remove(path);
  const made = await new Deno.Command("mkfifo", { args: [path] }).output();
  assert.ok(made.success, "mkfifo");
  assert.throws(
    () => readSmallLocal(path, idOf(path), 64),
    refusedWith(/it was replaced while hsync used it$/),
  );
});

Deno.test("readSmallLocal() names the path and the cause when the file cannot be opened", async () => {
  await using dir = await tempDir();
  const path = join(dir.path, "gone");
  assert.throws(
    () =>
      readSmallLocal(path, {
        id: { dev: 1, ino: 1 },
        size: 0,
        mtime: 0,
        changedMs: 0,
      }, 64),
    refusedWith(/^Cannot read ".*\/gone": no such file or directory$/),
  );
});
