/** Tests of lib/client/remote.ts: NDJSON line splitting, JSON errors, signing, timeouts, unreachable servers. */
import assert from "node:assert/strict";
import {
  ConnectError,
  HttpError,
  ProtocolError,
} from "../lib/shared/errors.ts";
import {
  errorFrom,
  RedirectRefused,
  Remote,
  TimeoutError,
} from "../lib/client/remote.ts";
import {
  MAX_LINE_CHARS,
  parseGlobLine,
  parseListLine,
  splitLines,
} from "../lib/client/ndjson_lines.ts";

function streamOf(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (const c of chunks) controller.enqueue(c);
      controller.close();
    },
  });
}

async function lines(chunks: Uint8Array[]): Promise<string[]> {
  const out: string[] = [];
  for await (const line of splitLines(streamOf(chunks))) out.push(line);
  return out;
}

const enc = new TextEncoder();

Deno.test("splitLines() joins lines split across chunks, at every cut", async () => {
  const text = '{"path":"é x"}\n{"path":"b"}\n\n{"path":"ü/ß"}';
  const bytes = enc.encode(text);
  const want = text.split("\n");
  for (let cut = 0; cut <= bytes.length; cut++) {
    // Cuts fall inside multi-byte UTF-8 characters too.
    assert.deepEqual(
      await lines([bytes.subarray(0, cut), bytes.subarray(cut)]),
      want,
      `cut at ${cut}`,
    );
  }
  const oneByOne = Array.from(bytes, (b) => new Uint8Array([b]));
  assert.deepEqual(await lines(oneByOne), want);
});

Deno.test("splitLines() yields nothing for an empty stream and keeps a last line without newline", async () => {
  assert.deepEqual(await lines([]), []);
  assert.deepEqual(await lines([enc.encode("a\nb\n")]), ["a", "b"]);
  assert.deepEqual(await lines([enc.encode("a\nb")]), ["a", "b"]);
});

Deno.test("splitLines() refuses a line longer than the limit", async () => {
  const chunk = enc.encode("x".repeat(64 * 1024));
  const chunks = Array.from(
    { length: MAX_LINE_CHARS / chunk.length + 2 },
    () => chunk,
  );
  await assert.rejects(() => lines(chunks), /longer than/);
});

Deno.test("parseListLine() and parseGlobLine() take a well-formed line and refuse anything else in one line naming the server", () => {
  const entry = {
    path: "a/b",
    type: "file",
    size: 3,
    mtime: 1,
    mode: 0o644,
    etag: '"x"',
  };
  assert.deepEqual(parseListLine(JSON.stringify(entry), "h:1", false), entry);
  const link = { ...entry, type: "symlink", target: "b" };
  assert.deepEqual(parseListLine(JSON.stringify(link), "h:1", true), link);
  for (
    const [line, links, message] of [
      ["{", false, "Listing from h:1 has a line that is not JSON"],
      [JSON.stringify(link), false, "Listing from h:1 has a malformed entry"],
      [
        JSON.stringify({ ...entry, size: -1 }),
        false,
        "Listing from h:1 has a malformed entry",
      ],
      [
        JSON.stringify({ omitted: "link" }),
        false,
        "Listing from h:1 has a malformed omission",
      ],
    ] as const
  ) {
    assert.throws(
      () => parseListLine(line, "h:1", links),
      (e: unknown) => e instanceof ProtocolError && e.message === message,
      line,
    );
  }
  assert.deepEqual(
    parseGlobLine('{"path":"/d/x","type":"dir"}', "h:1"),
    { path: "/d/x", type: "dir" },
  );
  for (
    const line of [
      "not json",
      '{"path":"d/x","type":"dir"}',
      '{"path":"/d/\\u0000","type":"file"}',
      '{"path":"/d/x","type":"symlink"}',
    ]
  ) {
    assert.throws(
      () => parseGlobLine(line, "h:1"),
      (e: unknown) =>
        e instanceof ProtocolError &&
        e.message === "Glob answer from h:1 has a malformed line",
      line,
    );
  }
});

Deno.test("errorFrom() keeps the server's code and message", async () => {
  const e = await errorFrom(
    Response.json({ error: "forbidden", message: 'Refused "/etc"' }, {
      status: 403,
    }),
  );
  assert.ok(e instanceof HttpError);
  assert.equal(e.status, 403);
  assert.equal(e.code, "forbidden");
  assert.equal(e.message, 'Refused "/etc"');
  const plain = await errorFrom(
    new Response("oops", { status: 502, statusText: "Bad Gateway" }),
  );
  assert.equal(plain.code, "http_502");
  assert.equal(plain.message, "502 Bad Gateway");
});

Deno.test("Remote talks to a server: query encoding, signing, errors, listing", async (t) => {
  const seen: Array<{ url: string; auth: string | null }> = [];
  let stall = false;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request) => {
      const url = new URL(request.url);
      seen.push({
        url: url.pathname + url.search,
        auth: request.headers.get("authorization"),
      });
      if (stall) {
        await new Promise((r) => setTimeout(r, 400));
        return new Response("late");
      }
      if (url.pathname === "/v1/stat") {
        if (url.searchParams.get("path") === "/missing") {
          return Response.json(
            { error: "not_found", message: 'No "/missing"' },
            {
              status: 404,
            },
          );
        }
        return Response.json({
          type: "dir",
          size: 0,
          mtime: 1,
          mode: 0o755,
          etag: '"x"',
        });
      }
      if (url.pathname === "/v1/list") {
        const body = [
          {
            path: "a b",
            type: "file",
            size: 1,
            mtime: 2,
            mode: 0o644,
            etag: '"a"',
          },
          {
            path: "é",
            type: "dir",
            size: 0,
            mtime: 2,
            mode: 0o755,
            etag: '"d"',
          },
        ].map((e) => JSON.stringify(e) + "\n").join("");
        return new Response(body);
      }
      return new Response("nope", { status: 404 });
    },
  );
  const remote = new Remote({
    baseUrl: `http://127.0.0.1:${server.addr.port}/`,
    sign: (request) => request.headers.set("authorization", "test-signature"),
    idleTimeoutMs: 200,
  });
  try {
    await t.step(
      "stat() percent-encodes the path and signs the request",
      async () => {
        const st = await remote.stat("/data/a b&c=é");
        assert.equal(st.type, "dir");
        const last = seen[seen.length - 1];
        assert.equal(
          new URL("http://x" + last.url).searchParams.get("path"),
          "/data/a b&c=é",
        );
        assert.equal(last.auth, "test-signature");
      },
    );
    await t.step(
      "an error status becomes HttpError with the server's message",
      async () => {
        await assert.rejects(() => remote.stat("/missing"), (e: unknown) => {
          assert.ok(e instanceof HttpError);
          assert.equal(e.status, 404);
          assert.equal(e.message, 'No "/missing"');
          return true;
        });
      },
    );
    await t.step("list() yields checked entries", async () => {
      const got = [];
      for await (const e of remote.list("/data")) got.push(e.path);
      assert.deepEqual(got, ["a b", "é"]);
    });
    await t.step("a server that sends nothing times out", async () => {
      stall = true;
      await assert.rejects(() => remote.stat("/data"), TimeoutError);
      stall = false;
    });
  } finally {
    await server.shutdown();
  }
});

Deno.test("Remote reports an unreachable server as ConnectError", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const remote = new Remote({ baseUrl: `http://127.0.0.1:${port}` });
  await assert.rejects(() => remote.stat("/x"), (e: unknown) => {
    assert.ok(e instanceof ConnectError);
    assert.equal(
      e.message,
      `Cannot reach 127.0.0.1:${port}: connection refused`,
    );
    return true;
  });
});

Deno.test("send() never follows a redirect: it tells onRefuse and throws one line naming the URL and the Location", async () => {
  let followed = 0;
  const other = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => {
      followed++;
      return new Response("{}");
    },
  );
  const location = `http://127.0.0.1:${other.addr.port}/x`;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("moved", { status: 308, headers: { location } }),
  );
  try {
    const refused: ConnectError[] = [];
    const remote = new Remote({
      baseUrl: `http://127.0.0.1:${server.addr.port}`,
      onRefuse: (error) => refused.push(error),
    });
    const url = remote.url("/v1/stat", { path: "/a" });
    await assert.rejects(
      () => remote.send(url),
      (error: unknown) => {
        assert.ok(error instanceof RedirectRefused);
        assert.ok(error instanceof ConnectError);
        assert.equal(
          error.message,
          `Server ${remote.host} redirected "${url.href}" to "${location}": hsync does not follow redirects`,
        );
        return true;
      },
    );
    assert.equal(refused.length, 1);
    assert.equal(followed, 0);
  } finally {
    await server.shutdown();
    await other.shutdown();
  }
});

Deno.test("onRefuse() set after a redirect came (a run taking over requests sent before it) is told of it at once, then of later ones as they come", async () => {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () =>
      new Response("moved", {
        status: 307,
        headers: { location: "http://127.0.0.1:1/x" },
      }),
  );
  try {
    const remote = new Remote({
      baseUrl: `http://127.0.0.1:${server.addr.port}`,
    });
    await assert.rejects(() => remote.send(remote.url("/v1/stat")));
    const refused: ConnectError[] = [];
    remote.onRefuse((error) => refused.push(error));
    assert.equal(refused.length, 1);
    assert.ok(refused[0] instanceof RedirectRefused);
    await assert.rejects(() => remote.send(remote.url("/v1/list")));
    assert.equal(refused.length, 2, "a later refusal is told as it comes");
  } finally {
    await server.shutdown();
  }
});

Deno.test("Remote.file() asks for a range (open-ended too) with If-Range only beside a range; Remote.watch() refuses a malformed answer", async () => {
  const seen: Array<Record<string, string | null>> = [];
  let watchBody: unknown = { cursor: "c2", changed: ["a"], rescan: false };
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request) => {
      const url = new URL(request.url);
      seen.push({
        path: url.pathname,
        query: url.search,
        range: request.headers.get("range"),
        ifRange: request.headers.get("if-range"),
        encoding: request.headers.get("accept-encoding"),
      });
      if (url.pathname === "/v1/watch") return Response.json(watchBody);
      return new Response("x", { status: 416 });
    },
  );
  try {
    const remote = new Remote({
      baseUrl: `http://127.0.0.1:${server.addr.port}`,
    });
    const files = [
      await remote.file("/f", { range: { start: 5, end: 10 }, ifRange: '"e"' }),
      await remote.file("/f", { range: { start: 7 } }),
      await remote.file("/f", { ifRange: '"e"' }),
    ];
    for (const ex of files) {
      // 416 is returned, not thrown: the caller decides what it means.
      assert.equal(ex.response.status, 416);
      await ex.response.body?.cancel();
      ex.done();
    }
    assert.deepEqual(seen.map((s) => [s.range, s.ifRange, s.encoding]), [
      ["bytes=5-9", '"e"', "identity"],
      ["bytes=7-", null, "identity"],
      [null, null, "identity"],
    ]);
    const result = await remote.watch("/d", {
      cursor: "c1",
      timeout: 25,
      interval: 2,
    });
    assert.deepEqual(result, { cursor: "c2", changed: ["a"], rescan: false });
    assert.equal(seen[3].query, "?path=%2Fd&timeout=25&interval=2&cursor=c1");
    await remote.watch("/d", { cursor: null, timeout: 1, interval: 2 });
    assert.equal(seen[4].query, "?path=%2Fd&timeout=1&interval=2");
    watchBody = { cursor: 3, changed: [] };
    await assert.rejects(
      () => remote.watch("/d", { cursor: null, timeout: 1, interval: 2 }),
      /Malformed watch answer/,
    );
  } finally {
    await server.shutdown();
  }
});

/**
 * A raw HTTP/1.1 server that reads a request's head, then its body at
 * `bytesPerTick` every 100 ms (0: never), and answers `{}` once it has all.
 */
function slowReader(bytesPerTick: number) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const served = (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      (async () => {
        const buf = new Uint8Array(Math.max(64 * 1024, bytesPerTick));
        let head = "";
        let body = 0;
        let length = -1;
        while (length < 0) {
          const n = await conn.read(buf);
          if (n === null) return;
          head += new TextDecoder().decode(buf.subarray(0, n));
          const end = head.indexOf("\r\n\r\n");
          if (end < 0) continue;
          length = Number(/content-length: (\d+)/i.exec(head)![1]);
          body = head.length - end - 4;
        }
        while (body < length) {
          if (bytesPerTick === 0) return; // never reads again
          await new Promise((r) => setTimeout(r, 100));
          const n = await conn.read(buf.subarray(0, bytesPerTick));
          if (n === null) return;
          body += n;
        }
        await conn.write(new TextEncoder().encode(
          "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nx-hsync-api: 1\r\n\r\n{}",
        ));
      })().catch(() => {});
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close: async () => {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // already closed
        }
      }
      await served;
    },
  };
}

Deno.test("a byte body is a sign of life while the server takes it, however slowly, and one it stops taking times out", async () => {
  // 12 MiB: more than the sockets' buffers hold, so the sender waits on the reader.
  const body = new Uint8Array(12 * 1024 * 1024);
  const slow = slowReader(0);
  try {
    const remote = new Remote({
      baseUrl: `http://127.0.0.1:${slow.port}`,
      idleTimeoutMs: 400,
    });
    let sent = 0;
    const started = performance.now();
    await assert.rejects(
      () =>
        remote.send(remote.url("/v1/upload"), {
          method: "PUT",
          body,
          onBodySent: (n) => sent += n,
        }),
      TimeoutError,
    );
    assert.ok(performance.now() - started < 5000);
    assert.ok(sent < body.length, `${sent}`);
    remote.close();
  } finally {
    await slow.close();
  }

  // 4 MiB per 100 ms: 64 MiB take 1.6 s, more than the idle timeout, yet
  // every piece the socket takes keeps the request alive (what the sockets
  // hold when the last is written drains well within it).
  const steady = slowReader(4 * 1024 * 1024);
  try {
    const remote = new Remote({
      baseUrl: `http://127.0.0.1:${steady.port}`,
      idleTimeoutMs: 1500,
    });
    let sent = 0;
    const big = new Uint8Array(64 * 1024 * 1024);
    const started = performance.now();
    const ex = await remote.send(remote.url("/v1/upload"), {
      method: "PUT",
      body: big,
      onBodySent: (n) => sent += n,
    });
    assert.deepEqual(await ex.response.json(), {});
    ex.done();
    assert.ok(performance.now() - started > 1500);
    assert.equal(sent, big.length);
    remote.close();
  } finally {
    await steady.close();
  }
});

Deno.test("a 503 busy from one of hsyncd's limits is waited for (Retry-After at a time) and asked again, up to the idle timeout; another 503 is an error at once", async () => {
  let answers: Array<"busy" | "stopping" | "ok"> = [];
  let asked = 0;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => {
      asked++;
      const next = answers.shift() ?? "busy";
      if (next === "ok") {
        return Response.json(
          { type: "dir", size: 0, mtime: 0, mode: 0o755, etag: '"d"' },
          { headers: { "x-hsync-api": "1" } },
        );
      }
      return Response.json(
        { error: "busy", message: "Cannot serve now" },
        {
          status: 503,
          headers: {
            "x-hsync-api": "1",
            "retry-after": "0.1",
            ...(next === "busy" ? { "x-hsync-limit": "peerRequests" } : {}),
          },
        },
      );
    },
  );
  try {
    const remote = new Remote({
      baseUrl: `http://127.0.0.1:${server.addr.port}`,
      idleTimeoutMs: 1000,
    });
    answers = ["busy", "busy", "ok"];
    const st = await remote.stat("/x");
    assert.equal(st.type, "dir");
    assert.equal(asked, 3);

    // Busy for longer than the idle timeout: the 503 is the error.
    asked = 0;
    answers = [];
    const started = performance.now();
    await assert.rejects(() => remote.stat("/x"), (e: unknown) => {
      assert.ok(e instanceof HttpError);
      assert.equal(e.status, 503);
      return true;
    });
    assert.ok(asked >= 3, `${asked}`);
    assert.ok(performance.now() - started < 3000);

    // A body sent again after a busy answer is counted once.
    asked = 0;
    answers = ["busy", "ok"];
    const body = new Uint8Array(1024 * 1024);
    let told = 0;
    const ex = await remote.send(remote.url("/v1/upload"), {
      method: "PUT",
      body,
      onBodySent: (n) => told += n,
    });
    await ex.response.body?.cancel();
    ex.done();
    assert.equal(asked, 2);
    assert.equal(told, body.length);

    // A 503 that no limit names (a server stopping): an error at once.
    asked = 0;
    answers = ["stopping", "ok"];
    await assert.rejects(() => remote.stat("/x"), HttpError);
    assert.equal(asked, 1);
  } finally {
    await server.shutdown();
  }
});
