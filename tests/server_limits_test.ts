/** Tests of lib/server/handler.ts's bounded work: refused peers are not counted, per-peer and per-kind caps, body budgets and timeouts, hash spans. */
import assert from "node:assert/strict";
import { join } from "node:path";
import defaults from "../hsync.ini" with { type: "text" };
import type { Verifier } from "../lib/shared/auth.ts";
import { ServerNames } from "../lib/server/server_names.ts";
import {
  loadConfig,
  type Overrides,
  serverSettings,
} from "../lib/shared/config.ts";
import { decodeFrames } from "../lib/shared/bundle_codec.ts";
import {
  createHandler,
  type Handler,
  type HandlerOptions,
  type ServerLimits,
} from "../lib/server/handler.ts";
import type { ErrorBody } from "../lib/shared/wire.ts";

interface Setup {
  root: string;
  handler: Handler;
  /**
   * Calls the handler as Deno.serve would, from `remote`; the request stays
   * in flight (as while its response body is sent) until {@linkcode finish}.
   */
  call(path: string, init?: RequestInit, remote?: string): Promise<Response>;
  /** Lets every request made so far complete. */
  finish(): void;
  q(rel: string): string;
}

async function withServer(
  fn: (s: Setup) => Promise<void>,
  limits: Partial<ServerLimits>,
  options: { overrides?: Overrides; extra?: Partial<HandlerOptions> } = {},
): Promise<void> {
  const tmp = await Deno.realPath(
    await Deno.makeTempDir({ prefix: "hsync_limits_" }),
  );
  const root = join(tmp, "root");
  await Deno.mkdir(root);
  await Deno.writeTextFile(join(root, "hello.txt"), "hello world");
  const hsyncDir = join(tmp, "state");
  const config = await loadConfig({
    defaults,
    hsyncDir,
    readTextFile: () => Promise.reject(new Deno.errors.NotFound("none")),
  });
  const handler = await createHandler({
    settings: serverSettings(config, {
      Only_allowed_path: root,
      ...options.overrides,
    }),
    hsyncDir,
    hostname: "test-host",
    limits,
    ...options.extra,
  });
  const finishers: Array<() => void> = [];
  const setup: Setup = {
    root,
    handler,
    call(path, init, remote = "127.0.0.1") {
      let done!: () => void;
      const completed = new Promise<void>((resolve) => done = resolve);
      finishers.push(done);
      // An HTTP/1.1 request, as Deno.serve hands it over (HTTP/2 has no Host).
      const request = new Request(`http://localhost${path}`, init);
      if (!request.headers.has("host")) {
        request.headers.set("host", "localhost");
      }
      return handler(request, {
        remoteAddr: { transport: "tcp", hostname: remote, port: 1234 },
        completed,
      });
    },
    finish() {
      for (const done of finishers.splice(0)) done();
    },
    q: (rel) => encodeURIComponent(rel === "" ? root : join(root, rel)),
  };
  try {
    await fn(setup);
  } finally {
    setup.finish();
    await Deno.remove(tmp, { recursive: true });
  }
}

async function expectError(
  response: Response,
  status: number,
  code: string,
): Promise<ErrorBody> {
  const text = await response.text();
  assert.equal(response.status, status, text);
  const body = JSON.parse(text) as ErrorBody;
  assert.equal(body.error, code, text);
  return body;
}

/** A 503 `busy` that names `limit` in its header and message and says when to retry. */
async function expectBusy(response: Response, limit: string): Promise<void> {
  const body = await expectError(response, 503, "busy");
  assert.equal(response.headers.get("retry-after"), "1");
  assert.equal(response.headers.get("x-hsync-limit"), limit);
  assert.match(body.message, new RegExp(`\\(limit ${limit}\\)`));
}

async function expectOk(response: Response): Promise<void> {
  assert.equal(response.status, 200, await response.clone().text());
  await response.body?.cancel();
}

/** An endless request body of `chunk`-byte pieces that counts what the server pulls from it. */
function countedBody(
  counter: { bytes: number },
  chunk = 64 * 1024,
  total = Infinity,
  piece?: Uint8Array,
): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= total) {
        controller.close();
        return;
      }
      const n = Math.min(chunk, total - sent);
      const bytes = piece?.subarray(sent, sent + n) ?? new Uint8Array(n);
      sent += n;
      counter.bytes += n;
      controller.enqueue(bytes);
    },
  }, { highWaterMark: 0 });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

Deno.test("requests refused by Allowed_host are not counted, not read and told the connection ends: 300 of them do not starve an allowed peer", async () => {
  await withServer(
    async (s) => {
      const pulled = { bytes: 0 };
      for (let i = 0; i < 300; i++) {
        const refused = await s.call("/v1/bundle", {
          method: "POST",
          body: countedBody(pulled),
        });
        await expectError(refused, 403, "host_not_allowed");
        assert.equal(refused.headers.get("connection"), "close");
      }
      assert.equal(pulled.bytes, 0, "a refused body is never read");
      // All 300 are still "in flight" (not completed), yet count for nothing.
      for (let i = 0; i < 20; i++) {
        await expectOk(await s.call("/v1/health", {}, "127.0.0.2"));
      }
    },
    { maxRequests: 20, peerRequests: 20, bundleMaxBodyBytes: 64 * 1024 },
    { overrides: { Allowed_host: "127.0.0.2" } },
  );
});

Deno.test("unsigned and badly signed requests are not counted and their bodies are not read", async () => {
  // Accepts the one token below.
  const verifier: Verifier = (req) =>
    Promise.resolve(
      req.authorization === "Good token"
        ? { ok: true }
        : { ok: false, reason: "not the good token" },
    );
  // The requests go to http://localhost/ (port 80).
  const serverNames = new ServerNames({
    tls: false,
    hostIp: "127.0.0.1",
    port: 80,
  });
  await withServer(
    async (s) => {
      const pulled = { bytes: 0 };
      for (let i = 0; i < 300; i++) {
        const refused = await s.call("/v1/bundle", {
          method: "POST",
          body: countedBody(pulled),
          headers: i % 2 === 0
            ? {}
            : { authorization: "Bad token", "x-hsync-content-sha256": "-" },
        });
        await expectError(refused, 401, "unauthorized");
        assert.equal(refused.headers.get("connection"), "close");
      }
      assert.equal(pulled.bytes, 0);
      for (let i = 0; i < 20; i++) {
        await expectOk(
          await s.call("/v1/health", {
            headers: { authorization: "Good token" },
          }),
        );
      }
    },
    { maxRequests: 20, peerRequests: 20, bundleMaxBodyBytes: 64 * 1024 },
    { extra: { verifier, serverNames } },
  );
});

Deno.test("one peer gets at most peerRequests at once: the next is 503 busy naming the limit, other peers are served", async () => {
  await withServer(
    async (s) => {
      for (let i = 0; i < 3; i++) {
        await expectOk(await s.call("/v1/health", {}, "10.0.0.1"));
      }
      await expectBusy(
        await s.call("/v1/health", {}, "10.0.0.1"),
        "peerRequests",
      );
      for (let i = 0; i < 3; i++) {
        await expectOk(await s.call("/v1/health", {}, "10.0.0.2"));
      }
      // 6 of 7 taken, 2 refused: the refused ones held nothing.
      await expectOk(await s.call("/v1/health", {}, "10.0.0.3"));
      await expectBusy(
        await s.call("/v1/health", {}, "10.0.0.4"),
        "maxRequests",
      );
      s.finish();
      await delay(0);
      await expectOk(await s.call("/v1/health", {}, "10.0.0.1"));
    },
    { maxRequests: 7, peerRequests: 3 },
  );
});

Deno.test("long-polls have their own caps, in all and per peer, and take no request slot", async () => {
  await withServer(
    async (s) => {
      const watch = (remote: string) =>
        s.call(`/v1/watch?path=${s.q("")}`, {}, remote);
      // Each answers at once (no cursor) but stays in flight until finish().
      await expectOk(await watch("10.0.0.1"));
      await expectOk(await watch("10.0.0.1"));
      await expectBusy(await watch("10.0.0.1"), "peerWatches");
      await expectOk(await watch("10.0.0.2"));
      await expectBusy(await watch("10.0.0.3"), "maxWatches");
      // The requests of a peer holding its watches are still served.
      for (let i = 0; i < 2; i++) {
        await expectOk(
          await s.call(`/v1/stat?path=${s.q("hello.txt")}`, {}, "10.0.0.1"),
        );
      }
    },
    { maxRequests: 2, peerRequests: 2, maxWatches: 3, peerWatches: 2 },
  );
});

Deno.test("a request body that stops arriving is abandoned after bodyIdleMs with 408, and the connection is told it ends", async () => {
  await withServer(
    async (s) => {
      let cancelled = false;
      const stalled = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode('{"root": '));
        },
        cancel() {
          cancelled = true;
        },
      });
      let timer: ReturnType<typeof setTimeout> | undefined;
      const response = await Promise.race([
        s.call("/v1/bundle", { method: "POST", body: stalled }),
        new Promise<undefined>((resolve) =>
          timer = setTimeout(resolve, 3000, undefined)
        ),
      ]);
      clearTimeout(timer);
      assert.ok(response !== undefined, "no answer 3 s after the body stalled");
      await expectError(response, 408, "timeout");
      assert.equal(response.headers.get("connection"), "close");
      assert.ok(cancelled, "the body is given up");
    },
    { bodyIdleMs: 200 },
  );
});

/**
 * Serves `s.handler` on a loopback port with `Deno.serve` (whose request
 * bodies are read as bytes into one buffer, unlike a `Request` made here)
 * and sends `head` then `pieces` on a raw connection, `gapMs` apart;
 * resolves with the status line of the answer.
 */
async function rawExchange(
  s: Setup,
  head: string,
  pieces: Uint8Array[],
  gapMs: number,
): Promise<{ status: string; afterMs: number }> {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request, info) => s.handler(request, info),
  );
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  try {
    const started = performance.now();
    const answer = (async () => {
      const buf = new Uint8Array(4096);
      const n = await conn.read(buf);
      return {
        status: new TextDecoder().decode(buf.subarray(0, n ?? 0)).split(
          "\r\n",
        )[0],
        afterMs: performance.now() - started,
      };
    })();
    await conn.write(new TextEncoder().encode(head));
    let answered = false;
    answer.finally(() => answered = true);
    for (const piece of pieces) {
      if (answered) break;
      await delay(gapMs);
      await conn.write(piece).catch(() => {});
    }
    return await answer;
  } finally {
    conn.close();
    await server.shutdown();
  }
}

Deno.test("a body of a declared length that stops arriving is abandoned after bodyIdleMs (408); one that keeps trickling in is read whole", async () => {
  await withServer(
    async (s) => {
      const json = new TextEncoder().encode(
        JSON.stringify({ root: s.root, paths: ["hello.txt"] }),
      );
      const head = (length: number) =>
        `POST /v1/bundle HTTP/1.1\r\nHost: localhost\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`;
      // 10 of 100 declared bytes, then nothing.
      const stalled = await rawExchange(s, head(100), [json.slice(0, 10)], 0);
      assert.match(stalled.status, / 408 /);
      assert.ok(
        stalled.afterMs >= 290 && stalled.afterMs < 2000,
        `answered after ${stalled.afterMs} ms`,
      );
      // Eight pieces 120 ms apart: the body takes 960 ms, no gap 300.
      const pieces = Array.from(
        { length: 8 },
        (_, i) => json.slice(i * json.length / 8, (i + 1) * json.length / 8),
      );
      const trickled = await rawExchange(s, head(json.length), pieces, 120);
      assert.match(trickled.status, / 200 /);
      assert.ok(trickled.afterMs >= 900, `answered after ${trickled.afterMs}`);
    },
    { bodyIdleMs: 300 },
  );
});

Deno.test("100 queued bundles with 1 MiB bodies hold at most bodyBytes of them, peers at most peerBodyBytes; the rest get 503 before their bodies are read", async () => {
  const MiB = 1024 * 1024;
  const chunk = 64 * 1024;
  await withServer(
    async (s) => {
      const body = (pad: number) =>
        new TextEncoder().encode(
          JSON.stringify({
            root: s.root,
            paths: ["hello.txt"],
            pad: "x".repeat(pad),
          }),
        );
      // The one streaming slot is taken by a bundle nobody reads.
      const first = await s.call("/v1/bundle", {
        method: "POST",
        body: body(0),
      });
      assert.equal(first.status, 200);
      const size = body(MiB).length;
      const pulled = { bytes: 0 };
      const all: Array<Promise<Response>> = [];
      for (let i = 0; i < 100; i++) {
        const declared = i % 2 === 0;
        all.push(s.call("/v1/bundle", {
          method: "POST",
          body: countedBody(pulled, chunk, size, body(MiB)),
          headers: declared ? { "content-length": String(size) } : {},
        }, `10.0.0.${i % 10}`));
      }
      // Those that may not wait are answered; the others wait for the slot.
      const settled = new Map<number, Response>();
      all.forEach((p, i) => p.then((r) => settled.set(i, r)));
      const deadline = Date.now() + 10_000;
      while (settled.size < 100 - 8 && Date.now() < deadline) await delay(10);
      await delay(50);
      const refused = new Map(settled);
      const waiting = 100 - refused.size;
      assert.ok(waiting >= 1 && waiting <= 8, `${waiting} bundles wait`);
      const limits = new Map<string, number>();
      for (const response of refused.values()) {
        const limit = response.headers.get("x-hsync-limit") ?? "";
        limits.set(limit, (limits.get(limit) ?? 0) + 1);
        await expectBusy(response, limit);
      }
      assert.deepEqual(
        [...limits.keys()].sort(),
        ["bodyBytes", "peerBodyBytes"],
        [...limits].join(),
      );
      // What the server read: the bodies of those waiting, within the
      // budget; nothing of those it refused.
      assert.equal(pulled.bytes, waiting * size);
      assert.ok(pulled.bytes <= 8 * MiB, `${pulled.bytes} bytes held`);
      // The first bundle done, the waiting ones stream in turn.
      for await (const _ of decodeFrames(first.body!)) { /* drain */ }
      const served = await Promise.all(
        all.filter((_, i) => !refused.has(i)).map(async (pending) => {
          const response = await pending;
          assert.equal(response.status, 200);
          let frames = 0;
          for await (const _ of decodeFrames(response.body!)) frames++;
          return frames;
        }),
      );
      // hello.txt each.
      assert.deepEqual(served, served.map(() => 1));
    },
    {
      bundleJobs: 1,
      bodyBytes: 8 * MiB,
      peerBodyBytes: 2 * MiB + 64 * 1024,
    },
  );
});

Deno.test("GET /v1/hash refuses a span longer than hashMaxBytes with 400 too_large; spans within it are answered", async () => {
  await withServer(
    async (s) => {
      await Deno.writeFile(join(s.root, "big.bin"), new Uint8Array(300_000));
      const big = s.q("big.bin");
      const body = await expectError(
        await s.call(`/v1/hash?path=${big}`),
        400,
        "too_large",
      );
      assert.match(body.message, /at most 100000 \(hashMaxBytes\)/);
      await expectError(
        await s.call(`/v1/hash?path=${big}&offset=0&length=100001`),
        400,
        "too_large",
      );
      await expectOk(
        await s.call(`/v1/hash?path=${big}&offset=0&length=100000`),
      );
      await expectOk(await s.call(`/v1/hash?path=${big}&offset=200000`));
    },
    { hashMaxBytes: 100_000 },
  );
});

Deno.test("one peer flooding hashes of large spans cannot lock out another peer's small hash, and waits in its own line", async () => {
  await withServer(
    async (s) => {
      const huge = join(s.root, "huge.bin");
      const file = await Deno.open(huge, { write: true, create: true });
      await file.truncate(4 * 1024 * 1024 * 1024);
      file.close();
      const span = 64 * 1024 * 1024; // the default hashMaxBytes
      const abort = new AbortController();
      const flood = Array.from(
        { length: 40 },
        (_, i) =>
          s.call(
            `/v1/hash?path=${s.q("huge.bin")}&offset=${
              i * span
            }&length=${span}`,
            { signal: abort.signal },
            "10.0.0.1",
          ),
      );
      await delay(20);
      const started = performance.now();
      const small = await s.call(
        `/v1/hash?path=${s.q("hello.txt")}`,
        {},
        "10.0.0.2",
      );
      const ms = performance.now() - started;
      await expectOk(small);
      assert.ok(ms < 2000, `the small hash took ${ms.toFixed(0)} ms`);
      abort.abort();
      const statuses = new Map<string, number>();
      for (const response of await Promise.all(flood)) {
        const key = response.status === 503
          ? `503 ${response.headers.get("x-hsync-limit")}`
          : String(response.status);
        statuses.set(key, (statuses.get(key) ?? 0) + 1);
        await response.body?.cancel();
      }
      // One running and 32 waiting of the flood (peerHashJobs, peerHashQueue);
      // the other 7 refused at once.
      assert.equal(statuses.get("503 peerHashQueue"), 7, [...statuses].join());
    },
    {},
  );
});
