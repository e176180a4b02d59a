/** End to end with the real hsync: an address that holds something other than hsyncd is told as such, in one line. */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  runClient,
  type RunResult,
  startServer,
  tempDir,
} from "./_programs.ts";
import { haveOpenssl, makeTestPki } from "./_tls.ts";

const openssl = await haveOpenssl();

function pull(port: number, out: string, extra: string[] = []) {
  return runClient(
    [
      "-host",
      "127.0.0.1",
      "-p",
      String(port),
      "-i",
      "/data",
      "-o",
      out,
      ...extra,
    ],
    // No key: nothing of this machine's own setup leaks into the run.
    { HSYNC_DIR: join(out, "..", "no-state") },
  );
}

/** One line on stderr matching `pattern`, an exit code saying the server was not usable, nothing written. */
async function toldInOneLine(r: RunResult, pattern: RegExp, out: string) {
  // 3 until issue 21's split of "refused" (3) and "not reached" (4) lands.
  assert.ok(r.code === 3 || r.code === 4, `exit ${r.code}: ${r.stderr}`);
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], pattern);
  await assert.rejects(Deno.lstat(out), Deno.errors.NotFound);
}

/** A TCP server that greets every connection with an SSH banner and hangs up: no HTTP, no TLS. */
function garbageServer(): { port: number } & Disposable {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of listener) {
      conn.write(new TextEncoder().encode("SSH-2.0-OpenSSH_9.6\r\n"))
        .catch(() => {})
        .finally(() => setTimeout(() => conn.close(), 100));
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    [Symbol.dispose]: () => listener.close(),
  };
}

function httpServer(
  answer: () => Response,
  tls?: { cert: string; key: string },
): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {}, ...tls },
    answer,
  );
}

Deno.test("hsync says an HTTP server that is not hsyncd is not hsyncd, not that the path is missing", async (t) => {
  await using tmp = await tempDir("hsync-wrong-");
  await t.step("404 to everything", async () => {
    await using server = httpServer(() =>
      new Response("Not Found", { status: 404 })
    );
    const out = join(tmp.path, "out404");
    await toldInOneLine(
      await pull(server.addr.port, out),
      /^hsync: 127\.0\.0\.1:\d+ is an HTTP server but not hsyncd \(it answered "404 Not Found" to \/v1\/stat\)$/,
      out,
    );
  });
  await t.step("a web page to everything", async () => {
    await using server = httpServer(() =>
      new Response("<html><body>Welcome to nginx!</body></html>", {
        headers: { "content-type": "text/html", server: "nginx/1.24.0" },
      })
    );
    const out = join(tmp.path, "out200");
    await toldInOneLine(
      await pull(server.addr.port, out),
      /^hsync: 127\.0\.0\.1:\d+ is an HTTP server but not hsyncd \(it answered "200 OK" as "nginx\/1\.24\.0" to \/v1\/stat\)$/,
      out,
    );
  });
  await t.step(
    "hsyncd's own 404 still says the path does not exist",
    async () => {
      await using server = await startServer({
        config: `[hsyncd]\nOnly_allowed_path = ${tmp.path}\n`,
        dir: tmp.path,
      });
      const out = join(tmp.path, "out-hsyncd");
      const r = await runClient(
        [
          "-host",
          "127.0.0.1",
          "-p",
          String(server.port),
          "-i",
          join(tmp.path, "nothing"),
          "-o",
          out,
        ],
        { HSYNC_DIR: join(tmp.path, "no-state") },
      );
      assert.equal(r.code, 3, r.stderr);
      assert.match(
        r.stderr,
        /^hsync: Remote path ".*nothing" does not exist on 127\.0\.0\.1:\d+$/m,
      );
    },
  );
});

Deno.test("hsync suggests --tls only for a port that speaks TLS, and the reverse", async (t) => {
  await using tmp = await tempDir("hsync-wrong-");
  using garbage = garbageServer();

  await t.step(
    "a port that speaks no HTTP is not told to use --tls",
    async () => {
      const out = join(tmp.path, "out-garbage");
      await toldInOneLine(
        await pull(garbage.port, out),
        /^hsync: 127\.0\.0\.1:\d+ does not speak HTTP \(not an hsyncd\?\)$/,
        out,
      );
    },
  );

  await t.step(
    "--tls to a port that speaks neither says it does not speak HTTPS",
    async () => {
      const out = join(tmp.path, "out-garbage-tls");
      await toldInOneLine(
        await pull(garbage.port, out, ["--tls"]),
        /^hsync: 127\.0\.0\.1:\d+ does not speak HTTPS \(not an hsyncd\?\)$/,
        out,
      );
    },
  );

  await t.step("--tls to a plain HTTP hsyncd says to drop it", async () => {
    await using server = await startServer({
      config: `[hsyncd]\nOnly_allowed_path = ${tmp.path}\n`,
      dir: tmp.path,
    });
    const out = join(tmp.path, "out-plain-tls");
    await toldInOneLine(
      await pull(server.port, out, ["--tls"]),
      /^hsync: 127\.0\.0\.1:\d+ speaks plain HTTP, not HTTPS: drop --tls or set Tls = no$/,
      out,
    );
  });

  await t.step({
    name: "plain HTTP to an HTTPS port says to add --tls",
    ignore: !openssl,
    fn: async () => {
      const pkiDir = join(tmp.path, "pki");
      await Deno.mkdir(pkiDir);
      const pki = await makeTestPki(pkiDir);
      await using server = httpServer(() => new Response("{}"), {
        cert: await Deno.readTextFile(pki.certFile),
        key: await Deno.readTextFile(pki.keyFile),
      });
      const out = join(tmp.path, "out-https");
      await toldInOneLine(
        await pull(server.addr.port, out),
        /^hsync: 127\.0\.0\.1:\d+ speaks HTTPS: add --tls or Tls = yes$/,
        out,
      );
    },
  });
});
