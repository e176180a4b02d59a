/** `--bwlimit` end to end with the real programs: one limit over every connection of a pull, a push and `--sync`. */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  runClient,
  spawnClient,
  startServer,
  tempDir,
  waitFor,
} from "./_programs.ts";

const MiB = 1024 * 1024;

function random(size: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(size);
  for (let at = 0; at < size; at += 65536) {
    crypto.getRandomValues(out.subarray(at, Math.min(size, at + 65536)));
  }
  return out;
}

async function setup(dir: string) {
  const data = join(dir, "data");
  const incoming = join(dir, "incoming");
  const home = join(dir, "home");
  for (const d of [data, incoming, home]) await Deno.mkdir(d);
  const server = await startServer({
    dir,
    config: `[hsyncd]\nOnly_allowed_path = ${data}, ${incoming}\n` +
      `Writable_path = ${incoming}\n`,
  });
  return { data, incoming, home, server, at: `127.0.0.1:${server.port}` };
}

async function timed<T>(run: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const result = await run();
  return [result, (performance.now() - started) / 1000];
}

Deno.test("hsync --bwlimit 1M pulls 4 MiB in about 4 s, and pushes 4 MiB in two files over several connections in about 4 s", async () => {
  await using dir = await tempDir();
  const { data, incoming, home, server, at } = await setup(dir.path);
  await using _ = server;
  const big = random(4 * MiB);
  await Deno.writeFile(join(data, "big.bin"), big);
  const [pull, pullSeconds] = await timed(() =>
    runClient(
      [`${at}:${data}/big.bin`, join(dir.path, "big.bin"), "--bwlimit", "1M"],
      { HSYNC_DIR: home },
    )
  );
  assert.equal(pull.code, 0, pull.stderr);
  assert.deepEqual(await Deno.readFile(join(dir.path, "big.bin")), big);
  assert.ok(pullSeconds > 3 && pullSeconds < 6, `pull: ${pullSeconds} s`);

  const src = join(dir.path, "src");
  await Deno.mkdir(src);
  await Deno.writeFile(join(src, "a.bin"), big.subarray(0, 2 * MiB));
  await Deno.writeFile(join(src, "b.bin"), big.subarray(2 * MiB));
  const [push, pushSeconds] = await timed(() =>
    runClient([src, `${at}:${incoming}/`, "--bwlimit", "1M", "-n", "4"], {
      HSYNC_DIR: home,
    })
  );
  assert.equal(push.code, 0, push.stderr);
  assert.deepEqual(
    await Deno.readFile(join(incoming, "src/b.bin")),
    big.subarray(2 * MiB),
  );
  assert.ok(pushSeconds > 3 && pushSeconds < 6, `push: ${pushSeconds} s`);
});

Deno.test("hsync --sync --bwlimit 1M: 2 MiB appended arrive in about 2 s", async () => {
  await using dir = await tempDir();
  const { data, home, server, at } = await setup(dir.path);
  await using _ = server;
  await Deno.writeTextFile(join(data, "x.log"), "start\n");
  const out = join(dir.path, "out");
  await using client = spawnClient(
    [`${at}:${data}/`, out, "--sync", "--bwlimit", "1M"],
    { HSYNC_DIR: home },
  );
  await waitFor("following", () => client.stderr().includes("following into"));
  const more = random(2 * MiB);
  const started = performance.now();
  const file = await Deno.open(join(data, "x.log"), { append: true });
  await file.write(more);
  file.close();
  const want = 6 + 2 * MiB;
  await waitFor(
    "the append",
    async () => (await Deno.stat(join(out, "x.log"))).size === want,
  );
  const seconds = (performance.now() - started) / 1000;
  const r = await client.stop();
  assert.equal(r.code, 0, r.stderr);
  assert.ok(seconds > 1.3 && seconds < 5, `append: ${seconds} s`);
});
