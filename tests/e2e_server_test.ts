/** End-to-end tests of the real hsyncd (`deno run -P=hsyncd main_server.ts`): lifecycle, pidfile, logs, errors, shutdown. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { pidfilePath, systemProbe } from "../lib/server/daemon.ts";
import { indexOfBlankLine } from "./_http_head.ts";
import { freePort, ROOT, serverArgv } from "./_programs.ts";

const HOST = "127.0.0.1";

/** A scratch HSYNC_DIR, data directory and config file, removed afterwards. */
interface Fixture {
  dir: string;
  hsyncDir: string;
  data: string;
  config: string;
  pidfile: string;
  port: number;
  /** Pids of servers to kill if a test fails half-way. */
  pids: Set<number>;
}

async function withFixture(
  fn: (f: Fixture) => Promise<void>,
  configExtra = "",
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "hsyncd_e2e_" });
  const data = join(dir, "data");
  await Deno.mkdir(data);
  await Deno.writeTextFile(join(data, "a.txt"), "hello\n");
  const config = join(dir, "test.ini");
  await Deno.writeTextFile(
    config,
    `[hsyncd]\nOnly_allowed_path = ${data}\n${configExtra}`,
  );
  const port = freePort();
  const f: Fixture = {
    dir,
    hsyncDir: join(dir, "hsync"),
    data,
    config,
    // Not the default port: the pidfile names it.
    pidfile: pidfilePath(join(dir, "hsync"), port),
    port,
    pids: new Set(),
  };
  try {
    await fn(f);
  } finally {
    for (const pid of f.pids) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // Already gone, as it should be.
      }
    }
    await Deno.remove(dir, { recursive: true });
  }
}

function command(f: Fixture, args: string[]): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: [...serverArgv(), ...args],
    cwd: ROOT,
    env: { HSYNC_DIR: f.hsyncDir, NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** The usual flags: loopback, the fixture's port and config. */
function flags(f: Fixture): string[] {
  return ["-host", HOST, "-p", String(f.port), "-c", f.config];
}

/** Runs hsyncd to completion (start, stop, status, failing starts). */
async function run(
  f: Fixture,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await command(f, args).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  const result = {
    code: out.code,
    stdout: decode(out.stdout),
    stderr: decode(out.stderr),
  };
  for (const m of result.stdout.matchAll(/\(pid (\d+)\)/g)) {
    f.pids.add(Number(m[1]));
  }
  return result;
}

/** A foreground hsyncd whose output is collected while it runs. */
class Foreground {
  readonly child: Deno.ChildProcess;
  stdout = "";
  stderr = "";
  readonly #pumps: Promise<void>;

  constructor(f: Fixture, args: string[]) {
    this.child = command(f, args).spawn();
    f.pids.add(this.child.pid);
    this.#pumps = Promise.all([
      this.#pump(this.child.stdout, (s) => this.stdout += s),
      this.#pump(this.child.stderr, (s) => this.stderr += s),
    ]).then(() => {});
  }

  async #pump(
    stream: ReadableStream<Uint8Array>,
    add: (text: string) => void,
  ): Promise<void> {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      add(text);
    }
  }

  /** Waits until stdout says the server listens. */
  async listening(timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.stdout.includes(" listening on ")) {
      if (Date.now() > deadline) {
        throw new Error(`hsyncd did not start: ${this.stderr}`);
      }
      await delay(20);
    }
  }

  /** Waits for the exit code, with all output read. */
  async exit(): Promise<number> {
    const status = await this.child.status;
    await this.#pumps;
    return status.code;
  }

  /** Kills the server if it still runs (clean-up after a failed test) and reaps it. */
  async kill(): Promise<void> {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await this.exit();
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function get(port: number, path: string): Promise<Response> {
  return await fetch(`http://${HOST}:${port}${path}`);
}

async function health(port: number): Promise<Record<string, unknown>> {
  const response = await get(port, "/v1/health");
  assert.equal(response.status, 200);
  return await response.json();
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

async function readPid(path: string): Promise<number> {
  // A plain pid (kill -HUP $(cat hsyncd.pid)).
  const text = await Deno.readTextFile(path);
  assert.match(text, /^\d+\n$/);
  return Number(text);
}

/** True while the process runs (an exited process not yet reaped does not count). */
async function alive(pid: number): Promise<boolean> {
  return systemProbe.exists(pid) &&
    (await systemProbe.facts(pid))?.state !== "Z";
}

async function refused(port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname: HOST, port })).close();
    return false;
  } catch (error) {
    return error instanceof Deno.errors.ConnectionRefused;
  }
}

Deno.test("hsyncd in the foreground serves, writes its pidfile, and exits 0 on SIGTERM", async () => {
  await withFixture(async (f) => {
    const server = new Foreground(f, flags(f));
    try {
      await server.listening();
      assert.match(
        server.stdout,
        new RegExp(
          `^hsyncd 0\\.1\\.0 listening on http://127\\.0\\.0\\.1:${f.port}/ \\(pid ${server.child.pid}\\)\\n`,
        ),
      );
      assert.equal((await health(f.port)).name, "hsyncd");
      assert.equal(await readPid(f.pidfile), server.child.pid);
      assert.match(
        server.stderr,
        new RegExp(
          `hsyncd: warning: Unknown key "Bogus_key" in \\[hsyncd\\] of "${f.config}" is ignored`,
        ),
      );
      // Without -l the log goes to stderr, one access line per request.
      await delay(50);
      assert.match(
        server.stderr,
        / 127\.0\.0\.1 GET \/v1\/health 200 \S+ \d+ms\n/,
      );

      const status = await run(f, ["status"]);
      assert.equal(status.code, 0);
      assert.match(
        status.stdout,
        new RegExp(
          `^hsyncd is running \\(pid ${server.child.pid}\\) on http://127\\.0\\.0\\.1:${f.port}/, up \\d+s\\n$`,
        ),
      );

      server.child.kill("SIGTERM");
      assert.equal(await server.exit(), 0);
      assert.match(server.stdout, /hsyncd stopped \(pid \d+\)\n$/);
      assert.equal(await exists(f.pidfile), false, "pidfile removed");
      assert.equal(await refused(f.port), true);
    } finally {
      await server.kill();
    }
  }, "Bogus_key = 1\n");
});

Deno.test("hsyncd start, status, start again, restart, stop, status", async () => {
  await withFixture(async (f) => {
    const log = join(f.hsyncDir, "hsyncd.log");

    const started = await run(f, ["start", ...flags(f)]);
    assert.equal(started.stderr, "");
    assert.equal(started.code, 0);
    const pid = await readPid(f.pidfile);
    assert.equal(
      started.stdout,
      `hsyncd started (pid ${pid}) on http://127.0.0.1:${f.port}/, log ${log}\n`,
    );
    assert.equal((await health(f.port)).name, "hsyncd");

    const status = await run(f, ["status"]);
    assert.equal(status.code, 0);
    assert.match(
      status.stdout,
      new RegExp(`^hsyncd is running \\(pid ${pid}\\)`),
    );

    const again = await run(f, ["-d", ...flags(f)]);
    assert.equal(again.code, 1);
    assert.equal(
      again.stderr,
      `hsyncd: Cannot start: hsyncd is already running (pid ${pid}) on http://127.0.0.1:${f.port}/; stop it with "hsyncd stop"\n`,
    );
    assert.equal(again.stdout, "");

    const restarted = await run(f, ["restart", ...flags(f)]);
    assert.equal(restarted.code, 0, restarted.stderr);
    const newPid = await readPid(f.pidfile);
    assert.notEqual(newPid, pid);
    assert.equal(await alive(pid), false);
    assert.equal(
      restarted.stdout,
      `hsyncd stopped (pid ${pid})\nhsyncd started (pid ${newPid}) on http://127.0.0.1:${f.port}/, log ${log}\n`,
    );
    const paths = [join(f.data, "a.txt"), join(f.data, "b c.txt")];
    await Deno.writeTextFile(paths[1], "spaces\n");
    for (const path of paths) {
      const response = await get(
        f.port,
        `/v1/file?path=${encodeURIComponent(path)}`,
      );
      assert.equal(response.status, 200);
      await response.body?.cancel();
    }

    const stopped = await run(f, ["stop"]);
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.equal(stopped.stdout, `hsyncd stopped (pid ${newPid})\n`);
    assert.equal(await alive(newPid), false);
    assert.equal(await exists(f.pidfile), false);

    const after = await run(f, ["status"]);
    assert.equal(after.code, 3);
    assert.equal(after.stdout, "hsyncd is not running\n");
    const stopAgain = await run(f, ["stop"]);
    assert.equal(stopAgain.code, 0);
    assert.equal(stopAgain.stdout, "hsyncd is not running\n");

    const text = await Deno.readTextFile(log);
    for (const path of paths) {
      const line = `GET /v1/file?path=${encodeURIComponent(path)} 200 `;
      assert.equal(text.split(line).length - 1, 1, `one access line: ${line}`);
    }
    assert.match(
      text,
      new RegExp(`INFO hsyncd stopped \\(pid ${newPid}\\)\\n$`),
    );
  });
});

Deno.test("hsyncd detects a stale pidfile and replaces it", async () => {
  await withFixture(async (f) => {
    const dead = new Deno.Command("true").spawn();
    await dead.status;
    await Deno.mkdir(f.hsyncDir, { recursive: true });
    const stale = {
      pid: dead.pid,
      host: HOST,
      port: f.port,
      scheme: "http",
      started: new Date().toISOString(),
      version: "0.1.0",
    };
    // 0644 whatever the umask: hsyncd trusts no pidfile others can write.
    await Deno.writeTextFile(f.pidfile, JSON.stringify(stale), { mode: 0o644 });

    const status = await run(f, ["status"]);
    assert.equal(status.code, 3);
    assert.equal(
      status.stdout,
      `hsyncd is not running (stale pidfile "${f.pidfile}": pid ${dead.pid} is not running)\n`,
    );

    const server = new Foreground(f, flags(f));
    try {
      await server.listening();
      assert.match(
        server.stderr,
        new RegExp(
          `WARN Replacing stale pidfile "${f.pidfile}": pid ${dead.pid} is not running\\n`,
        ),
      );
      assert.equal(await readPid(f.pidfile), server.child.pid);
      server.child.kill("SIGTERM");
      assert.equal(await server.exit(), 0);
    } finally {
      await server.kill();
    }

    await Deno.writeTextFile(f.pidfile, JSON.stringify(stale), { mode: 0o644 });
    const stop = await run(f, ["stop"]);
    assert.equal(stop.code, 0);
    assert.equal(
      stop.stdout,
      `hsyncd is not running (removed stale pidfile "${f.pidfile}": pid ${dead.pid} is not running)\n`,
    );
    assert.equal(await exists(f.pidfile), false);
  });
});

Deno.test("hsyncd rotates its log at Log_max_bytes, keeping Log_keep files", async () => {
  await withFixture(async (f) => {
    const log = join(f.dir, "logs", "access.log");
    const server = new Foreground(f, [...flags(f), "-l", log]);
    try {
      await server.listening();
      for (let i = 0; i < 120; i++) {
        const response = await get(f.port, `/v1/health?n=${i}`);
        await response.body?.cancel();
      }
      server.child.kill("SIGTERM");
      assert.equal(await server.exit(), 0);
    } finally {
      await server.kill();
    }
    // logtape checks the limit when it writes its buffer, and lines keep
    // arriving while it syncs, so a file can exceed the limit by one buffer:
    // what counts is that it rotated and kept exactly Log_keep old files.
    for (const file of [log, `${log}.1`, `${log}.2`]) {
      assert.ok((await Deno.stat(file)).size > 0, file);
    }
    const kept = await Promise.all(
      [`${log}.1`, `${log}.2`].map((p) => Deno.readTextFile(p)),
    );
    assert.ok(kept.every((text) => / GET \/v1\/health\?n=\d+ 200 /.test(text)));
    assert.equal(await exists(`${log}.3`), false);
    const newest = await Deno.readTextFile(log);
    assert.match(newest, /INFO hsyncd stopped/);
    // The last request is in the newest file, or just rotated into .1 when
    // the limit fell between it and the closing line; either way in order.
    assert.match(
      kept[0] + newest,
      / GET \/v1\/health\?n=119 200 [^\n]*\n(.*\n)*.*INFO hsyncd stopped/,
    );
  }, "Log_max_bytes = 2048\nLog_keep = 2\n");
});

Deno.test("hsyncd reloads its rules on SIGHUP, keeps the old ones when the new file is bad, and says what needs a restart", async () => {
  await withFixture(async (f) => {
    await Deno.mkdir(join(f.data, "private"));
    await Deno.writeTextFile(join(f.data, "private", "b.txt"), "private\n");
    const server = new Foreground(f, flags(f));
    const said = async (text: string) => {
      const deadline = Date.now() + 20_000;
      while (!(server.stdout + server.stderr).includes(text)) {
        if (Date.now() > deadline) {
          throw new Error(`no "${text}": ${server.stdout}${server.stderr}`);
        }
        await delay(20);
      }
    };
    const status = async (path: string) => {
      const r = await get(f.port, `/v1/stat?path=${encodeURIComponent(path)}`);
      await r.body?.cancel();
      return r.status;
    };
    try {
      await server.listening();
      assert.equal(await status(join(f.data, "private", "b.txt")), 200);

      await Deno.writeTextFile(
        f.config,
        `[hsyncd]\nOnly_allowed_path = ${f.data}\nForbidden_dir = ${
          join(f.data, "private")
        }\nLog_keep = 7\n`,
      );
      server.child.kill("SIGHUP");
      await said("Reloaded the configuration on SIGHUP");
      await said("(changes to Log_keep apply after a restart)");
      assert.equal(await status(join(f.data, "private", "b.txt")), 403);
      assert.equal(await status(join(f.data, "a.txt")), 200);

      await Deno.writeTextFile(
        f.config,
        `[hsyncd]\nOnly_allowed_path = ${join(f.dir, "no-such-dir")}\n`,
      );
      server.child.kill("SIGHUP");
      await said("Reload on SIGHUP failed, the previous configuration stays");
      assert.equal(await status(join(f.data, "private", "b.txt")), 403);
      assert.equal(await status(join(f.data, "a.txt")), 200);

      server.child.kill("SIGTERM");
      assert.equal(await server.exit(), 0);
    } finally {
      await server.kill();
    }
  });
});

Deno.test("hsyncd refuses a bad port in the config file with one line naming file, section, key and value", async () => {
  await withFixture(async (f) => {
    await Deno.writeTextFile(f.config, "[hsyncd]\nPort = 70000\n");
    const result = await run(f, ["-c", f.config]);
    assert.equal(result.code, 1);
    assert.equal(
      result.stderr,
      `hsyncd: Invalid value "70000" for "${f.config}" [hsyncd] Port: a port is a whole number from 1 to 65535\n`,
    );
    assert.equal(await exists(f.pidfile), false);
  });
});

Deno.test("hsyncd says in one line that the port is in use, in the foreground and detached", async () => {
  await withFixture(async (f) => {
    const listener = Deno.listen({ hostname: HOST, port: f.port });
    try {
      const line =
        `hsyncd: Cannot listen on 127.0.0.1:${f.port}: address already in use\n`;
      const foreground = await run(f, flags(f));
      assert.equal(foreground.code, 1);
      assert.equal(foreground.stderr, line);
      assert.equal(await exists(f.pidfile), false);

      const detached = await run(f, ["start", ...flags(f)]);
      assert.equal(detached.code, 1);
      assert.equal(detached.stderr, line);
      assert.equal(detached.stdout, "");
    } finally {
      listener.close();
    }
  });
});

Deno.test("hsyncd finishes an in-flight download after SIGTERM, refusing new connections", async () => {
  await withFixture(async (f) => {
    const size = 32 * 1024 * 1024;
    const path = join(f.data, "big.bin");
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i += 4096) bytes[i] = i % 251;
    await Deno.writeFile(path, bytes);

    const server = new Foreground(f, flags(f));
    try {
      await server.listening();
      const response = await get(
        f.port,
        `/v1/file?path=${encodeURIComponent(path)}`,
      );
      assert.equal(response.status, 200);
      const reader = response.body!.getReader();
      let received = 0;
      const first = await reader.read();
      received += first.value?.length ?? 0;

      server.child.kill("SIGTERM");
      const deadline = Date.now() + 5000;
      while (!await refused(f.port)) {
        assert.ok(Date.now() < deadline, "listener still open after SIGTERM");
        await delay(20);
      }
      while (true) {
        const { done, value } = await reader.read();
        if (done) break;
        received += value.length;
      }
      assert.equal(received, size);
      assert.equal(await server.exit(), 0);
      assert.equal(await exists(f.pidfile), false);
    } finally {
      await server.kill();
    }
  });
});

Deno.test("hsyncd sends a file that grows while it is sent, or a range in its middle, only up to its content-length, and the connection serves the next request", async () => {
  await withFixture(async (f) => {
    const size = 4 * 1024 * 1024;
    const path = join(f.data, "growing.log");
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i++) bytes[i] = (i * 31 + (i >> 9)) & 0xff;
    await Deno.writeFile(path, bytes);
    await Deno.writeTextFile(join(f.data, "next.txt"), "next");

    const server = new Foreground(f, flags(f));
    const conn = await (async () => {
      await server.listening();
      return await Deno.connect({ hostname: "127.0.0.1", port: f.port });
    })().catch(async (error) => {
      await server.kill();
      throw error;
    });
    const http = new RawHttp(conn);
    try {
      // The whole file (natively streamed) and a tail range of it.
      for (const range of [undefined, `bytes=${size - 100_000}-`]) {
        const head = await http.request(
          `/v1/file?path=${encodeURIComponent(path)}`,
          range === undefined ? {} : { range },
        );
        const start = range === undefined ? 0 : size - 100_000;
        assert.equal(head.status, range === undefined ? 200 : 206);
        assert.equal(head.headers.get("content-length"), String(size - start));
        // Take a little, then let the file grow by 1 MiB, then take the rest.
        const first = await http.body(Math.min(65536, size - start));
        await Deno.writeFile(path, new Uint8Array(1024 * 1024).fill(0x7a), {
          append: true,
        });
        const rest = await http.body(size - start - first.length);
        const got = new Uint8Array(size - start);
        got.set(first);
        got.set(rest, first.length);
        assert.deepEqual(got, bytes.subarray(start));
        await Deno.truncate(path, size);
      }
      // Ranges in the middle, natively streamed (longer than one chunk) or
      // not: exactly their bytes, though the file goes on after them.
      for (const [start, length] of [[1000, 1_500_000], [3_000_000, 100_000]]) {
        const head = await http.request(
          `/v1/file?path=${encodeURIComponent(path)}`,
          { range: `bytes=${start}-${start + length - 1}` },
        );
        assert.equal(head.status, 206);
        assert.equal(head.headers.get("content-length"), String(length));
        assert.deepEqual(
          await http.body(length),
          bytes.subarray(start, start + length),
        );
      }
      // Nothing more was written on the connection: the next answer starts clean.
      const next = await http.request(
        `/v1/file?path=${encodeURIComponent(join(f.data, "next.txt"))}`,
      );
      assert.equal(next.status, 200);
      assert.equal(new TextDecoder().decode(await http.body(4)), "next");
    } finally {
      conn.close();
      await server.kill();
    }
  });
});

/** HTTP/1.1 on one connection, read exactly as far as asked: what a server writes beyond a body shows up as the next answer's start. */
class RawHttp {
  #conn: Deno.Conn;
  #buffered = new Uint8Array(0);

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  async request(
    path: string,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; headers: Headers }> {
    const lines = [`GET ${path} HTTP/1.1`, "Host: 127.0.0.1"];
    for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
    await this.#write(
      new TextEncoder().encode(`${lines.join("\r\n")}\r\n\r\n`),
    );
    let end: number;
    while ((end = indexOfBlankLine(this.#buffered)) < 0) await this.#fill();
    const text = new TextDecoder().decode(this.#buffered.subarray(0, end));
    this.#buffered = this.#buffered.subarray(end + 4);
    const [statusLine, ...rest] = text.split("\r\n");
    const match = /^HTTP\/1\.1 (\d{3}) /.exec(statusLine);
    assert.ok(match, `not a status line: ${JSON.stringify(statusLine)}`);
    const parsed = new Headers();
    for (const line of rest) {
      const colon = line.indexOf(":");
      parsed.append(line.slice(0, colon), line.slice(colon + 1).trim());
    }
    return { status: Number(match[1]), headers: parsed };
  }

  /** Exactly `n` body bytes. */
  async body(n: number): Promise<Uint8Array> {
    while (this.#buffered.length < n) await this.#fill();
    const out = this.#buffered.slice(0, n);
    this.#buffered = this.#buffered.subarray(n);
    return out;
  }

  async #fill(): Promise<void> {
    const chunk = new Uint8Array(64 * 1024);
    const n = await this.#conn.read(chunk);
    assert.ok(n !== null, "the server closed the connection");
    const joined = new Uint8Array(this.#buffered.length + n);
    joined.set(this.#buffered);
    joined.set(chunk.subarray(0, n), this.#buffered.length);
    this.#buffered = joined;
  }

  async #write(data: Uint8Array): Promise<void> {
    let at = 0;
    while (at < data.length) at += await this.#conn.write(data.subarray(at));
  }
}
