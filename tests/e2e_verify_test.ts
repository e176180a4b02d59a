/** End-to-end --verify and --checksum: the real hsync against the real hsyncd (and a server whose bytes never match its hashes). */
import assert from "node:assert/strict";
import { join } from "node:path";
import { parseClientArgs } from "../lib/client/client_args.ts";
import { runClient, startServer, tempDir } from "./_programs.ts";
import {
  bytes,
  leftovers,
  sameBytes,
  startControlledServer,
} from "./_resume_fixture.ts";

const MiB = 1024 * 1024;

Deno.test("--verify and --checksum are parsed; a value given to them is one clear line", () => {
  const cmd = parseClientArgs(["-i", "/d", "--verify", "--checksum"]);
  assert.equal(cmd.kind, "pull");
  if (cmd.kind !== "pull") return;
  assert.equal(cmd.verify, true);
  assert.equal(cmd.checksum, true);
  const plain = parseClientArgs(["-i", "/d"]);
  assert.ok(plain.kind === "pull" && !plain.verify && !plain.checksum);
  assert.throws(
    () => parseClientArgs(["-i", "/d", "--checksum=yes"]),
    /^UsageError: Option "--checksum" does not take a value$/,
  );
});

Deno.test("hsync --verify pulls a tree of small and big files from hsyncd, each checked before it is placed", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(join(data, "sub"), { recursive: true });
  const files: Record<string, Uint8Array> = {
    "big.bin": bytes(3 * MiB + 5, 1),
    "sub/mid.bin": bytes(400_000, 2),
    "empty.txt": new Uint8Array(0),
  };
  for (let i = 0; i < 20; i++) files[`sub/s${i}.txt`] = bytes(100 + i, 10 + i);
  for (const [name, content] of Object.entries(files)) {
    await Deno.writeFile(join(data, name), content);
  }
  await using server = await startServer({
    dir: dir.path,
    config: `[hsyncd]\nOnly_allowed_path = ${data}\n`,
  });
  const out = join(dir.path, "out");
  const ini = join(dir.path, "client.ini");
  await Deno.writeTextFile(ini, "[hscp]\nMin_part_size = 1M\n");
  const r = await runClient([
    "-i",
    data,
    "-o",
    out,
    "-host",
    "127.0.0.1",
    "-p",
    String(server.port),
    "-c",
    ini,
    "--verify",
  ], { HSYNC_DIR: join(dir.path, "client-dir") });
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /warning|failed:/);
  for (const [name, content] of Object.entries(files)) {
    assert.ok(sameBytes(await Deno.readFile(join(out, name)), content), name);
  }
  assert.deepEqual(await leftovers(out), []);
});

Deno.test("hsync --verify exits 2 naming the file when its bytes never match the server's hash, and places nothing", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  await Deno.writeFile(join(data, "f.bin"), bytes(2 * MiB, 3));
  await using server = await startControlledServer(data);
  server.onFile = () => ({ corruptAt: 5 });
  const out = join(dir.path, "f.bin");
  const r = await runClient([
    "-i",
    join(data, "f.bin"),
    "-o",
    out,
    "-host",
    "127.0.0.1",
    "-p",
    String(server.port),
    "--verify",
  ], { HSYNC_DIR: join(dir.path, "client-dir") });
  assert.equal(r.code, 2, r.stderr);
  const lines = r.stderr.split("\n").filter((l) => /warning|failed:/.test(l));
  assert.deepEqual(lines, [
    `hsync: warning: SHA-256 of "f.bin" differs from the server's: fetching it again`,
    `hsync: failed: f.bin: SHA-256 of "f.bin" still differs from the server's after fetching it again: not placed`,
  ]);
  await assert.rejects(() => Deno.stat(out));
  assert.deepEqual(await leftovers(dir.path), []);
});

Deno.test("hsync --checksum skips files whose SHA-256 matches and fetches one that size + mtime call identical", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  const a = bytes(2 * MiB, 4);
  const b = bytes(3000, 5);
  await Deno.writeFile(join(data, "a.bin"), a);
  await Deno.writeFile(join(data, "b.txt"), b);
  await using server = await startServer({
    dir: dir.path,
    config: `[hsyncd]\nOnly_allowed_path = ${data}\n`,
  });
  const out = join(dir.path, "out");
  const args = [
    "-i",
    data,
    "-o",
    out,
    "-host",
    "127.0.0.1",
    "-p",
    String(server.port),
  ];
  const env = { HSYNC_DIR: join(dir.path, "client-dir") };
  assert.equal((await runClient(args, env)).code, 0);
  // b.txt: other bytes, same size and mtime; a.bin: same bytes, other mtime.
  const bTime = (await Deno.stat(join(out, "b.txt"))).mtime!;
  await Deno.writeFile(join(out, "b.txt"), bytes(3000, 6));
  await Deno.utime(join(out, "b.txt"), new Date(), bTime);
  await Deno.utime(join(out, "a.bin"), new Date(), new Date(5_000_000));
  const aIno = (await Deno.stat(join(out, "a.bin"))).ino;

  const r = await runClient([...args, "--checksum"], env);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /1 file, .* 1 skipped, 0 failed/);
  assert.ok(sameBytes(await Deno.readFile(join(out, "b.txt")), b));
  assert.equal(
    (await Deno.stat(join(out, "a.bin"))).ino,
    aIno,
    "not rewritten",
  );
  assert.equal(
    (await Deno.stat(join(out, "a.bin"))).mtime!.getTime(),
    Math.floor((await Deno.stat(join(data, "a.bin"))).mtime!.getTime()),
  );
});
