/** Tests of lib/client/buffer_request.ts: bodies in memory sent through node's client over kept-alive connections. */
import assert from "node:assert/strict";
import { BufferRequests } from "../lib/client/buffer_request.ts";

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
