/**
 * `hsync -S` pulling sparse files through the real programs: a file pulled
 * on its own is fetched by its extents as one in a tree is (its holes never
 * cross the network), and the summary tells holes as holes, not as bytes
 * resumed from an earlier run.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { startFaultProxy } from "./_fault_proxy.ts";
import { runClient, startServer, tempDir } from "./_programs.ts";

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;

/** A file of `SIZE` bytes holding a few bytes at 0 and at 40 MiB, the rest holes. */
async function makeSparse(path: string): Promise<Uint8Array> {
  using file = await Deno.open(path, { write: true, create: true });
  await file.truncate(SIZE);
  await file.write(new TextEncoder().encode("head"));
  await file.seek(40 * MiB, Deno.SeekMode.Start);
  await file.write(new TextEncoder().encode("middle"));
  const info = await Deno.stat(path);
  // A file system without holes (it allocated them) cannot show anything.
  if (info.blocks === null || info.blocks * 512 >= SIZE) {
    throw new Error(`${path} is not sparse here (${info.blocks} blocks)`);
  }
  return await Deno.readFile(path);
}

/** The summary line of a run (its last line on standard error). */
function summaryOf(stderr: string): string {
  return stderr.trim().split("\n").filter((l) => l.startsWith("hsync: "))
    .at(-1) ?? "";
}

Deno.test("hsync -S pulls one sparse file by its extents: its holes do not cross the network and stay holes", async () => {
  await using tmp = await tempDir("hsync-sparse-");
  const data = join(tmp.path, "data");
  await Deno.mkdir(data);
  const content = await makeSparse(join(data, "holes.bin"));
  await using server = await startServer({
    dir: tmp.path,
    config: `[hsyncd]\nOnly_allowed_path = ${data}\n`,
  });
  await using proxy = startFaultProxy(server.port, () => ({ kind: "none" }));
  const copy = join(tmp.path, "copy.bin");
  const r = await runClient(
    ["-S", `127.0.0.1:${proxy.port}:${join(data, "holes.bin")}`, copy],
    { HSYNC_DIR: join(tmp.path, "client") },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await Deno.readFile(copy), content);
  assert.ok(
    proxy.bytesForwarded < SIZE / 4,
    `${proxy.bytesForwarded} bytes crossed for a 64 MiB file of a few bytes`,
  );
  const blocks = (await Deno.stat(copy)).blocks!;
  assert.ok(blocks * 512 < SIZE / 4, `the copy takes ${blocks} blocks`);
  assert.doesNotMatch(summaryOf(r.stderr), /resumed/);
  assert.match(summaryOf(r.stderr), /^hsync: 1 file, .* of holes\) in /);
});

Deno.test("hsync -S pulling a tree says its holes are holes, not resumed bytes; a rerun skips the file", async () => {
  await using tmp = await tempDir("hsync-sparse-");
  const data = join(tmp.path, "data");
  await Deno.mkdir(join(data, "tree"), { recursive: true });
  const content = await makeSparse(join(data, "tree", "holes.bin"));
  await Deno.writeTextFile(join(data, "tree", "small.txt"), "small\n");
  await using server = await startServer({
    dir: tmp.path,
    config: `[hsyncd]\nOnly_allowed_path = ${data}\n`,
  });
  const copy = join(tmp.path, "copy");
  const tree = join(data, "tree");
  const args = ["-S", "-host", "127.0.0.1", "-p", `${server.port}`, "-i", tree];
  args.push("-o", copy);
  const env = { HSYNC_DIR: join(tmp.path, "client") };
  const r = await runClient(args, env);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await Deno.readFile(join(copy, "holes.bin")), content);
  const line = summaryOf(r.stderr);
  assert.doesNotMatch(line, /resumed/);
  assert.match(line, /^hsync: 2 files, .* \(\S+ \S+ of holes\) in /);
  const again = await runClient(args, env);
  assert.equal(again.code, 0, again.stderr);
  assert.match(summaryOf(again.stderr), /^hsync: 0 files, .* 2 skipped, /);
});
