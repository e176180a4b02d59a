/** End to end with the real programs: a signature is good for the one hsyncd it was made for (its own names, Server_name, its certificate), once; Authorized_keys writable by others is warned about. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadIdentity, signRequest } from "../lib/shared/auth.ts";
import {
  freePort,
  ROOT,
  runClient,
  type RunResult,
  serverArgv,
  snapshotTree,
  tempDir,
  waitFor,
} from "./_programs.ts";
import { haveOpenssl, makeTestPki } from "./_tls.ts";

/** A foreground hsyncd on `host:port`, stopped by `await using`. */
class Daemon implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  output = "";
  #done: Promise<number>;

  constructor(
    readonly host: string,
    readonly port: number,
    configFile: string,
    hsyncDir: string,
  ) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: [
        ...serverArgv(),
        "-host",
        host,
        "-p",
        String(port),
        "-c",
        configFile,
      ],
      cwd: ROOT,
      env: { HSYNC_DIR: hsyncDir, NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const drain = async (stream: ReadableStream<Uint8Array>) => {
      const dec = new TextDecoder();
      for await (const chunk of stream) {
        this.output += dec.decode(chunk, { stream: true });
      }
    };
    const drained = Promise.all([
      drain(this.child.stdout),
      drain(this.child.stderr),
    ]);
    this.#done = this.child.status.then(async (s) => {
      await drained;
      return s.code;
    });
  }

  /** Waits until the output matches `pattern` (fails if hsyncd exits first). */
  async said(pattern: RegExp): Promise<void> {
    let exited = false;
    this.#done.then(() => exited = true);
    await waitFor(`hsyncd to say ${pattern}`, () => {
      if (exited) throw new Error(`hsyncd exited: ${this.output}`);
      return pattern.test(this.output);
    }, 30_000);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    await this.#done;
  }
}

/** A plain TCP forwarder (a port forward, an SSH tunnel's local end), closed by `await using`. */
function forward(
  listen: { hostname: string; port: number },
  upstream: { hostname: string; port: number },
): AsyncDisposable {
  const listener = Deno.listen(listen);
  const open = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  const closeQuietly = (c: Deno.Conn) => {
    open.delete(c);
    try {
      c.close();
    } catch {
      // Already closed.
    }
  };
  const pump = async (from: Deno.Conn, to: Deno.Conn) => {
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await from.read(buf);
        if (n === null) break;
        let off = 0;
        while (off < n) off += await to.write(buf.subarray(off, n));
      }
    } catch {
      // A side went away.
    }
    closeQuietly(from);
    closeQuietly(to);
  };
  const accepting = (async () => {
    for await (const client of listener) {
      open.add(client);
      const task = (async () => {
        let server: Deno.Conn;
        try {
          server = await Deno.connect(upstream);
        } catch {
          closeQuietly(client);
          return;
        }
        open.add(server);
        await Promise.all([pump(client, server), pump(server, client)]);
      })();
      tasks.add(task);
      task.finally(() => tasks.delete(task));
    }
  })().catch(() => {});
  return {
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const c of [...open]) closeQuietly(c);
      await accepting;
      await Promise.allSettled([...tasks]);
    },
  };
}

/** One HTTP/1.1 GET over a fresh connection, with exactly the headers given (Host included). */
async function rawGet(
  port: number,
  target: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const head = [
    `GET ${target} HTTP/1.1`,
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    "Connection: close",
    "",
    "",
  ].join("\r\n");
  await conn.write(new TextEncoder().encode(head));
  const text = new TextDecoder().decode(
    await new Response(conn.readable).arrayBuffer(),
  );
  return {
    status: Number(text.split(" ")[1]),
    body: text.slice(text.indexOf("\r\n\r\n") + 4),
  };
}

interface Fixture {
  dir: string;
  data: string;
  /** HSYNC_DIR of the authorised client (its key made by hsync keygen). */
  clientDir: string;
  publicLine: string;
}

async function makeFixture(dir: string): Promise<Fixture> {
  const data = join(dir, "data");
  await Deno.mkdir(join(data, "sub"), { recursive: true });
  for (let i = 0; i < 5; i++) {
    await Deno.writeTextFile(join(data, "sub", `small${i}.txt`), `file ${i}\n`);
  }
  await Deno.writeFile(
    join(data, "big.bin"),
    new Uint8Array(300 * 1024).map((_, i) => i % 251),
  );
  const clientDir = join(dir, "client-state");
  const keygen = await runClient(["keygen"], { HSYNC_DIR: clientDir });
  assert.equal(keygen.code, 0, keygen.stderr);
  return { dir, data, clientDir, publicLine: keygen.stdout.trim() };
}

/** Writes an Authorized_keys file with `mode` and a server configuration using it; returns the configuration's path. */
async function serverConfig(
  f: Fixture,
  name: string,
  options: { mode?: number; lines?: string[] } = {},
): Promise<{ config: string; keys: string }> {
  const keys = join(f.dir, `${name}_authorized_keys`);
  await Deno.writeTextFile(keys, `${f.publicLine}\n`);
  await Deno.chmod(keys, options.mode ?? 0o600);
  const config = join(f.dir, `${name}.ini`);
  await writeConfig(config, f, keys, options.lines ?? []);
  return { config, keys };
}

async function writeConfig(
  file: string,
  f: Fixture,
  keys: string,
  lines: string[],
): Promise<void> {
  await Deno.writeTextFile(
    file,
    [
      "[hsyncd]",
      `Only_allowed_path = ${f.data}`,
      `Authorized_keys = ${keys}`,
      ...lines,
      "",
    ].join("\n"),
  );
}

async function pull(
  f: Fixture,
  port: number,
  out: string,
  extra: string[] = [],
): Promise<RunResult> {
  return await runClient([
    "-i",
    f.data,
    "-o",
    out,
    "-host",
    "127.0.0.1",
    "-p",
    String(port),
    "--quiet",
    ...extra,
  ], { HSYNC_DIR: f.clientDir });
}

async function assertPulled(f: Fixture, r: RunResult, out: string) {
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await snapshotTree(out), await snapshotTree(f.data));
}

function assertRefused(r: RunResult, port: number): void {
  assert.equal(r.code, 3, r.stderr);
  // The one refusal the server explains: the name the request was sent to.
  assert.match(
    r.stderr,
    new RegExp(
      `^hsync: 127\\.0\\.0\\.1:${port} refused key SHA256:\\S+ \\(".*id_ed25519"\\): Host "127\\.0\\.0\\.1:${port}" is not one of this server's names \\(add it to Server_name on the server, or connect by a name it has\\)\n$`,
    ),
  );
}

Deno.test("a request signed for one hsyncd is refused by another trusting the same key, and accepted once by its own", async (t) => {
  await using tmp = await tempDir("hsync-bind-");
  const f = await makeFixture(tmp.path);
  const a = await serverConfig(f, "a");
  // B's copy of the keys is group-writable: it warns at start.
  const b = await serverConfig(f, "b", { mode: 0o664 });
  await using serverA = new Daemon(
    "127.0.0.1",
    freePort(),
    a.config,
    join(f.dir, "state-a"),
  );
  await using serverB = new Daemon(
    "127.0.0.1",
    freePort(),
    b.config,
    join(f.dir, "state-b"),
  );
  await Promise.all([
    serverA.said(/listening on/),
    serverB.said(/listening on/),
  ]);
  const identity = await loadIdentity(
    await Deno.readTextFile(join(f.clientDir, "id_ed25519")),
    "id_ed25519",
  );
  const target = `/v1/stat?path=${encodeURIComponent(join(f.data, "big.bin"))}`;
  const hostA = `127.0.0.1:${serverA.port}`;
  const hostB = `127.0.0.1:${serverB.port}`;
  // What a malicious server A, or a sniffer on A's plain HTTP, gets hold of.
  const captured = await signRequest(
    identity,
    "GET",
    new URL(`http://${hostA}${target}`),
  );

  await t.step("B refuses it, sent on as it was or with B's Host", async () => {
    for (const host of [hostA, hostB]) {
      const r = await rawGet(serverB.port, target, {
        host,
        authorization: captured,
      });
      assert.equal(r.status, 401, `Host: ${host}`);
      // A name B does not have is the one reason told (it says nothing of keys).
      assert.equal(
        r.body,
        host === hostA
          ? JSON.stringify({
            error: "unknown_server_name",
            message:
              `Host "${hostA}" is not one of this server's names (add it to Server_name on the server, or connect by a name it has)`,
          })
          : '{"error":"unauthorized","message":"Authentication required"}',
      );
    }
    // The log says which check failed; the client was told nothing more.
    await serverB.said(
      new RegExp(
        `Refused GET /v1/stat from 127\\.0\\.0\\.1 \\(401\\): Host "${hostA}" is not one of this server's names`,
      ),
    );
    await serverB.said(/\(401\): bad signature/);
  });

  await t.step("A accepts it once; a copy gets 401", async () => {
    const first = await rawGet(serverA.port, target, {
      host: hostA,
      authorization: captured,
    });
    assert.equal(first.status, 200, first.body);
    assert.equal(JSON.parse(first.body).size, 300 * 1024);
    const again = await rawGet(serverA.port, target, {
      host: hostA,
      authorization: captured,
    });
    assert.equal(again.status, 401);
    await serverA.said(/\(401\): replayed nonce \(already used\)/);
  });

  await t.step(
    "a Host that is not host[:port] gets 401, even signed for the route it smuggles",
    async () => {
      // Deno joins Host and the request line into request.url: this Host
      // turns "GET /v1/health" into /v1/stat of big.bin.
      const header = await signRequest(
        identity,
        "GET",
        new URL(`http://${hostA}${target}`),
      );
      const r = await rawGet(serverA.port, "/v1/health", {
        host: `${hostA}${target}#`,
        authorization: header,
      });
      assert.equal(r.status, 401, r.body);
      await serverA.said(/\(401\): Host ".*" is not host\[:port\]/);
    },
  );

  await t.step(
    "Authorized_keys writable by group or others is warned about at start and on reload",
    async () => {
      await serverB.said(
        new RegExp(
          `Authorized_keys "${b.keys}" is writable by group or others \\(mode 0664\\)`,
        ),
      );
      assert.doesNotMatch(serverA.output, /writable by group or others/);
      await Deno.chmod(a.keys, 0o666);
      serverA.child.kill("SIGHUP");
      await serverA.said(/Reloaded the configuration on SIGHUP/);
      await serverA.said(
        new RegExp(
          `Authorized_keys "${a.keys}" is writable by group or others \\(mode 0666\\)`,
        ),
      );
    },
  );
});

Deno.test("a pull through a port forward is refused until Server_name lists the forward's host:port (reloaded on SIGHUP); direct pulls keep working", async () => {
  await using tmp = await tempDir("hsync-fwd-");
  const f = await makeFixture(tmp.path);
  const a = await serverConfig(f, "a");
  await using server = new Daemon(
    "127.0.0.1",
    freePort(),
    a.config,
    join(f.dir, "state"),
  );
  await server.said(/listening on/);
  const fport = freePort();
  await using _forward = forward(
    { hostname: "127.0.0.1", port: fport },
    { hostname: "127.0.0.1", port: server.port },
  );

  await assertPulled(
    f,
    await pull(f, server.port, join(f.dir, "direct")),
    join(f.dir, "direct"),
  );
  assertRefused(await pull(f, fport, join(f.dir, "refused")), fport);
  await server.said(
    new RegExp(
      `Host "127\\.0\\.0\\.1:${fport}" is not one of this server's names`,
    ),
  );

  await writeConfig(a.config, f, a.keys, [`Server_name = 127.0.0.1:${fport}`]);
  server.child.kill("SIGHUP");
  await server.said(/Reloaded the configuration on SIGHUP/);
  await assertPulled(
    f,
    await pull(f, fport, join(f.dir, "forwarded")),
    join(f.dir, "forwarded"),
  );
  await assertPulled(
    f,
    await pull(f, server.port, join(f.dir, "direct-again")),
    join(f.dir, "direct-again"),
  );
});

Deno.test({
  name:
    "over HTTPS the certificate's names are the server's: a pull to 127.0.0.1 reaching an hsyncd on 127.0.0.2 works on its port, and is refused on another",
  ignore: !await haveOpenssl(),
  async fn() {
    await using tmp = await tempDir("hsync-certnames-");
    const f = await makeFixture(tmp.path);
    await Deno.mkdir(join(f.dir, "pki"));
    // A certificate for localhost and 127.0.0.1 only.
    const pki = await makeTestPki(join(f.dir, "pki"));
    const a = await serverConfig(f, "a", {
      lines: [`Cert_file = ${pki.certFile}`, `Key_file = ${pki.keyFile}`],
    });
    const port = freePort();
    await using server = new Daemon(
      "127.0.0.2",
      port,
      a.config,
      join(f.dir, "state"),
    );
    await server.said(/listening on https:\/\/127\.0\.0\.2:/);
    await server.said(/Signatures are accepted for .*https:\/\/127\.0\.0\.1:/);
    // The same port on 127.0.0.1 leads to the server: only the certificate names 127.0.0.1.
    await using _same = forward(
      { hostname: "127.0.0.1", port },
      { hostname: "127.0.0.2", port },
    );
    const other = freePort();
    await using _other = forward(
      { hostname: "127.0.0.1", port: other },
      { hostname: "127.0.0.2", port },
    );
    const client = join(f.dir, "client.ini");
    await Deno.writeTextFile(
      client,
      `[hscp]\nTls = yes\nCA_file = ${pki.caFile}\n`,
    );
    const tls = ["-c", client];
    await assertPulled(
      f,
      await pull(f, port, join(f.dir, "out"), tls),
      join(f.dir, "out"),
    );
    assertRefused(await pull(f, other, join(f.dir, "refused"), tls), other);
  },
});
