/** Tests of lib/client/placement.ts: one test per attack a hostile server (or a planted link) can try, and where a remote root lands. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { destinationOf } from "../lib/client/destination.ts";
import {
  ensureDirs,
  makeParentDir,
  makeTreeRoot,
  modeToApply,
  safeComponents,
  safeJoin,
  setDirMeta,
  UnsafePathError,
} from "../lib/client/placement.ts";
import { readyToChmod } from "../lib/shared/chmod_opened.ts";
import { LocalPathError, reason } from "../lib/shared/errors.ts";

const ROOT = "/out";

function refused(rel: string, why: RegExp) {
  assert.throws(() => safeJoin(ROOT, rel), (error: unknown) => {
    assert.ok(error instanceof UnsafePathError);
    assert.equal(error.path, rel);
    assert.match(error.message, why);
    return true;
  });
}

Deno.test("safeJoin() joins normal relative paths inside the root", () => {
  assert.equal(safeJoin(ROOT, "a.txt"), "/out/a.txt");
  assert.equal(safeJoin(ROOT, "dir/sub/é x.bin"), "/out/dir/sub/é x.bin");
  assert.equal(safeJoin(ROOT, "..hidden"), "/out/..hidden");
  assert.equal(safeJoin(ROOT, "a..b/c"), "/out/a..b/c");
  assert.deepEqual(safeComponents("a/b"), ["a", "b"]);
});

Deno.test("safeJoin() refuses an empty path", () => refused("", /empty/));

Deno.test("safeJoin() refuses an absolute path", () => {
  refused("/etc/passwd", /absolute/);
});

Deno.test("safeJoin() refuses a leading .. component", () => {
  refused("../evil", /"\.\." component/);
});

Deno.test("safeJoin() refuses a .. component in the middle", () => {
  refused("a/../../evil", /"\.\." component/);
});

Deno.test("safeJoin() refuses a trailing .. component", () => {
  refused("a/..", /"\.\." component/);
});

Deno.test("safeJoin() refuses a . component", () => {
  refused("./a", /"\." component/);
  refused("a/./b", /"\." component/);
});

Deno.test("safeJoin() refuses a NUL byte", () => {
  refused("a\0b", /NUL/);
});

Deno.test("safeJoin() refuses a backslash", () => {
  refused("..\\evil", /backslash/);
  refused("a\\b", /backslash/);
});

Deno.test("safeJoin() refuses empty components", () => {
  refused("a//b", /empty component/);
  refused("a/", /empty component/);
});

Deno.test("safeJoin() refuses names of hsync's own partial files", () => {
  refused("a.bin.hsync-part", /reserved/);
  refused("d.hsync-journal/x", /reserved/);
});

Deno.test("ensureDirs() creates missing directories one level at a time", async () => {
  const root = await Deno.makeTempDir();
  try {
    const verified = new Set<string>();
    const path = ensureDirs(root, ["a", "b c", "é"], verified);
    assert.equal(path, join(root, "a/b c/é"));
    assert.ok(Deno.statSync(path).isDirectory);
    assert.equal(verified.size, 3);
    // Already checked: no file-system work, same answer.
    assert.equal(ensureDirs(root, ["a", "b c", "é"], verified), path);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("ensureDirs() refuses a planted symlink to a directory outside", async () => {
  const root = await Deno.makeTempDir();
  const outside = await Deno.makeTempDir();
  try {
    await Deno.symlink(outside, join(root, "link"));
    assert.throws(
      () => ensureDirs(root, ["link", "sub"], new Set()),
      (error: unknown) =>
        error instanceof LocalPathError && /symbolic link/.test(error.message),
    );
    assert.deepEqual([...Deno.readDirSync(outside)], []);
  } finally {
    await Deno.remove(root, { recursive: true });
    await Deno.remove(outside, { recursive: true });
  }
});

Deno.test("ensureDirs() refuses a dangling symlink too", async () => {
  const root = await Deno.makeTempDir();
  try {
    await Deno.symlink(join(root, "nowhere"), join(root, "link"));
    assert.throws(
      () => ensureDirs(root, ["link"], new Set()),
      /symbolic link/,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("ensureDirs() refuses a file where a directory belongs", async () => {
  const root = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(join(root, "f"), "x");
    assert.throws(
      () => ensureDirs(root, ["f", "sub"], new Set()),
      /Cannot write ".*\/f": it exists and is not a directory/,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("reason() gives short lower-case causes", () => {
  assert.equal(
    reason(new Deno.errors.PermissionDenied("x")),
    "permission denied",
  );
  assert.equal(
    reason(new Error("No space left on device (os error 28): write '/x'")),
    "no space left on device",
  );
});

Deno.test("modeToApply() drops setuid, setgid, sticky and write-for-others bits unless asked", () => {
  assert.equal(modeToApply(0o100755), 0o755);
  assert.equal(modeToApply(0o4777), 0o775);
  assert.equal(modeToApply(0o2750), 0o750);
  assert.equal(modeToApply(0o1777), 0o775);
  assert.equal(modeToApply(0o666), 0o664);
  assert.equal(modeToApply(0o6777, true), 0o6777);
});

Deno.test("destinationOf() puts a file into an existing directory, a tree at the path itself unless it ends in / or scp placement is asked", async () => {
  const root = await Deno.makeTempDir();
  try {
    const dir = join(root, "dir");
    await Deno.mkdir(dir);
    const file = { remoteIsDir: false };
    const tree = { remoteIsDir: true };
    assert.equal(destinationOf(dir, "/data/f.txt", file), join(dir, "f.txt"));
    assert.equal(
      destinationOf(join(root, "new"), "/data/f.txt", file),
      join(root, "new"),
    );
    assert.equal(destinationOf(dir, "/data/t", tree), dir);
    assert.equal(destinationOf(`${dir}/`, "/data/t", tree), join(dir, "t"));
    assert.equal(
      destinationOf(dir, "/data/t", { ...tree, scp: true }),
      join(dir, "t"),
    );
    assert.equal(
      destinationOf(join(root, "new"), "/data/t", { ...tree, scp: true }),
      join(root, "new"),
    );
    // The server's root "/" has no base name: nothing is appended.
    assert.equal(destinationOf(`${dir}/`, "/", tree), `${dir}/`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("makeTreeRoot() and makeParentDir() make what is missing and name the path that is in the way", async () => {
  const root = await Deno.makeTempDir();
  try {
    assert.equal(makeTreeRoot(join(root, "a", "b")), true);
    assert.equal(makeTreeRoot(join(root, "a", "b")), false);
    await Deno.writeTextFile(join(root, "f"), "x");
    assert.throws(
      () => makeTreeRoot(join(root, "f")),
      (e: unknown) =>
        e instanceof LocalPathError &&
        e.message ===
          `Cannot write "${join(root, "f")}": it exists and is not a directory`,
    );
    makeParentDir(join(root, "c", "d", "file.txt"));
    assert.ok((await Deno.stat(join(root, "c", "d"))).isDirectory);
    assert.throws(
      () => makeParentDir(join(root, "f", "sub", "x")),
      (e: unknown) =>
        e instanceof LocalPathError && e.path === join(root, "f", "sub"),
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("setDirMeta() sets a directory's time and mode, and refuses a link swapped in for it", async () => {
  await readyToChmod();
  const root = await Deno.makeTempDir();
  try {
    const dir = join(root, "d");
    await Deno.mkdir(dir);
    setDirMeta(dir, 1_000_000_000_000, 0o750);
    const info = await Deno.lstat(dir);
    assert.equal(info.mtime?.getTime(), 1_000_000_000_000);
    assert.equal(info.mode! & 0o7777, 0o750);
    const other = join(root, "other");
    await Deno.mkdir(other, { mode: 0o755 });
    await Deno.chmod(other, 0o755);
    await Deno.remove(dir);
    await Deno.symlink(other, dir);
    assert.throws(
      () => setDirMeta(dir, 0, 0o700),
      /it is a symbolic link/,
    );
    assert.equal((await Deno.stat(other)).mode! & 0o7777, 0o755);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
