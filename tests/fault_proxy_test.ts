/** Tests of the fault-injecting proxy itself, so the resume tests that rely on it can be trusted. */
import assert from "node:assert/strict";
import { startFaultProxy } from "./_fault_proxy.ts";

function serveBytes(size: number) {
  const body = new Uint8Array(size).fill(42);
  return Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response(body),
  );
}

Deno.test("the fault proxy forwards untouched, cuts after N bytes, and stalls", async (t) => {
  const server = serveBytes(1 << 20);
  try {
    await t.step("none: the whole body arrives", async () => {
      await using proxy = startFaultProxy(
        server.addr.port,
        () => ({ kind: "none" }),
      );
      const r = await fetch(proxy.url, { headers: { connection: "close" } });
      assert.equal((await r.arrayBuffer()).byteLength, 1 << 20);
    });
    await t.step("cut: the body breaks before its Content-Length", async () => {
      await using proxy = startFaultProxy(
        server.addr.port,
        () => ({ kind: "cut", afterBytes: 100_000 }),
      );
      const r = await fetch(proxy.url, { headers: { connection: "close" } });
      await assert.rejects(() => r.arrayBuffer());
    });
    await t.step(
      "stall: no byte after N until the client gives up",
      async () => {
        await using proxy = startFaultProxy(
          server.addr.port,
          () => ({ kind: "stall", afterBytes: 50_000 }),
        );
        const r = await fetch(proxy.url, {
          signal: AbortSignal.timeout(300),
          headers: { connection: "close" },
        });
        let got = 0;
        await assert.rejects(async () => {
          for await (const chunk of r.body!) got += chunk.length;
        });
        assert.ok(got <= 50_000, `got ${got}`);
      },
    );
    await t.step("only the chosen connections are broken", async () => {
      await using proxy = startFaultProxy(
        server.addr.port,
        (n) => n === 0 ? { kind: "cut", afterBytes: 10 } : { kind: "none" },
      );
      await assert.rejects(async () =>
        await (await fetch(proxy.url, { headers: { connection: "close" } }))
          .arrayBuffer()
      );
      const r = await fetch(proxy.url, { headers: { connection: "close" } });
      assert.equal((await r.arrayBuffer()).byteLength, 1 << 20);
      assert.equal(proxy.connections, 2);
    });
  } finally {
    await server.shutdown();
  }
});
