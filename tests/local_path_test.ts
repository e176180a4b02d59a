/** Tests of lib/client/local_path.ts: one test per attack a hostile server (or a planted link) can try. */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  checkName,
  chmodOpened,
  createChecked,
  ensureDirs,
  fileIdOf,
  modeToApply,
  openChecked,
  safeComponents,
  safeJoin,
  UnsafePathError,
} from "../lib/client/local_path.ts";
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

/** A temporary directory with `victim.txt` ("untouched") in it, removed by `await using`. */
async function withVictim() {
  const root = await Deno.makeTempDir();
  const victim = join(root, "victim.txt");
  await Deno.writeTextFile(victim, "untouched");
  await Deno.chmod(victim, 0o600);
  return {
    root,
    victim,
    [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }),
  };
}

function refusedWith(why: RegExp) {
  return (error: unknown) =>
    error instanceof LocalPathError && why.test(error.message);
}

Deno.test("openChecked() never opens a symlink, a FIFO or a directory in place of a file", async () => {
  await using d = await withVictim();
  const name = join(d.root, "x.hsync-part");
  await Deno.symlink(d.victim, name);
  assert.throws(
    () => openChecked(name, { write: true }),
    refusedWith(/: it is a symbolic link$/),
  );
  await Deno.remove(name);
  await new Deno.Command("mkfifo", { args: [name] }).output();
  assert.throws(
    () => openChecked(name, { write: true }),
    refusedWith(/: it exists and is not a regular file$/),
  );
  assert.throws(
    () => openChecked(d.root, { write: true }),
    refusedWith(/: it exists and is not a regular file$/),
  );
  assert.equal(await Deno.readTextFile(d.victim), "untouched");
});

Deno.test("openChecked() refuses a regular file that is not the inode expected, and never truncates", async () => {
  await using d = await withVictim();
  const name = join(d.root, "part");
  await Deno.writeTextFile(name, "mine");
  const mine = fileIdOf(await Deno.lstat(name));
  using file = openChecked(name, { write: true, expected: mine });
  assert.equal((await file.stat()).size, 4);
  await Deno.remove(name);
  await Deno.writeTextFile(name, "theirs");
  assert.throws(
    () => openChecked(name, { write: true, expected: mine }),
    refusedWith(/: it was replaced while hsync used it$/),
  );
  assert.throws(() => checkName(name, mine), refusedWith(/replaced/));
  assert.equal(await Deno.readTextFile(name), "theirs");
});

Deno.test("createChecked() refuses any entry at the name, a dangling link included", async () => {
  await using d = await withVictim();
  const name = join(d.root, "new");
  await Deno.symlink(join(d.root, "nowhere"), name);
  assert.throws(() => createChecked(name), Deno.errors.AlreadyExists);
  assert.ok(!(await Deno.stat(join(d.root, "nowhere")).catch(() => false)));
  await Deno.remove(name);
  using file = createChecked(name);
  assert.ok((await file.stat()).isFile);
});

Deno.test("chmodOpened() changes the mode of the opened inode only, never of a link swapped in at its name", async () => {
  await using d = await withVictim();
  const name = join(d.root, "f.hsync-part");
  using file = createChecked(name);
  chmodOpened(file, name, 0o640);
  assert.equal((await Deno.lstat(name)).mode! & 0o7777, 0o640);
  await Deno.remove(name);
  await Deno.symlink(d.victim, name);
  assert.throws(
    () => chmodOpened(file, name, 0o666),
    refusedWith(/replaced/),
  );
  assert.equal((await Deno.stat(d.victim)).mode! & 0o7777, 0o600);
  assert.throws(() => checkName(name, fileIdOf(file.statSync())), /symbolic/);
});

Deno.test("modeToApply() drops setuid, setgid, sticky and write-for-others bits unless asked", () => {
  assert.equal(modeToApply(0o100755), 0o755);
  assert.equal(modeToApply(0o4777), 0o775);
  assert.equal(modeToApply(0o2750), 0o750);
  assert.equal(modeToApply(0o1777), 0o775);
  assert.equal(modeToApply(0o666), 0o664);
  assert.equal(modeToApply(0o6777, true), 0o6777);
});
