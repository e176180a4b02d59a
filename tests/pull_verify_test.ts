/** `verify` and `checksum` through lib/client/pull.ts: SHA-256 against the server's hash endpoint, one refetch, loud failure, busy hash slots, skip by checksum. */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { PullEvent } from "../lib/client/pull.ts";
import { HASH_SPAN_BYTES } from "../lib/client/verify.ts";
import {
  bytes,
  leftovers,
  runPull,
  sameBytes,
  startControlledServer,
} from "./_resume_fixture.ts";
import { tempDir } from "./_programs.ts";

const MiB = 1024 * 1024;

const run = (options: Parameters<typeof runPull>[0]) =>
  runPull(options, { Max_timeout_retry: "3" });

function warnings(events: PullEvent[]): string[] {
  return events.flatMap((e) => e.type === "warning" ? [e.message] : []);
}

Deno.test("pull() with verify places a file whose SHA-256 matches the server's, asking once per file", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  const content = bytes(3 * MiB, 1);
  await Deno.writeFile(join(data, "f.bin"), content);
  await using server = await startControlledServer(data);
  const out = join(dir.path, "f.bin");
  const { summary, events } = await run({
    baseUrl: server.baseUrl,
    remotePath: join(data, "f.bin"),
    localPath: out,
    verify: true,
  });
  assert.deepEqual(summary.failures, []);
  assert.deepEqual(warnings(events), []);
  assert.equal(server.hashRequests, 1);
  assert.ok(sameBytes(await Deno.readFile(out), content));
  assert.deepEqual(await leftovers(dir.path), []);
});

Deno.test("pull() with verify fetches a corrupted file again once, with a warning, then places it", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  const content = bytes(2 * MiB, 2);
  await Deno.writeFile(join(data, "f.bin"), content);
  await using server = await startControlledServer(data);
  // The first response of the second range has one bad byte.
  let corrupted = false;
  server.onFile = (r) => {
    if (corrupted || r.range !== `bytes=${MiB}-${2 * MiB - 1}`) {
      return undefined;
    }
    corrupted = true;
    return { corruptAt: 1000 };
  };
  const out = join(dir.path, "f.bin");
  const { summary, events } = await run({
    baseUrl: server.baseUrl,
    remotePath: join(data, "f.bin"),
    localPath: out,
    verify: true,
  });
  assert.deepEqual(summary.failures, []);
  assert.equal(warnings(events).length, 1);
  assert.match(
    warnings(events)[0],
    /^SHA-256 of "f.bin" differs from the server's: fetching it again$/,
  );
  assert.equal(server.served, 2 * content.length, "the file, then once more");
  assert.ok(sameBytes(await Deno.readFile(out), content));
  assert.deepEqual(await leftovers(dir.path), []);
});

Deno.test("pull() with verify fetches again only the span that differs in a big file", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  const size = HASH_SPAN_BYTES + 3 * MiB;
  const content = bytes(size, 3);
  await Deno.writeFile(join(data, "big.bin"), content);
  await using server = await startControlledServer(data);
  // Corrupt one byte past the first span, in the first response only.
  const bad = HASH_SPAN_BYTES + 12_345;
  let corrupted = false;
  server.onFile = (r) => {
    const start = Number(/bytes=(\d+)-/.exec(r.range ?? "")?.[1] ?? 0);
    const end = Number(/-(\d+)$/.exec(r.range ?? "")?.[1] ?? size - 1);
    if (corrupted || bad < start || bad > end) return undefined;
    corrupted = true;
    return { corruptAt: bad - start };
  };
  const out = join(dir.path, "big.bin");
  const { summary, events } = await run({
    baseUrl: server.baseUrl,
    remotePath: join(data, "big.bin"),
    localPath: out,
    verify: true,
  });
  assert.ok(corrupted);
  assert.deepEqual(summary.failures, []);
  assert.deepEqual(warnings(events), [
    `SHA-256 of bytes ${HASH_SPAN_BYTES}-${
      size - 1
    } of "big.bin" differs from the server's: fetching it again`,
  ]);
  assert.equal(server.served, size + (size - HASH_SPAN_BYTES));
  assert.ok(sameBytes(await Deno.readFile(out), content));
  assert.deepEqual(await leftovers(dir.path), []);
});

Deno.test("pull() with verify fails loudly when the bytes differ again after the refetch, and places nothing", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  await Deno.writeFile(join(data, "f.bin"), bytes(1 * MiB, 4));
  await Deno.writeFile(join(data, "ok.bin"), bytes(1 * MiB, 5));
  await using server = await startControlledServer(data);
  server.onFile = (r) =>
    r.path.endsWith("f.bin") ? { corruptAt: 77 } : undefined;
  const out = join(dir.path, "out");
  const { summary } = await run({
    baseUrl: server.baseUrl,
    remotePath: data,
    localPath: out,
    verify: true,
  });
  assert.equal(summary.files, 1);
  assert.deepEqual(summary.failures, [{
    path: "f.bin",
    message:
      `SHA-256 of "f.bin" still differs from the server's after fetching it again: not placed`,
  }]);
  await assert.rejects(() => Deno.stat(join(out, "f.bin")));
  assert.deepEqual(
    await leftovers(dir.path),
    [],
    "untrusted bytes are removed",
  );
});

Deno.test("pull() with verify checks files from a bundle and fetches a corrupted one again on its own", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  const files: Record<string, Uint8Array> = {};
  for (let i = 0; i < 5; i++) {
    files[`s${i}.txt`] = bytes(1000 + i, 10 + i);
    await Deno.writeFile(join(data, `s${i}.txt`), files[`s${i}.txt`]);
  }
  await using server = await startControlledServer(data);
  // The end frame is the last 16 bytes: flip the last data byte before it.
  let once = false;
  server.onBundle = (body) => {
    if (!once) body[body.length - 17] ^= 0xff;
    once = true;
    return body;
  };
  const out = join(dir.path, "out");
  const { summary, events } = await run({
    baseUrl: server.baseUrl,
    remotePath: data,
    localPath: out,
    verify: true,
  });
  assert.deepEqual(summary.failures, []);
  assert.equal(summary.files, 5);
  assert.equal(warnings(events).length, 1);
  assert.match(warnings(events)[0], /^SHA-256 of "s\d.txt" differs/);
  assert.equal(server.fileRequests.length, 1, "only the bad file again");
  assert.equal(server.hashRequests, 6, "one per file, and the refetched one");
  for (const [name, content] of Object.entries(files)) {
    assert.ok(sameBytes(await Deno.readFile(join(out, name)), content), name);
  }
  assert.deepEqual(await leftovers(dir.path), []);
});

Deno.test("pull() with verify waits out a busy hash endpoint (503) with backoff", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  const content = bytes(1 * MiB, 20);
  await Deno.writeFile(join(data, "f.bin"), content);
  await using server = await startControlledServer(data);
  server.onHash = (n) =>
    n < 2
      ? Response.json({
        error: "busy",
        message: "Cannot hash now: too many hash jobs are running, retry later",
      }, { status: 503 })
      : undefined;
  const out = join(dir.path, "f.bin");
  const { summary } = await run({
    baseUrl: server.baseUrl,
    remotePath: join(data, "f.bin"),
    localPath: out,
    verify: true,
  });
  assert.deepEqual(summary.failures, []);
  assert.equal(server.hashRequests, 3);
  assert.ok(sameBytes(await Deno.readFile(out), content));
});

Deno.test("pull() with checksum skips same bytes whatever the mtime, and fetches same size and mtime with other bytes", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  const a = bytes(2 * MiB, 30);
  const b = bytes(5000, 31);
  await Deno.writeFile(join(data, "a.bin"), a);
  await Deno.writeFile(join(data, "b.txt"), b);
  await using server = await startControlledServer(data);
  const out = join(dir.path, "out");
  await run({ baseUrl: server.baseUrl, remotePath: data, localPath: out });

  // a.bin: same bytes, other mtime. b.txt: other bytes, same size and mtime.
  await Deno.utime(join(out, "a.bin"), new Date(), new Date(1_000_000));
  const bTime = (await Deno.stat(join(out, "b.txt"))).mtime!;
  await Deno.writeFile(join(out, "b.txt"), bytes(5000, 99));
  await Deno.utime(join(out, "b.txt"), new Date(), bTime);

  server.resetCounts();
  const plain = await run({
    baseUrl: server.baseUrl,
    remotePath: data,
    localPath: out,
  });
  assert.equal(plain.summary.skipped, 1, "size + mtime are fooled by b.txt");
  assert.equal(server.hashRequests, 0);

  await Deno.utime(join(out, "a.bin"), new Date(), new Date(1_000_000));
  server.resetCounts();
  const { summary } = await run({
    baseUrl: server.baseUrl,
    remotePath: data,
    localPath: out,
    checksum: true,
  });
  assert.deepEqual(summary.failures, []);
  assert.equal(summary.skipped, 1);
  assert.equal(summary.files, 1);
  assert.equal(server.served, 0, "b.txt comes in a bundle, a.bin not at all");
  assert.ok(sameBytes(await Deno.readFile(join(out, "b.txt")), b));
  const remoteTime = (await Deno.stat(join(data, "a.bin"))).mtime!.getTime();
  assert.equal(
    (await Deno.stat(join(out, "a.bin"))).mtime!.getTime(),
    Math.trunc(remoteTime),
    "a skipped file gets the remote mtime",
  );
});
