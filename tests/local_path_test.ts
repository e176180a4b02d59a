/** Tests of lib/local_path.ts: one test per attack a hostile server (or a planted link) can try. */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  ensureDirs,
  LocalPathError,
  reason,
  safeComponents,
  safeJoin,
  UnsafePathError,
} from "../lib/local_path.ts";

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
