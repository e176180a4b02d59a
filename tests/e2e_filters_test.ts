/** End to end, the real hsync and hsyncd: rsync's `dir/` and `/anchored` exclude spellings on a pull and on a push (the callers tell the filter which entries are directories). */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runClient, snapshotTree, startServer, tempDir } from "./_programs.ts";

/** A tree with directories and a file named tmp, and a build directory at the top and deeper. */
async function makeTree(root: string): Promise<void> {
  for (const d of ["tmp/in", "d/tmp", "s", "build/o", "src/build"]) {
    await Deno.mkdir(join(root, d), { recursive: true });
  }
  for (
    const f of ["tmp/in/f", "d/tmp/g", "s/tmp", "build/o/f", "src/build/x"]
  ) {
    await Deno.writeTextFile(join(root, f), f);
  }
  await Deno.writeTextFile(join(root, "keep.txt"), "keep");
}

/** What is left of the tree by `--exclude tmp/ --exclude /build`. */
const KEPT = ["d", "keep.txt", "s", "s/tmp", "src", "src/build", "src/build/x"];

const EXCLUDES = ["--exclude", "tmp/", "--exclude", "/build"];

Deno.test("a pull with --exclude 'tmp/' leaves out directories named tmp (not a file), --exclude /build only the top one", async () => {
  await using dir = await tempDir("hsync-filters-pull-");
  const data = join(dir.path, "data");
  await makeTree(data);
  await using server = await startServer({
    dir: dir.path,
    config: `[hsyncd]\nOnly_allowed_path = ${data}\n`,
  });
  const out = join(dir.path, "out");
  const r = await runClient([
    `127.0.0.1:${server.port}:${data}`,
    out + "/",
    "--quiet",
    ...EXCLUDES,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const snap = await snapshotTree(join(out, "data"));
  assert.deepEqual([...snap.keys()].sort(), KEPT);
});

Deno.test("a push with --exclude 'tmp/' leaves out directories named tmp (not a file), --exclude /build only the top one", async () => {
  await using dir = await tempDir("hsync-filters-push-");
  const src = join(dir.path, "data");
  await makeTree(src);
  const incoming = join(dir.path, "incoming");
  const clientDir = join(dir.path, "client-home");
  await Deno.mkdir(incoming);
  await Deno.mkdir(clientDir);
  const env = { HSYNC_DIR: clientDir };
  const keygen = await runClient(["keygen"], env);
  assert.equal(keygen.code, 0, keygen.stderr);
  await Deno.writeTextFile(join(dir.path, "ak"), keygen.stdout);
  await using server = await startServer({
    dir: dir.path,
    config: `[hsyncd]\nWritable_path = ${incoming}\nAuthorized_keys = ${
      join(dir.path, "ak")
    }\n`,
  });
  const r = await runClient([
    src,
    `127.0.0.1:${server.port}:${incoming}/`,
    "--quiet",
    ...EXCLUDES,
  ], env);
  assert.equal(r.code, 0, r.stderr);
  const snap = await snapshotTree(join(incoming, "data"));
  assert.deepEqual([...snap.keys()].sort(), KEPT);
});
