/** End-to-end: what the old tool's users type and keep in their hsync.ini still works (issue 21). */
import assert from "node:assert/strict";
import { join } from "node:path";
import { parseClientArgs } from "../lib/client/client_args.ts";
import { runClient, startServer, tempDir } from "./_programs.ts";

Deno.test("--num N is the old long form of -n", () => {
  for (const argv of [["--num", "3"], ["--num=3"]]) {
    const cmd = parseClientArgs(["-i", "/x", ...argv]);
    assert.equal(cmd.kind === "pull" && cmd.parallel, 3);
  }
});

Deno.test("hsync --num 2 pulls a tree from the real hsyncd", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  for (const name of ["a", "b", "c"]) {
    await Deno.writeTextFile(join(data, name), `${name}\n`);
  }
  await using server = await startServer({
    dir: dir.path,
    config: `[hsyncd]\nOnly_allowed_path = ${data}\n`,
  });
  const out = join(dir.path, "out");
  const r = await runClient([
    "-i",
    data,
    "-o",
    out,
    "--num",
    "2",
    "-host",
    "127.0.0.1",
    "-p",
    `${server.port}`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await Deno.readTextFile(join(out, "c")), "c\n");
  const bad = await runClient(["-i", data, "--num", "0"]);
  assert.equal(bad.code, 1);
  assert.match(
    bad.stderr,
    /-n needs a positive number of files in parallel, got "0"/,
  );
});

Deno.test("the old ini keys MD5_check_nproc and Hsync_verify get one note each saying what replaced them, not an unknown-key warning", async () => {
  await using dir = await tempDir();
  const ini = join(dir.path, "old.ini");
  await Deno.writeTextFile(
    ini,
    "[hscp]\nMD5_check_nproc = 4\nHsync_verify = yes\n[hsync]\nHsync_verify = true\n",
  );
  const r = await runClient(["echo-config", "-c", ini], {
    HSYNC_DIR: join(dir.path, "hsync-dir"),
  });
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /Unknown key|warning/);
  const notes = r.stderr.trim().split("\n");
  assert.deepEqual(notes, [
    `hsync: note: "MD5_check_nproc" in [hscp] of "${ini}" is the old tool's and is not used: files are checked by SHA-256 on the server (--verify, --checksum), as many at once as -n files`,
    `hsync: note: "Hsync_verify" in [hscp] of "${ini}" is the old tool's and is not used: verification is asked for on the command line with --verify`,
    `hsync: note: "Hsync_verify" in [hsync] of "${ini}" is the old tool's and is not used: verification is asked for on the command line with --verify`,
  ]);
});
