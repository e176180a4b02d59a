/** Resume through lib/client/pull.ts: journals saved while bytes arrive and on abort, reruns that fetch only what is missing, and files that changed in between. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { WARM_CONNECTIONS } from "../lib/client/opening.ts";
import { loadJournal } from "../lib/shared/journal.ts";
import { journalTempPathFor } from "../lib/shared/part_file.ts";
import { RangeSet } from "../lib/shared/range_set.ts";
import {
  bytes,
  journalCovered,
  leftovers,
  runPull,
  sameBytes,
  startControlledServer,
} from "./_resume_fixture.ts";
import { tempDir, waitFor } from "./_programs.ts";

const MiB = 1024 * 1024;

const run = runPull;

Deno.test("pull() aborted mid-transfer saves a journal of the bytes on disk, and the rerun fetches only the rest with If-Range", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  const content = bytes(8 * MiB, 1);
  await Deno.writeFile(join(data, "f.bin"), content);
  await using server = await startControlledServer(data);
  const out = join(dir.path, "f.bin");
  const journal = out + ".hsync-journal";

  // Four ranges of 2 MiB, each stalled after 300,000 bytes.
  server.onFile = () => ({ stallAfter: 300_000 });
  const controller = new AbortController();
  let written = 0;
  const first = run({
    baseUrl: server.baseUrl,
    remotePath: join(data, "f.bin"),
    localPath: out,
    signal: controller.signal,
    // No periodic save: only the save on abort can claim these bytes.
    journalIntervalMs: 1e9,
    onEvent: (e) => {
      if (e.type === "progress") written += e.bytes;
    },
  });
  await waitFor("every range stalled", () => written === 4 * 300_000);
  // No flush yet (the interval is long): nothing is claimed before the abort.
  assert.deepEqual((await loadJournal(journal))?.done, []);
  controller.abort();
  const { summary } = await first;
  assert.equal(summary.files, 0);
  assert.equal(summary.failed, 0);
  const saved = await loadJournal(journal);
  assert.ok(saved, "the journal is kept on abort");
  assert.equal(new RangeSet(saved.done).covered, 4 * 300_000);
  assert.deepEqual(saved.done, [
    { start: 0, end: 300_000 },
    { start: 2 * MiB, end: 2 * MiB + 300_000 },
    { start: 4 * MiB, end: 4 * MiB + 300_000 },
    { start: 6 * MiB, end: 6 * MiB + 300_000 },
  ]);
  await assert.rejects(() => Deno.stat(out), "no final file yet");

  server.onFile = undefined;
  server.resetCounts();
  const again = await run({
    baseUrl: server.baseUrl,
    remotePath: join(data, "f.bin"),
    localPath: out,
  });
  assert.deepEqual(again.summary.failures, []);
  assert.equal(again.summary.files, 1);
  assert.equal(again.summary.resumed, 4 * 300_000);
  assert.equal(server.served, content.length - 4 * 300_000);
  const etag = saved.remote.etag;
  for (const r of server.fileRequests) {
    assert.equal(r.ifRange, etag);
    assert.equal(r.status, 206);
  }
  assert.ok(sameBytes(await Deno.readFile(out), content));
  assert.deepEqual(await leftovers(dir.path), []);
});

Deno.test("pull() saves the journal while bytes arrive, without waiting for the end", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  const content = bytes(4 * MiB, 2);
  await Deno.writeFile(join(data, "f.bin"), content);
  await using server = await startControlledServer(data);
  const out = join(dir.path, "f.bin");
  server.onFile = () => ({ stallAfter: 123_457 });
  const controller = new AbortController();
  const running = run({
    baseUrl: server.baseUrl,
    remotePath: join(data, "f.bin"),
    localPath: out,
    signal: controller.signal,
    journalIntervalMs: 100,
  });
  try {
    // 4 ranges of 1 MiB, each stalled: the saver claims the bytes while the pull still runs.
    await waitFor(
      "the journal claims every byte that arrived",
      async () => await journalCovered(out + ".hsync-journal") === 4 * 123_457,
    );
  } finally {
    controller.abort();
    await running;
  }
  await assert.rejects(() =>
    Deno.stat(journalTempPathFor(out + ".hsync-journal"))
  );
});

Deno.test("pull() starts a file over, saying so once, when it changed on the server since the interrupted pull", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  const remote = join(data, "f.bin");
  await Deno.writeFile(remote, bytes(3 * MiB, 3));
  await using server = await startControlledServer(data);
  const out = join(dir.path, "f.bin");
  server.onFile = () => ({ stallAfter: 500_000 });
  const controller = new AbortController();
  const first = run({
    baseUrl: server.baseUrl,
    remotePath: remote,
    localPath: out,
    signal: controller.signal,
    journalIntervalMs: 100,
  });
  await waitFor(
    "bytes claimed",
    async () => await journalCovered(out + ".hsync-journal") > 0,
  );
  controller.abort();
  await first;

  // Same size, new content and identity.
  const changed = bytes(3 * MiB, 4);
  await Deno.writeFile(remote + ".new", changed);
  await Deno.rename(remote + ".new", remote);
  server.onFile = undefined;
  server.resetCounts();
  const { summary, events } = await run({
    baseUrl: server.baseUrl,
    remotePath: remote,
    localPath: out,
  });
  assert.deepEqual(summary.failures, []);
  const warnings = events.filter((e) => e.type === "warning");
  assert.equal(warnings.length, 1);
  assert.match(
    JSON.stringify(warnings[0]),
    /changed on the server since the interrupted pull, starting over/,
  );
  assert.equal(server.served, changed.length, "everything fetched again");
  assert.ok(sameBytes(await Deno.readFile(out), changed));
  assert.deepEqual(await leftovers(dir.path), []);
});

Deno.test("pull() ignores a journal whose part file is gone or has another size", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  const content = bytes(2 * MiB, 5);
  await Deno.writeFile(join(data, "f.bin"), content);
  await using server = await startControlledServer(data);
  const out = join(dir.path, "f.bin");
  server.onFile = () => ({ stallAfter: 100_000 });
  const controller = new AbortController();
  const first = run({
    baseUrl: server.baseUrl,
    remotePath: join(data, "f.bin"),
    localPath: out,
    signal: controller.signal,
    journalIntervalMs: 100,
  });
  await waitFor(
    "bytes claimed",
    async () => await journalCovered(out + ".hsync-journal") > 0,
  );
  controller.abort();
  await first;
  // Someone truncated the part file: its journal must not be believed.
  await Deno.truncate(out + ".hsync-part", 1000);
  server.onFile = undefined;
  server.resetCounts();
  const { summary } = await run({
    baseUrl: server.baseUrl,
    remotePath: join(data, "f.bin"),
    localPath: out,
  });
  assert.deepEqual(summary.failures, []);
  assert.equal(server.served, content.length);
  assert.ok(sameBytes(await Deno.readFile(out), content));
});

Deno.test("pull() fails a file whose body keeps stalling after Max_timeout_retry, keeps its journal, and a rerun resumes it", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  const content = bytes(2 * MiB, 6);
  await Deno.writeFile(join(data, "f.bin"), content);
  await Deno.writeFile(join(data, "g.bin"), bytes(700_000, 7));
  await using server = await startControlledServer(data);
  const out = join(dir.path, "out");
  // f.bin: the first request gets 400,000 bytes, every later one nothing.
  let fRequests = 0;
  server.onFile = (r) =>
    r.path.endsWith("f.bin")
      ? { stallAfter: fRequests++ === 0 ? 400_000 : 0 }
      : undefined;
  const { summary } = await run(
    { baseUrl: server.baseUrl, remotePath: data, localPath: out },
    { Data_timeout: "0.3", Max_timeout_retry: "2", Min_part_size: "4M" },
  );
  assert.equal(summary.failed, 1, JSON.stringify(summary.failures));
  assert.equal(summary.failures[0].path, "f.bin");
  assert.match(summary.failures[0].message, /No data from .* for/);
  assert.equal(
    fRequests,
    3,
    "the first try, then Max_timeout_retry retries without progress",
  );
  assert.equal(summary.files, 1, "the other file completes");
  assert.equal(await journalCovered(join(out, "f.bin.hsync-journal")), 400_000);
  await assert.rejects(() => Deno.stat(join(out, "f.bin")));

  server.onFile = undefined;
  server.releaseStalls();
  server.resetCounts();
  const again = await run({
    baseUrl: server.baseUrl,
    remotePath: data,
    localPath: out,
  });
  assert.deepEqual(again.summary.failures, []);
  assert.equal(again.summary.skipped, 1);
  assert.equal(server.served, content.length - 400_000);
  assert.ok(sameBytes(await Deno.readFile(join(out, "f.bin")), content));
  assert.deepEqual(await leftovers(dir.path), []);
});

Deno.test("pull() with the journal off (benchmarks) keeps no journal and starts over", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  const content = bytes(2 * MiB, 8);
  await Deno.writeFile(join(data, "f.bin"), content);
  await using server = await startControlledServer(data);
  const out = join(dir.path, "f.bin");
  server.onFile = () => ({ stallAfter: 100_000 });
  const controller = new AbortController();
  const first = run({
    baseUrl: server.baseUrl,
    remotePath: join(data, "f.bin"),
    localPath: out,
    signal: controller.signal,
    journal: false,
  });
  await waitFor("ranges stalled", () => server.served === 2 * 100_000);
  controller.abort();
  await first;
  assert.deepEqual(await leftovers(dir.path), ["f.bin.hsync-part"]);
  server.onFile = undefined;
  server.resetCounts();
  const { summary } = await run({
    baseUrl: server.baseUrl,
    remotePath: join(data, "f.bin"),
    localPath: out,
    journal: false,
  });
  assert.equal(summary.files, 1);
  assert.equal(server.served, content.length);
  assert.ok(sameBytes(await Deno.readFile(out), content));
});

Deno.test("pull() keeps unflushed ranges of a journal only where their SHA-256 matches the server's", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  const content = bytes(4 * MiB, 9);
  await Deno.writeFile(join(data, "f.bin"), content);
  await using server = await startControlledServer(data);
  const stat = await (await fetch(
    `${server.baseUrl}/v1/stat?path=${encodeURIComponent(join(data, "f.bin"))}`,
  )).json();
  const out = join(dir.path, "f.bin");
  // What a crash of the machine could leave: the flushed claim is right, one
  // unflushed range made it to disk, the other did not (zeros).
  const part = new Uint8Array(content.length);
  part.set(content.subarray(0, 1 * MiB));
  await Deno.writeFile(out + ".hsync-part", part);
  await Deno.writeTextFile(
    out + ".hsync-journal",
    JSON.stringify({
      version: 1,
      remote: { size: stat.size, mtime: stat.mtime, etag: stat.etag },
      done: [[0, 100_000]],
      unflushed: [[100_000, 1 * MiB], [2 * MiB, 3 * MiB]],
    }),
  );
  const { summary } = await run({
    baseUrl: server.baseUrl,
    remotePath: join(data, "f.bin"),
    localPath: out,
  });
  assert.deepEqual(summary.failures, []);
  assert.equal(summary.resumed, 1 * MiB);
  assert.equal(server.served, 3 * MiB, "the gap and the range that differs");
  assert.ok(server.hashRequests >= 2);
  assert.ok(sameBytes(await Deno.readFile(out), content));
  assert.deepEqual(await leftovers(dir.path), []);
});

Deno.test("pull() asks a cut listing for the rest after the last entry it got: nothing listed or fetched twice, nothing missed", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  const files = new Map<string, Uint8Array>();
  for (const d of ["a", "b", "b/deep", "c"]) {
    await Deno.mkdir(join(data, d), { recursive: true });
    for (let i = 0; i < 300; i++) files.set(`${d}/f${i}`, bytes(100 + i, i));
  }
  files.set("big.bin", bytes(3 * MiB, 7));
  for (const [rel, content] of files) {
    await Deno.writeFile(join(data, rel), content);
  }
  await using server = await startControlledServer(data);
  // The first listing is cut after 500 lines, the second after 400 more.
  server.onList = (n) => n === 0 ? 500 : n === 1 ? 400 : undefined;
  const out = join(dir.path, "out");
  const { summary, events } = await run({
    baseUrl: server.baseUrl,
    remotePath: data,
    localPath: out,
  });
  assert.deepEqual(summary.failures, []);
  assert.equal(summary.files, files.size);
  assert.equal(summary.skipped, 0);
  const warnings = events.filter((e) => e.type === "warning");
  assert.equal(warnings.length, 2, JSON.stringify(warnings));
  assert.match(
    JSON.stringify(warnings[0]),
    /Listing from 127\.0\.0\.1:\d+ was cut .*asking for the rest/,
  );
  // Three requests, each after the last entry the one before delivered.
  assert.equal(server.listAfters.length, 3);
  assert.equal(server.listAfters[0], null);
  assert.ok(server.listAfters[1] !== null && server.listAfters[2] !== null);
  assert.notEqual(server.listAfters[1], server.listAfters[2]);
  for (const [rel, content] of files) {
    assert.ok(sameBytes(await Deno.readFile(join(out, rel)), content), rel);
  }
  // Each small file asked for once.
  const asked = server.bundlePaths;
  assert.equal(asked.length, files.size - 1);
  assert.equal(new Set(asked).size, asked.length);
  assert.equal(server.fileRequests.filter((r) => r.range === null).length, 0);
  assert.deepEqual(await leftovers(out), []);
});

Deno.test("pull() gives up on a listing that keeps being cut at the same place after Max_timeout_retry, and keeps what it got", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  for (let i = 0; i < 50; i++) {
    await Deno.writeTextFile(join(data, `f${String(i).padStart(2, "0")}`), "x");
  }
  await using server = await startControlledServer(data);
  // The first listing gets 10 lines; every later one is cut before its first.
  server.onList = (n) => n === 0 ? 10 : 0;
  const out = join(dir.path, "out");
  const { summary } = await run({
    baseUrl: server.baseUrl,
    remotePath: data,
    localPath: out,
  }, { Max_timeout_retry: "2" });
  assert.equal(server.listAfters.length, 1 + 2);
  assert.deepEqual(server.listAfters.slice(1), ["f09", "f09"]);
  assert.equal(summary.files, 10);
  assert.equal(summary.failed, 1);
  assert.equal(summary.failures[0].path, "(listing)");
  assert.match(summary.failures[0].message, /^Listing stopped early: /);
  assert.deepEqual(
    [...Deno.readDirSync(out)].map((e) => e.name).sort(),
    Array.from({ length: 10 }, (_, i) => `f0${i}`),
  );
});

Deno.test("pull() of a tree opens connections for its first bundles while it looks at the root, and the bundles go on them", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  for (let i = 0; i < 400; i++) {
    await Deno.writeTextFile(join(data, `f${i}`), `file ${i}\n`);
  }
  await using server = await startControlledServer(data);
  const out = join(dir.path, "out");
  const { summary } = await runPull({
    baseUrl: server.baseUrl,
    remotePath: data,
    localPath: out,
  });
  assert.deepEqual(summary.failures, []);
  assert.equal(summary.files, 400);
  const first = (endpoint: string) =>
    server.requests.findIndex((r) => r.endpoint === endpoint);
  // The health checks go out with the stat and the listing.
  const warmed = server.requests.filter((r) => r.endpoint === "/v1/health");
  assert.equal(warmed.length, WARM_CONNECTIONS);
  assert.ok(
    server.requests.lastIndexOf(warmed.at(-1)!) < first("/v1/bundle"),
    "warmed before the first bundle",
  );
  // The bundles find those connections open: no bundle needs a new one.
  const before = new Set(
    server.requests.slice(0, first("/v1/bundle")).map((r) => r.port),
  );
  const bundles = server.requests.filter((r) => r.endpoint === "/v1/bundle");
  assert.ok(bundles.length >= 2, `${bundles.length} bundles`);
  assert.ok(
    bundles.every((r) => before.has(r.port)),
    JSON.stringify(server.requests),
  );
});
