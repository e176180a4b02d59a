/** End-to-end tests of the real hsyncd's bounded work: a flood of refused requests does not starve an allowed peer. */
import assert from "node:assert/strict";
import net from "node:net";
import { join } from "node:path";
import { freePort, ROOT, serverArgv, tempDir } from "./_programs.ts";

/** `GET path` over a new connection from `local`; resolves with the status. */
function getFrom(local: string, port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({
      host: "127.0.0.1",
      port,
      localAddress: local,
    });
    let text = "";
    socket.setEncoding("latin1");
    socket.setTimeout(
      5000,
      () => socket.destroy(new Error("No answer in 5 s")),
    );
    socket.on("connect", () =>
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
      ));
    socket.on("data", (chunk) => text += chunk);
    socket.on("error", reject);
    socket.on("close", () => {
      const status = /^HTTP\/1\.1 (\d{3}) /.exec(text);
      if (status === null) reject(new Error(`No status line: ${text}`));
      else resolve(Number(status[1]));
    });
  });
}

/** Opens a connection from 127.0.0.1 that sends the head of a 1 MiB upload and only a little of its body. */
async function stalledUpload(port: number): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(
    new TextEncoder().encode(
      "POST /v1/bundle HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
        `Content-Length: ${1024 * 1024}\r\n\r\n{"root": "/`,
    ),
  );
  return conn;
}

/** Everything a connection sends until it closes or `ms` pass. */
async function answer(conn: Deno.Conn, ms: number): Promise<string> {
  let text = "";
  const decoder = new TextDecoder();
  const buffer = new Uint8Array(4096);
  const timer = setTimeout(() => conn.close(), ms);
  try {
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += decoder.decode(buffer.subarray(0, n));
      if (text.includes("}")) break;
    }
  } catch {
    // Closed by the timer.
  } finally {
    clearTimeout(timer);
  }
  return text;
}

Deno.test("hsyncd keeps answering an allowed peer (127.0.0.2) while 400 refused uploads a second arrive from 127.0.0.1", async () => {
  await using dir = await tempDir("hsyncd_flood_");
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  await Deno.mkdir(join(dir.path, "hsync"));
  await Deno.writeTextFile(
    join(dir.path, "test.ini"),
    `[hsyncd]\nOnly_allowed_path = ${data}\nAllowed_host = 127.0.0.2\n`,
  );
  const port = freePort();
  const server = new Deno.Command(Deno.execPath(), {
    args: [
      ...serverArgv(),
      "-host",
      "127.0.0.1",
      "-p",
      String(port),
      "-c",
      join(dir.path, "test.ini"),
      "-l",
      join(dir.path, "hsyncd.log"),
    ],
    cwd: ROOT,
    env: { HSYNC_DIR: join(dir.path, "hsync"), NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const conns: Deno.TcpConn[] = [];
  try {
    let out = "";
    const decoder = new TextDecoder();
    for await (const chunk of server.stdout) {
      out += decoder.decode(chunk);
      if (out.includes(" listening on ")) break;
    }
    assert.match(out, / listening on /);
    void server.stdout.cancel().catch(() => {});

    // A refused upload is answered at once, and its body is not waited for.
    const probe = await stalledUpload(port);
    conns.push(probe);
    const refused = await answer(probe, 3000);
    assert.match(refused, /^HTTP\/1\.1 403 /);
    assert.match(refused, /\r\nconnection: close\r\n/i);
    assert.match(refused, /"host_not_allowed"/);

    // 400 a second for 3 s; each one holds its connection (and would hold
    // an answer slot while its body was drained) until the end.
    const statuses: number[] = [];
    const allowed = (async () => {
      const end = Date.now() + 3000;
      while (Date.now() < end) {
        statuses.push(await getFrom("127.0.0.2", port, "/v1/health"));
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const started = Date.now();
    for (let tick = 0; tick < 30; tick++) {
      const opened = await Promise.all(
        Array.from({ length: 40 }, () => stalledUpload(port)),
      );
      conns.push(...opened);
      const next = started + (tick + 1) * 100;
      await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())));
    }
    await allowed;
    assert.ok(statuses.length >= 20, `${statuses.length} requests`);
    assert.deepEqual(
      statuses.filter((s) => s !== 200),
      [],
      `of ${statuses.length} requests from the allowed peer`,
    );
  } finally {
    for (const conn of conns) {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
    try {
      server.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    const timer = setTimeout(() => server.kill("SIGKILL"), 10_000);
    await server.status;
    clearTimeout(timer);
  }
});
