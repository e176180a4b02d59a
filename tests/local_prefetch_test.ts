/** Tests of lib/client/local_prefetch.ts: what a push's walk finds read ahead, and what is never read ahead. */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  LocalPrefetch,
  type PrefetchOptions,
} from "../lib/client/local_prefetch.ts";
import { tempDir } from "./_programs.ts";

function prefetch(options: Partial<PrefetchOptions> = {}): LocalPrefetch {
  return new LocalPrefetch({
    smallBytes: 64,
    readFiles: true,
    wanted: () => true,
    ...options,
  });
}

function idOf(info: Deno.FileInfo) {
  return { dev: info.dev, ino: info.ino ?? -1 };
}

/** A tree: a/1 (3 bytes), a/b/2 (5 bytes), big (100 bytes), link -> a/1, skip/3. */
async function tree(root: string): Promise<void> {
  await Deno.mkdir(join(root, "a", "b"), { recursive: true });
  await Deno.mkdir(join(root, "skip"));
  await Deno.writeTextFile(join(root, "a", "1"), "one");
  await Deno.writeTextFile(join(root, "a", "b", "2"), "two!!");
  await Deno.writeFile(join(root, "big"), new Uint8Array(100));
  await Deno.writeTextFile(join(root, "skip", "3"), "three");
  await Deno.symlink(join(root, "a", "1"), join(root, "link"));
}

Deno.test("a tree read ahead: every entry's lstat and each small file's bytes, each taken once, by the same inode only", async () => {
  await using dir = await tempDir();
  await tree(dir.path);
  const ahead = prefetch();
  await ahead.run([dir.path]);
  const one = join(dir.path, "a", "1");
  const info = ahead.lstat(one);
  assert.ok(info?.isFile);
  assert.equal(ahead.lstat(one), undefined, "taken once");
  // Another inode than the one read: nothing (the walk reads it itself).
  assert.equal(
    ahead.file(one, { dev: info.dev, ino: (info.ino ?? 0) + 1 }),
    undefined,
  );
  assert.equal(
    ahead.file(one, idOf(info)),
    undefined,
    "taken once, even by another inode",
  );
  const two = join(dir.path, "a", "b", "2");
  const got = ahead.file(two, idOf(ahead.lstat(two)!));
  assert.equal(new TextDecoder().decode(got?.data), "two!!");
  assert.equal(got?.info.size, 5);
  // Directories and the link are lstat'ed; the link is not followed, the big file not read.
  assert.ok(ahead.lstat(join(dir.path, "a", "b"))?.isDirectory);
  assert.ok(ahead.lstat(join(dir.path, "link"))?.isSymlink);
  assert.equal(ahead.file(join(dir.path, "link"), idOf(info)), undefined);
  const big = ahead.lstat(join(dir.path, "big"));
  assert.equal(ahead.file(join(dir.path, "big"), idOf(big!)), undefined);
});

Deno.test("reading ahead leaves out what the walk leaves out, reads no file without readFiles, and stops at its budgets", async () => {
  await using dir = await tempDir();
  await tree(dir.path);
  const skip = join(dir.path, "skip");
  const filtered = prefetch({ wanted: (parts) => parts[0] !== "skip" });
  await filtered.run([dir.path]);
  assert.ok(filtered.lstat(skip)?.isDirectory);
  assert.equal(filtered.lstat(join(skip, "3")), undefined, "not gone into");

  const listed = prefetch({ readFiles: false });
  await listed.run([dir.path]);
  const one = join(dir.path, "a", "1");
  const info = listed.lstat(one)!;
  assert.equal(listed.file(one, idOf(info)), undefined);

  // 8 bytes: a/1 (3) and a/b/2 (5) fit (big is not small); skip/3 does not.
  const bytes = prefetch({ maxBytes: 8 });
  await bytes.run([dir.path]);
  assert.ok(bytes.file(one, idOf(bytes.lstat(one)!)));
  const two = join(dir.path, "a", "b", "2");
  assert.ok(bytes.file(two, idOf(bytes.lstat(two)!)));
  const three = join(dir.path, "skip", "3");
  assert.equal(bytes.file(three, idOf(bytes.lstat(three)!)), undefined);

  // Two entries: a and a/1.
  const entries = prefetch({ maxEntries: 2 });
  await entries.run([dir.path]);
  assert.ok(entries.lstat(join(dir.path, "a")));
  assert.ok(entries.lstat(one));
  assert.equal(entries.lstat(join(dir.path, "a", "b")), undefined);
});

Deno.test("reading ahead stopped before it starts, or aborted, reads nothing; a FIFO in the tree is never opened", async () => {
  await using dir = await tempDir();
  await tree(dir.path);
  const made = await new Deno.Command("mkfifo", {
    args: [join(dir.path, "a", "0fifo")],
  }).output();
  assert.ok(made.success, "mkfifo");
  const stopped = prefetch();
  const running = stopped.run([dir.path]);
  stopped.stop();
  await running;
  assert.equal(stopped.lstat(join(dir.path, "a")), undefined);

  const abort = new AbortController();
  abort.abort();
  const aborted = prefetch();
  await aborted.run([dir.path], abort.signal);
  assert.equal(aborted.lstat(join(dir.path, "a")), undefined);

  // Ends (no writer would ever come to the FIFO), and reads the files after it.
  const ahead = prefetch();
  await ahead.run([dir.path]);
  assert.ok(ahead.lstat(join(dir.path, "a", "0fifo"))?.isFifo);
  const one = join(dir.path, "a", "1");
  assert.ok(ahead.file(one, idOf(ahead.lstat(one)!)));
});

Deno.test("during(): the work runs while the trees are read ahead, and reading has ended when it returns or throws", async () => {
  await using dir = await tempDir();
  await tree(dir.path);
  const ahead = prefetch();
  const source = {
    given: dir.path,
    path: dir.path,
    name: "t",
    isDir: true,
  };
  const seen = await ahead.during([source], undefined, async () => {
    // Reading begins after a turn of the event loop: the work starts first.
    const before = ahead.lstat(join(dir.path, "a"));
    await new Promise((resolve) => setTimeout(resolve, 50));
    return before;
  });
  assert.equal(seen, undefined);
  assert.ok(ahead.lstat(join(dir.path, "a", "b", "2")));

  const failing = prefetch();
  await assert.rejects(
    failing.during([source], undefined, () => Promise.reject(new Error("x"))),
    /x/,
  );
});
