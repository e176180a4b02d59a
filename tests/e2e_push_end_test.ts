/**
 * End-to-end: a push sends its end (the directories' times, the release of
 * its lease) with its last bundles still in flight, and hsyncd does it once
 * they are written (`after=N`, lib/server/push_locks.ts): a round trip less,
 * and the directories keep their times.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { LockLease } from "../lib/shared/wire.ts";
import {
  hsyncLeftovers,
  runClient,
  snapshotTree,
  tempDir,
} from "./_programs.ts";
import { writableHandler } from "./_server_fixture.ts";

const T = 1_600_000_000_000;

/** A tree of `files` small files in three directories, a nested one and an empty one, each directory with its own time. */
async function datedTree(src: string, files: number): Promise<string[]> {
  const dirs = ["d0", "d1", "d2", "e", "e/f", "empty"];
  for (const d of dirs) await Deno.mkdir(join(src, d), { recursive: true });
  for (let i = 0; i < files; i++) {
    const d = ["d0", "d1", "d2", "e/f"][i % 4];
    await Deno.writeTextFile(join(src, d, `n${i}.txt`), `file ${i}\n`);
  }
  const all = ["", ...dirs];
  for (const [i, d] of [...all].reverse().entries()) {
    await Deno.utime(join(src, d), new Date(T), new Date(T + i * 1000));
  }
  return all;
}

/**
 * hsyncd in process, accepting pushes below `incoming`, each bundle, PUT
 * and commit held `holdMs` before hsyncd reads it, and a log of when each request came in
 * and was answered. `answerFirstBundle` may answer the first bundle itself
 * (hsyncd never sees it).
 */
async function slowBundles(
  dir: string,
  holdMs: number,
  answerFirstBundle?: (arrived: { endSent: Promise<void> }) => Promise<
    Response
  >,
) {
  const { handler, incoming } = await writableHandler(dir);
  const events: string[] = [];
  let mkdirCame!: () => void;
  const mkdirAfter = new Promise<void>((r) => mkdirCame = r);
  let bundles = 0;
  const served = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request, info) => {
      const url = new URL(request.url);
      const what = `${request.method} ${url.pathname}${url.search}`;
      events.push(`in ${what}`);
      if (/^\/v1\/mkdir$/.test(url.pathname) && url.searchParams.has("after")) {
        mkdirCame();
      }
      let response: Response;
      if (url.pathname === "/v1/upload/bundle") {
        bundles++;
        if (bundles === 1 && answerFirstBundle !== undefined) {
          await request.body?.cancel();
          // The end came (or, from a client that sends no early end,
          // 2 s passed: the test fails below instead of hanging).
          const endSent = Promise.race([
            mkdirAfter,
            new Promise<void>((r) => setTimeout(r, 2000)),
          ]);
          response = await answerFirstBundle({ endSent });
        } else {
          await new Promise((r) => setTimeout(r, holdMs));
          response = await handler(request, info);
        }
      } else if (
        url.pathname === "/v1/upload/commit" ||
        (request.method === "PUT" && url.pathname === "/v1/upload")
      ) {
        await new Promise((r) => setTimeout(r, holdMs));
        response = await handler(request, info);
      } else response = await handler(request, info);
      events.push(`out ${what} ${response.status}`);
      return response;
    },
  );
  return {
    incoming,
    events,
    base: `http://127.0.0.1:${served.addr.port}`,
    dest: `127.0.0.1:${served.addr.port}:${incoming}/`,
    async [Symbol.asyncDispose]() {
      await served.shutdown();
    },
  };
}

/** The position in `events` of the first event matching `re` (fails when none does). */
function at(events: string[], re: RegExp): number {
  const i = events.findIndex((e) => re.test(e));
  assert.notEqual(i, -1, `${re} not in:\n${events.join("\n")}`);
  return i;
}

/** Asserts the pushed tree is `src`'s, each directory with its time, and the lease is given back. */
async function assertLanded(
  server: Awaited<ReturnType<typeof slowBundles>>,
  src: string,
  dirs: string[],
  clientHome: string,
): Promise<void> {
  const got = await snapshotTree(join(server.incoming, "tree"));
  assert.deepEqual(hsyncLeftovers(got), []);
  assert.deepEqual(got, await snapshotTree(src));
  await assertEnded(server, src, dirs, clientHome);
}

/** Asserts each directory of the pushed tree has its time, and the lease is given back (another push takes it at once, no record is left). */
async function assertEnded(
  server: Awaited<ReturnType<typeof slowBundles>>,
  src: string,
  dirs: string[],
  clientHome: string,
): Promise<void> {
  for (const d of dirs) {
    const local = await Deno.stat(join(src, d));
    const remote = await Deno.stat(join(server.incoming, "tree", d));
    assert.equal(remote.mtime?.getTime(), local.mtime?.getTime(), `"${d}"`);
  }
  const taken = await fetch(
    `${server.base}/v1/lock?${new URLSearchParams({
      path: join(server.incoming, "tree"),
    })}`,
    { method: "POST" },
  );
  assert.equal(taken.status, 200);
  assert.equal(typeof (await taken.json() as LockLease).token, "string");
  assert.deepEqual([...Deno.readDirSync(join(clientHome, "leases"))], []);
}

Deno.test("a push sends its directories' times and its lease's release with its last bundle in flight; hsyncd does them once that bundle is written: every directory keeps its time", async () => {
  await using tmp = await tempDir("hsync-push-end-");
  const src = join(tmp.path, "tree");
  const dirs = await datedTree(src, 100);
  const { server, home, out } = await pushThrough(tmp.path, src, 400);
  await using _ = server;
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stderr, /hsync: 100 files, /);
  const events = server.events;
  const lastBundleOut = events.findLastIndex((e) =>
    e.startsWith("out POST /v1/upload/bundle")
  );
  // Both went before the last bundle was answered (it was held 400 ms).
  assert.ok(at(events, /^in POST \/v1\/mkdir\?after=\d+$/) < lastBundleOut);
  assert.ok(
    at(events, /^in POST \/v1\/lock\?.*release=1&after=\d+&run=/) <
      lastBundleOut,
  );
  // And were answered after it: hsyncd waited.
  assert.ok(
    at(events, /^out POST \/v1\/mkdir\?after=\d+ 200$/) > lastBundleOut,
  );
  // Nothing ended the long way.
  assert.equal(events.filter((e) => /^in POST \/v1\/mkdir/.test(e)).length, 1);
  assert.equal(
    events.filter((e) => /release=1/.test(e) && e.startsWith("in")).length,
    1,
  );
  await assertLanded(server, src, dirs, home);
});

/**
 * Pushes `src` with the real client through {@linkcode slowBundles} (its
 * requests held `holdMs`; the first bundle's first try, when `answer` is
 * given, answered by it once the end has come): the run's outcome and how
 * long it took, with the server and the client's home for the checks.
 */
async function pushThrough(
  dir: string,
  src: string,
  holdMs: number,
  answer?: () => Promise<Response>,
) {
  const server = await slowBundles(
    dir,
    holdMs,
    answer === undefined ? undefined : async (arrived) => {
      await arrived.endSent;
      return await answer();
    },
  );
  const home = join(dir, "client-home");
  const started = performance.now();
  try {
    const out = await runClient([src, server.dest], { HSYNC_DIR: home });
    return { server, home, out, took: performance.now() - started };
  } catch (error) {
    await server[Symbol.asyncDispose]();
    throw error;
  }
}

Deno.test("a bundle that fails after the end was sent is sent again and the push ends the long way: the directories keep their times, the lease is given back", async () => {
  await using tmp = await tempDir("hsync-push-end-");
  const src = join(tmp.path, "tree");
  const dirs = await datedTree(src, 20);
  // The one bundle's first try is answered 503 once the end has come
  // (waiting for it): its files are written by the second try, after.
  const { server, home, out } = await pushThrough(
    tmp.path,
    src,
    0,
    async () => {
      await new Promise((r) => setTimeout(r, 100));
      return Response.json(
        { error: "busy", message: "Cannot upload now: test" },
        { status: 503, headers: { "retry-after": "0" } },
      );
    },
  );
  await using _ = server;
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stderr, /hsync: 20 files, .* 0 failed/);
  const events = server.events;
  const early = at(events, /^in POST \/v1\/mkdir\?after=\d+$/);
  const retried = events.findLastIndex((e) =>
    e.startsWith("out POST /v1/upload/bundle") && e.endsWith(" 200")
  );
  assert.ok(early < retried, events.join("\n"));
  // The long way after the last answer: the directories' times again.
  assert.ok(at(events, /^in POST \/v1\/mkdir$/) > retried, events.join("\n"));
  await assertLanded(server, src, dirs, home);
});

Deno.test("a bundle refused before hsyncd counts it, after the end was sent: the end is called off at once, the push ends the long way and tells the failure", async () => {
  await using tmp = await tempDir("hsync-push-end-");
  const src = join(tmp.path, "tree");
  const dirs = await datedTree(src, 20);
  // 413 from in front of hsyncd: hsyncd never counts that request, and
  // would wait for it until the lease's length (30 s).
  const { server, home, out, took } = await pushThrough(
    tmp.path,
    src,
    0,
    () =>
      Promise.resolve(Response.json(
        { error: "too_large", message: "Cannot read the request body: test" },
        { status: 413 },
      )),
  );
  await using _ = server;
  assert.equal(out.code, 2, out.stderr);
  assert.match(out.stderr, /hsync: 0 files, .* 20 failed/);
  assert.ok(took < 15_000, `took ${took} ms`);
  const events = server.events;
  const early = at(events, /^in POST \/v1\/mkdir\?after=\d+$/);
  assert.ok(at(events, /^in POST \/v1\/mkdir$/) > early, events.join("\n"));
  // The directories were made and given their times all the same.
  await assertEnded(server, src, dirs, home);
});

Deno.test("a tree with files sent in ranges ends with its last PUTs or commit in flight too: the release and the directories' times wait at hsyncd, every file committed, every directory with its time", async () => {
  await using tmp = await tempDir("hsync-push-end-");
  const src = join(tmp.path, "tree");
  const dirs = await datedTree(src, 12);
  // Two files in ranges (over 256 KiB), written just now: each is
  // committed by a request of its own after its PUTs.
  for (const [i, rel] of ["d0/big.bin", "e/f/big.bin"].entries()) {
    const dir = join(src, rel, "..");
    const { mtime } = await Deno.stat(dir);
    await Deno.writeFile(
      join(src, rel),
      new Uint8Array(700_000 + i).map((_, k) => (k * 31 + i) & 255),
    );
    await Deno.utime(dir, new Date(T), mtime!);
  }
  const { server, home, out } = await pushThrough(tmp.path, src, 300);
  await using _ = server;
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stderr, /hsync: 14 files, /);
  const events = server.events;
  const lastWrite = events.findLastIndex((e) =>
    /^out (PUT \/v1\/upload|POST \/v1\/upload\/commit|POST \/v1\/upload\/bundle)/
      .test(e)
  );
  const release = at(events, /^in POST \/v1\/lock\?.*release=1&after=\d+&run=/);
  assert.ok(release < lastWrite, events.join("\n"));
  assert.ok(
    at(events, /^out POST \/v1\/lock\?.*release=1&after=.* 200$/) > lastWrite,
    events.join("\n"),
  );
  assert.equal(events.filter((e) => /^in POST \/v1\/mkdir/.test(e)).length, 1);
  await assertLanded(server, src, dirs, home);
});
