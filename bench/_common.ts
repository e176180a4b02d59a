// deno-lint-ignore-file no-console
/** Helpers shared by the benchmarks: child processes, data and verification, servers, /proc readings. */
import { createHash } from "node:crypto";
import { join, relative } from "node:path";
import { RUNTIME_FLAGS } from "../scripts/compile.ts";

const MiB = 1024 * 1024;
let defaultTimeoutS = 600;

/** Default bound of {@linkcode run} in seconds. */
export function setDefaultTimeout(seconds: number): void {
  defaultTimeoutS = seconds;
}

// ---------------------------------------------------------------- child processes

export const live = new Set<Deno.ChildProcess>();

export interface RunOut {
  code: number;
  signal: string | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** Run a command to completion, bounded by `timeoutS`; never throws for a bad exit code. */
export async function run(
  cmd: string,
  args: string[],
  o: {
    cwd?: string;
    env?: Record<string, string>;
    timeoutS?: number;
    stdout?: boolean;
  } = {},
): Promise<RunOut> {
  const t0 = performance.now();
  const child = new Deno.Command(cmd, {
    args,
    cwd: o.cwd,
    env: o.env,
    stdin: "null",
    stdout: o.stdout ? "piped" : "null",
    stderr: "piped",
    signal: AbortSignal.timeout((o.timeoutS ?? defaultTimeoutS) * 1000),
  }).spawn();
  live.add(child);
  try {
    const r = await child.output();
    const seconds = (performance.now() - t0) / 1000;
    const dec = new TextDecoder();
    return {
      code: r.code,
      signal: r.signal,
      stdout: o.stdout ? dec.decode(r.stdout) : "",
      stderr: dec.decode(r.stderr),
      seconds,
    };
  } finally {
    live.delete(child);
  }
}

export async function which(cmd: string): Promise<string | null> {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    const p = join(dir, cmd);
    try {
      const st = await Deno.stat(p);
      if (st.isFile && ((st.mode ?? 0o111) & 0o111)) return p;
    } catch { /* not here */ }
  }
  return null;
}

let aptUpdated = false;
/** Make sure `cmd` exists, installing Debian package `pkg` if needed. Returns a reason on failure. */
export async function ensureCommand(
  cmd: string,
  pkg: string,
): Promise<string | null> {
  if (await which(cmd)) return null;
  console.log(`[setup] ${cmd} missing, installing Debian package ${pkg}`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  if (!aptUpdated) {
    const u = await run("apt-get", ["update"], { env, timeoutS: 600 });
    aptUpdated = true;
    if (u.code !== 0) {
      console.log(`[setup] apt-get update failed: ${lastLine(u.stderr)}`);
    }
  }
  const r = await run("apt-get", [
    "install",
    "-y",
    "--no-install-recommends",
    pkg,
  ], {
    env,
    timeoutS: 600,
  });
  if (r.code !== 0 || !(await which(cmd))) {
    return `could not install ${pkg}: ${
      lastLine(r.stderr) || `exit ${r.code}`
    }`;
  }
  return null;
}

export function lastLine(s: string): string {
  const lines = s.trim().split("\n").filter((l) => l.trim() !== "");
  return lines.length ? lines[lines.length - 1].trim() : "";
}

/** A short summary of a child's stderr: its first "error" line if any, else its last lines. */
export function tail(s: string, n = 3): string {
  // deno-lint-ignore no-control-regex
  const lines = s.replace(/\x1b\[[0-9;]*m/g, "").split("\n").map((l) =>
    l.trim()
  )
    .filter((l) =>
      l !== "" && !l.startsWith("Warning Permissions in the config")
    );
  const i = lines.findIndex((l) => /^error\b/i.test(l) || /\berror:/i.test(l));
  return (i >= 0 ? lines.slice(i, i + 2) : lines.slice(-n)).join(" | ");
}

export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- data

export interface FileInfo {
  size: number;
  sha: string;
}
export type Manifest = Map<string, FileInfo>; // path relative to the workload root

export async function writeAll(f: Deno.FsFile, buf: Uint8Array): Promise<void> {
  let off = 0;
  while (off < buf.length) off += await f.write(buf.subarray(off));
}

export async function writeRandomFile(
  path: string,
  size: number,
): Promise<void> {
  const f = await Deno.open(path, {
    write: true,
    create: true,
    truncate: true,
  });
  try {
    const buf = new Uint8Array(65536); // getRandomValues' limit per call
    for (let left = size; left > 0;) {
      const n = Math.min(left, buf.length);
      crypto.getRandomValues(buf.subarray(0, n));
      await writeAll(f, buf.subarray(0, n));
      left -= n;
    }
  } finally {
    f.close();
  }
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  const f = await Deno.open(path, { read: true });
  try {
    const buf = new Uint8Array(MiB);
    for (;;) {
      const n = await f.read(buf);
      if (n === null) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    f.close();
  }
  return h.digest("hex");
}

/** Every regular file under `root` (relative path -> size); symlinks and others are listed as size -1. */
export async function walk(root: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  async function rec(dir: string) {
    for await (const e of Deno.readDir(dir)) {
      const p = join(dir, e.name);
      if (e.isDirectory) await rec(p);
      else if (e.isFile) out.set(relative(root, p), (await Deno.stat(p)).size);
      else out.set(relative(root, p), -1);
    }
  }
  await rec(root);
  return out;
}

/** Hash every file under root; this is also the one read that warms the page cache. */
export async function manifestOf(root: string): Promise<Manifest> {
  const m: Manifest = new Map();
  for (const [rel, size] of [...(await walk(root))].sort()) {
    m.set(rel, { size, sha: await sha256File(join(root, rel)) });
  }
  return m;
}

/** Compare `root` with the source manifest: file list, sizes, then SHA-256 of every file. */
export async function verify(
  root: string,
  want: Manifest,
): Promise<string | null> {
  let got: Map<string, number>;
  try {
    got = await walk(root);
  } catch (e) {
    return `output missing (${(e as Error).message})`;
  }
  const missing = [...want.keys()].filter((k) => !got.has(k));
  const extra = [...got.keys()].filter((k) => !want.has(k));
  if (missing.length) {
    return `${missing.length} file(s) missing, e.g. ${missing[0]}`;
  }
  if (extra.length) {
    return `${extra.length} unexpected file(s), e.g. ${extra[0]}`;
  }
  for (const [rel, info] of want) {
    const size = got.get(rel)!;
    if (size !== info.size) {
      return `${rel}: size ${size}, expected ${info.size}`;
    }
  }
  for (const [rel, info] of want) {
    if ((await sha256File(join(root, rel))) !== info.sha) {
      return `${rel}: content differs (SHA-256)`;
    }
  }
  return null;
}

export function fmtSize(n: number): string {
  if (n >= 1024 * MiB && n % (1024 * MiB) === 0) {
    return `${n / (1024 * MiB)} GiB`;
  }
  if (n >= MiB && n % MiB === 0) return `${n / MiB} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} B`;
}

// ---------------------------------------------------------------- servers

export interface Server {
  child: Deno.ChildProcess;
  port: number;
  log: string;
  status: Promise<Deno.CommandStatus>;
}

export async function startServer(
  cmd: string,
  args: string[],
  o: { cwd?: string; env?: Record<string, string>; log: string; port: number },
  ready: () => Promise<boolean>,
  name: string,
): Promise<Server> {
  const logFile = await Deno.open(o.log, {
    write: true,
    create: true,
    truncate: true,
  });
  const child = new Deno.Command(cmd, {
    args,
    cwd: o.cwd,
    env: o.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Keep the pipes drained into a log file so the server never blocks on output.
  const enc = new TextEncoder();
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s) await writeAll(logFile, chunk);
  };
  const pumps = Promise.allSettled([pump(child.stdout), pump(child.stderr)]);
  const status = child.status.then(async (s) => {
    await pumps;
    try {
      await writeAll(
        logFile,
        enc.encode(`\n[bench] exited code=${s.code} signal=${s.signal}\n`),
      );
      logFile.close();
    } catch { /* already closed */ }
    return s;
  });
  const srv: Server = { child, port: o.port, log: o.log, status };
  let exited = false;
  status.then(() => exited = true);
  const deadline = performance.now() + 60_000;
  while (performance.now() < deadline) {
    if (exited) break;
    if (await ready().catch(() => false)) return srv;
    await sleep(100);
  }
  await stopServer(srv);
  const log = await Deno.readTextFile(o.log).catch(() => "");
  throw new Error(
    `${name} did not become ready (${exited ? "it exited" : "timeout"}): ${
      tail(log, 5)
    }`,
  );
}

export async function stopServer(s: Server): Promise<void> {
  try {
    s.child.kill("SIGTERM");
  } catch { /* already gone */ }
  const done = await Promise.race([
    s.status.then(() => true),
    sleep(10_000).then(() => false),
  ]);
  if (!done) {
    try {
      s.child.kill("SIGKILL");
    } catch { /* already gone */ }
    await s.status;
  }
}

export async function httpOk(url: string): Promise<boolean> {
  const r = await fetch(url, { signal: AbortSignal.timeout(2000) });
  await r.body?.cancel();
  return r.status === 200;
}

export async function tcpOpen(port: number): Promise<boolean> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  c.close();
  return true;
}

/** Read a /proc file; Deno refuses /proc to anything short of --allow-all, so go through `cat`. */
export async function readProc(path: string): Promise<string> {
  const r = await run("cat", [path], { stdout: true, timeoutS: 10 }).catch(() =>
    null
  );
  return r && r.code === 0 ? r.stdout : "";
}

export async function vmHWM(pid: number): Promise<number | null> {
  const m = (await readProc(`/proc/${pid}/status`)).match(
    /^VmHWM:\s+(\d+)\s+kB/m,
  );
  return m ? Number(m[1]) : null;
}

/** What `sampleServer` saw: the largest RSS and its make-up, and the most connections open at once. */
export interface ServerSample {
  /** KiB; 0 when nothing was read. */
  rss: number;
  /** Anonymous memory (KiB) when the RSS was largest: heaps and buffers. */
  anon: number;
  /** File-backed and shared memory (KiB) then, so that `anon + file` is that RSS: mostly the program's own code. */
  file: number;
  /** Most established TCP connections on `port` in one sample. */
  connections: number;
  samples: number;
}

/** Established TCP connections whose local port is `port`, from /proc/net/tcp and tcp6. */
async function establishedOn(port: number): Promise<number> {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  let n = 0;
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of (await readProc(table)).split("\n")) {
      const f = line.trim().split(/\s+/);
      // f[1] local address:port, f[3] state (01 = ESTABLISHED)
      if (f[1]?.endsWith(hex) && f[3] === "01") n++;
    }
  }
  return n;
}

/**
 * Samples a server process every `everyMs` until stopped: VmHWM says how
 * high the RSS went, this says of what (anonymous or file-backed memory) and
 * with how many connections open.
 */
export function sampleServer(
  pid: number,
  port: number,
  everyMs = 500,
): { stop(): Promise<ServerSample> } {
  const best: ServerSample = {
    rss: 0,
    anon: 0,
    file: 0,
    connections: 0,
    samples: 0,
  };
  let running = true;
  const kib = (text: string, key: string) =>
    Number(text.match(new RegExp(`^${key}:\\s+(\\d+)\\s+kB`, "m"))?.[1] ?? 0);
  const loop = (async () => {
    while (running) {
      const [status, connections] = await Promise.all([
        readProc(`/proc/${pid}/status`),
        establishedOn(port),
      ]);
      const rss = kib(status, "VmRSS");
      if (rss > 0) best.samples++;
      if (rss > best.rss) {
        Object.assign(best, {
          rss,
          anon: kib(status, "RssAnon"),
          file: kib(status, "RssFile") + kib(status, "RssShmem"),
        });
      }
      best.connections = Math.max(best.connections, connections);
      if (running) await sleep(everyMs);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return best;
    },
  };
}

/** The repository root (where deno.json and the programs are). */
export const REPO = new URL("../", import.meta.url).pathname.replace(/\/$/, "");

/** `deno` arguments for hsyncd on 127.0.0.1:`port` with config `ini`, under the server's permission set and runtime flags. */
export function hsyncdArgs(
  port: number,
  ini: string,
  more: string[] = [],
): string[] {
  return [
    "run",
    "-q",
    "-P=hsyncd",
    ...RUNTIME_FLAGS.hsyncd,
    join(REPO, "main_server.ts"),
    "-host",
    "127.0.0.1",
    "-p",
    String(port),
    "-c",
    ini,
    ...more,
  ];
}

/** `deno` arguments for one quiet hsync push of `local` to `remote` on 127.0.0.1:`port` (the old flags' form). */
export function hsyncPushArgs(
  port: number,
  local: string,
  remote: string,
  more: string[] = [],
): string[] {
  return [
    "run",
    "-q",
    "-P=hsync",
    ...RUNTIME_FLAGS.hsync,
    join(REPO, "main_client.ts"),
    "--push",
    "-i",
    local,
    "-o",
    remote,
    "-host",
    "127.0.0.1",
    "-p",
    String(port),
    "--quiet",
    ...more,
  ];
}

/** `deno` arguments for one quiet hsync pull from 127.0.0.1:`port`, under the client's permission set and runtime flags. */
export function hsyncPullArgs(
  port: number,
  remote: string,
  local: string,
  more: string[] = [],
): string[] {
  return [
    "run",
    "-q",
    "-P=hsync",
    ...RUNTIME_FLAGS.hsync,
    join(REPO, "main_client.ts"),
    "-i",
    remote,
    "-o",
    local,
    "-host",
    "127.0.0.1",
    "-p",
    String(port),
    "--quiet",
    ...more,
  ];
}

/** An hsyncd from this checkout, serving only `dataDir`, with its own HSYNC_DIR under `tmp`. */
export async function startHsyncd(
  tmp: string,
  dataDir: string,
  name = "hsyncd",
  options: { writable?: boolean } = {},
): Promise<Server & { env: Record<string, string> }> {
  const hsyncDir = join(tmp, `${name}-home`);
  await Deno.mkdir(hsyncDir, { recursive: true });
  const ini = join(tmp, `${name}.ini`);
  // A writable one takes pushes below dataDir (on loopback, without keys).
  await Deno.writeTextFile(
    ini,
    `[hsyncd]\nOnly_allowed_path = ${dataDir}\n${
      options.writable ? `Writable_path = ${dataDir}\n` : ""
    }`,
  );
  const port = freePort();
  const env = { HSYNC_DIR: hsyncDir, NO_COLOR: "1" };
  const c = await run("deno", ["cache", "main_server.ts", "main_client.ts"], {
    cwd: REPO,
    env: { NO_COLOR: "1" },
    timeoutS: 300,
  });
  if (c.code !== 0) throw new Error(`deno cache failed: ${tail(c.stderr)}`);
  const server = await startServer(
    "deno",
    hsyncdArgs(port, ini),
    { cwd: REPO, env, log: join(tmp, `${name}.out`), port },
    () => httpOk(`http://127.0.0.1:${port}/v1/health`),
    name,
  );
  return { ...server, env };
}

/** An `rsync --daemon` on a free loopback port exporting `dataDir` as module `bench`, and `writableDir` (when given) as the writable module `benchw`. */
export async function startRsyncd(
  tmp: string,
  dataDir: string,
  writableDir?: string,
): Promise<Server> {
  const conf = join(tmp, "rsyncd.conf");
  await Deno.writeTextFile(
    conf,
    [
      `pid file = ${join(tmp, "rsyncd.pid")}`,
      `log file = ${join(tmp, "rsyncd.log")}`,
      "use chroot = no",
      "uid = 0",
      "gid = 0",
      "",
      "[bench]",
      `path = ${dataDir}`,
      "read only = yes",
      "",
      ...(writableDir === undefined
        ? []
        : ["[benchw]", `path = ${writableDir}`, "read only = no", ""]),
    ].join("\n"),
  );
  const port = freePort();
  return await startServer(
    "rsync",
    [
      "--daemon",
      "--no-detach",
      `--config=${conf}`,
      "--address=127.0.0.1",
      `--port=${port}`,
    ],
    { log: join(tmp, "rsyncd.out"), port },
    () => tcpOpen(port),
    "rsync daemon",
  );
}

/** The median of some numbers (the mean of the middle two for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** A relay process (bench/_link_main.ts) in front of one server. */
export interface Relay extends Server {
  /** The server behind it. */
  upstreamPort: number;
}

/**
 * Starts bench/_link_main.ts in its own `deno run` process: 127.0.0.1:(a free
 * port) relayed to 127.0.0.1:`upstreamPort`, every byte `delayMs` late each
 * way, `windowBytes` per connection and direction. Stop it with
 * {@linkcode stopServer}; its CPU time is {@linkcode cpuSeconds} of its pid.
 */
export async function startRelay(
  tmp: string,
  name: string,
  upstreamPort: number,
  delayMs: number,
  windowBytes: number,
): Promise<Relay> {
  const port = freePort();
  const server = await startServer(
    "deno",
    [
      "run",
      "-q",
      "--allow-net=127.0.0.1",
      join(REPO, "bench", "_link_main.ts"),
      String(port),
      String(upstreamPort),
      String(delayMs),
      String(windowBytes),
    ],
    { cwd: REPO, env: { NO_COLOR: "1" }, log: join(tmp, `${name}.out`), port },
    () => tcpOpen(port),
    name,
  );
  return { ...server, upstreamPort };
}

/** User + system CPU seconds a process has used so far (from /proc/PID/stat; 100 ticks a second), or null when gone. */
export async function cpuSeconds(pid: number): Promise<number | null> {
  const stat = await readProc(`/proc/${pid}/stat`);
  // Fields after the command name, which may hold spaces: state is [0], utime [11], stime [12].
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  if (f.length < 13) return null;
  return (Number(f[11]) + Number(f[12])) / 100;
}
