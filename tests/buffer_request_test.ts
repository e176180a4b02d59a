/** Tests of lib/client/buffer_request.ts: bodies in memory sent through node's client over kept-alive connections. */
import assert from "node:assert/strict";
import { BufferRequests } from "../lib/client/buffer_request.ts";
import { indexOfBlankLine } from "./_http_head.ts";

/** A server whose `/hang` never answers (until it is shut down). */
function hangingServer() {
  let release!: () => void;
  const released = new Promise<void>((r) => release = r);
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request) => {
      await request.arrayBuffer();
      if (new URL(request.url).pathname === "/hang") await released;
      return new Response("ok");
    },
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    async [Symbol.asyncDispose]() {
      release();
      await server.shutdown();
    },
  };
}

Deno.test("a request aborted on a kept-alive connection rejects at once with the signal's reason (node's client tells nothing there)", async () => {
  await using server = hangingServer();
  const requests = new BufferRequests(server.url);
  try {
    // The connection is opened, answered and kept for the next request.
    const first = await requests.send(
      new Request(`${server.url}/warm`),
      new Uint8Array(0),
    );
    assert.equal(await first.text(), "ok");
    const controller = new AbortController();
    const hanging = requests.send(
      new Request(`${server.url}/hang`, {
        method: "POST",
        signal: controller.signal,
      }),
      new Uint8Array([1, 2, 3]),
    );
    const reason = new Error("stopped");
    setTimeout(() => controller.abort(reason), 100);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<string>((r) => {
      timer = setTimeout(() => r("still waiting after 3 s"), 3000);
    });
    const outcome = await Promise.race([
      hanging.then(() => "answered", (error) => error),
      timeout,
    ]).finally(() => clearTimeout(timer));
    assert.equal(outcome, reason);
  } finally {
    requests.close();
  }
});

/**
 * A plain HTTP/1.1 server on a raw listener, so that the test sees each
 * connection as it is accepted: every request (its body read by its
 * content-length) is answered `ok` on the connection it came on.
 */
function countingServer() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted: number[] = [];
  /** The connection (its number, from 1) of each request, in order. */
  const requests: Array<{ connection: number; path: string }> = [];
  const conns: Deno.Conn[] = [];
  const serveOne = async (conn: Deno.Conn, n: number) => {
    const buffer = new Uint8Array(64 * 1024);
    let held: Uint8Array = new Uint8Array(0);
    const decoder = new TextDecoder();
    try {
      while (true) {
        const end = indexOfBlankLine(held);
        if (end < 0) {
          const got = await conn.read(buffer);
          if (got === null) return;
          held = concat(held, buffer.subarray(0, got));
          continue;
        }
        const head = decoder.decode(held.subarray(0, end));
        const length = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        while (held.length < end + 4 + length) {
          const got = await conn.read(buffer);
          if (got === null) return;
          held = concat(held, buffer.subarray(0, got));
        }
        held = held.slice(end + 4 + length);
        requests.push({ connection: n, path: head.split(" ")[1] });
        await conn.write(
          new TextEncoder().encode(
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok",
          ),
        );
      }
    } catch {
      // Closed by the client or at the end.
    }
  };
  const accepting = (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      accepted.push(performance.now());
      serveOne(conn, accepted.length);
    }
  })().catch(() => {});
  const port = (listener.addr as Deno.NetAddr).port;
  const closeConnections = () => {
    for (const c of conns.splice(0)) {
      try {
        c.close();
      } catch {
        // Closed already.
      }
    }
  };
  return {
    url: `http://127.0.0.1:${port}`,
    accepted,
    requests,
    /** Closes every connection accepted so far (the listener stays). */
    closeConnections,
    async [Symbol.asyncDispose]() {
      listener.close();
      closeConnections();
      await accepting;
    },
  };
}

/** Waits (at most a second) until `server` has accepted `count` connections. */
async function accepted(server: { accepted: number[] }, count: number) {
  for (let i = 0; i < 200 && server.accepted.length < count; i++) {
    await new Promise((done) => setTimeout(done, 5));
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

Deno.test("connectAhead() opens connections with no request on them, and the next requests go on those, opening none", async () => {
  await using server = countingServer();
  const requests = new BufferRequests(server.url);
  try {
    requests.connectAhead(3);
    await accepted(server, 3);
    assert.equal(server.accepted.length, 3, "connections opened ahead");
    assert.equal(server.requests.length, 0, "no request on them");
    // Three bodies at once: each takes a connection opened ahead.
    const answers = await Promise.all([1, 2, 3].map((i) =>
      requests.send(
        new Request(`${server.url}/b${i}`, { method: "POST" }),
        new Uint8Array(1000 * i),
      )
    ));
    for (const answer of answers) assert.equal(await answer.text(), "ok");
    assert.equal(server.accepted.length, 3, "no connection opened for them");
    assert.deepEqual(
      server.requests.map((r) => r.connection).sort(),
      [1, 2, 3],
    );
    // A fourth at once beside three more: kept-alive ones, then one new.
    await Promise.all([4, 5, 6, 7].map(async (i) =>
      await (await requests.send(
        new Request(`${server.url}/b${i}`, { method: "POST" }),
        new Uint8Array(10),
      )).text()
    ));
    assert.equal(server.accepted.length, 4);
  } finally {
    requests.close();
  }
});

Deno.test("a connection opened ahead that the server closed meanwhile is not used: the request opens another", async () => {
  await using server = countingServer();
  const requests = new BufferRequests(server.url);
  try {
    requests.connectAhead(1);
    await accepted(server, 1);
    server.closeConnections();
    await new Promise((done) => setTimeout(done, 50));
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort("no answer in 3 s"), 3000);
    const answer = await requests.send(
      new Request(`${server.url}/x`, {
        method: "POST",
        signal: controller.signal,
      }),
      new Uint8Array(1),
    ).then((r) => r.text(), (error) => error).finally(() =>
      clearTimeout(timer)
    );
    assert.equal(answer, "ok");
    assert.equal(server.accepted.length, 2);
    assert.deepEqual(server.requests.map((r) => r.connection), [2]);
  } finally {
    requests.close();
  }
});
