/** End-to-end: what a run prints at its end: `--quiet` silent on success but not on warnings and errors, the failed names listed after the summary, a resumed pull counting only this run's bytes. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { startLink } from "../bench/_link.ts";
import {
  runClient,
  spawnClient,
  startServer,
  tempDir,
  waitFor,
} from "./_programs.ts";

const MiB = 1024 * 1024;

function noise(size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) {
    crypto.getRandomValues(out.subarray(i, Math.min(size, i + 65536)));
  }
  return out;
}

Deno.test("--quiet prints nothing at all on success, and still prints warnings and failures", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(join(data, "t", "sub"), { recursive: true });
  await Deno.writeTextFile(join(data, "t", "a.txt"), "a");
  await Deno.writeTextFile(join(data, "t", "sub", "b.txt"), "b");
  await using server = await startServer({
    dir: dir.path,
    config: `[hsyncd]\nOnly_allowed_path = ${data}\n`,
  });
  const env = { HSYNC_DIR: join(dir.path, "client-dir") };
  const remote = `127.0.0.1:${server.port}:${data}/t`;
  let r = await runClient([remote, join(dir.path, "out1"), "--quiet"], env);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "", "nothing on success");
  assert.equal(r.stdout, "");

  const ini = join(dir.path, "client.ini");
  await Deno.writeTextFile(ini, "[hscp]\nNo_such_key = 1\n");
  const out2 = join(dir.path, "out2");
  await Deno.mkdir(join(out2, "t"), { recursive: true });
  // A link planted where a directory goes is never written through: it fails.
  await Deno.symlink(dir.path, join(out2, "t", "sub"));
  r = await runClient([remote, out2, "--quiet", "-c", ini], env);
  assert.equal(r.code, 2, r.stderr);
  const lines = r.stderr.trimEnd().split("\n");
  assert.match(lines[0], /^hsync: warning: Unknown key "No_such_key"/);
  assert.match(lines[1], /^hsync: failed: sub: Cannot write .*symbolic link/);
  assert.match(lines[2], /^hsync: failed: sub\/b\.txt: /);
  assert.deepEqual(lines.slice(3), [
    "hsync: failed (2):",
    "hsync:   sub",
    "hsync:   sub/b.txt",
  ]);
});

Deno.test("a run with failures ends with the failed names after the summary", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(join(data, "t"), { recursive: true });
  for (const name of ["a", "b", "c"]) {
    await Deno.mkdir(join(data, "t", name));
    await Deno.writeTextFile(join(data, "t", name, `${name}.txt`), name);
  }
  await using server = await startServer({
    dir: dir.path,
    config: `[hsyncd]\nOnly_allowed_path = ${data}\n`,
  });
  const out = join(dir.path, "out");
  await Deno.mkdir(join(out, "t"), { recursive: true });
  // A link planted where a directory goes is never written through: it fails.
  for (const name of ["a", "c"]) {
    await Deno.symlink(dir.path, join(out, "t", name));
  }
  const r = await runClient([`127.0.0.1:${server.port}:${data}/t`, out], {
    HSYNC_DIR: join(dir.path, "client-dir"),
  });
  assert.equal(r.code, 2, r.stderr);
  const lines = r.stderr.trimEnd().split("\n");
  const summary = lines.findIndex((l) => /^hsync: 1 file, /.test(l));
  assert.ok(summary > 0, r.stderr);
  assert.match(lines[summary], /, 4 failed$/);
  assert.deepEqual(lines.slice(summary + 1).sort(), [
    "hsync:   a",
    "hsync:   a/a.txt",
    "hsync:   c",
    "hsync:   c/c.txt",
    "hsync: failed (4):",
  ]);
  assert.equal(lines[summary + 1], "hsync: failed (4):");
  // The reasons were told before, as they happened.
  assert.ok(
    lines.slice(0, summary).some((l) =>
      l.startsWith("hsync: failed: a/a.txt: ")
    ),
    r.stderr,
  );
});

Deno.test("a resumed pull counts only this run's bytes as transferred and tells the resumed ones apart", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  const size = 16 * MiB;
  await Deno.writeFile(join(data, "big.bin"), noise(size));
  await using server = await startServer({
    dir: dir.path,
    config: `[hsyncd]\nOnly_allowed_path = ${data}\n`,
  });
  const env = { HSYNC_DIR: join(dir.path, "client-dir") };
  const out = join(dir.path, "big.bin");
  const part = `${out}.hsync-part`;
  {
    await using link = startLink(server.port, 20, 32 * 1024);
    const first = spawnClient(
      [`127.0.0.1:${link.port}:${data}/big.bin`, out],
      env,
    );
    await waitFor("a part file", async () => {
      const st = await Deno.stat(part);
      return st.isFile && first.stderr() === "";
    });
    await new Promise((r) => setTimeout(r, 2500));
    const r = await first.stop("SIGINT");
    assert.equal(r.code, 130, r.stderr);
    const kept = /, ([\d.]+) (KiB|MiB) kept for resume$/m.exec(r.stderr);
    assert.ok(kept, r.stderr);
    assert.ok(Number(kept[1]) > 0, r.stderr);
  }
  const r = await runClient(
    [`127.0.0.1:${server.port}:${data}/big.bin`, out],
    env,
  );
  assert.equal(r.code, 0, r.stderr);
  const m = /^hsync: 1 file, ([\d.]+) MiB \(([\d.]+) (KiB|MiB) resumed\) in /m
    .exec(r.stderr);
  assert.ok(m, r.stderr);
  assert.ok(Number(m[1]) < 16, `only this run's bytes: ${r.stderr}`);
  const resumed = Number(m[2]) * (m[3] === "MiB" ? MiB : 1024);
  // What arrived now and what was there make the file (the units round).
  assert.ok(
    Math.abs(Number(m[1]) * MiB + resumed - size) < 0.1 * MiB,
    r.stderr,
  );
});
