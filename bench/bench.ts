// Benchmark: hsync pull and push speed and memory vs rsync, curl and aria2c on loopback, or through relays that add a round trip (`deno task bench [--rtt MS]`).
// deno-lint-ignore-file no-console

import { parseArgs } from "node:util";
import { join } from "node:path";
import {
  cpuSeconds,
  ensureCommand,
  fmtSize,
  hsyncPullArgs,
  hsyncPushArgs,
  live,
  type Manifest,
  manifestOf,
  median,
  readProc,
  type Relay,
  REPO,
  run,
  type Server,
  setDefaultTimeout,
  sha256File,
  startHsyncd,
  startRelay,
  startRsyncd,
  stopServer,
  tail,
  verify,
  vmHWM,
  writeRandomFile,
} from "./_common.ts";

// ---------------------------------------------------------------- options

const HELP = `usage: deno task bench [options]

  --runs N        timed runs per tool and workload (default 3; workload B uses max(N,5))
  --only A,B,C    workloads: A = one big file, B = many 4 KiB files, C = 100 x 10 MiB
  --tools LIST    tools to compare (default hsync,rsync,curl,aria2c)
  --direction L   pull, push or pull,push (default): push rows send the same
                  data to a writable hsyncd and to a writable rsync daemon
                  module (hsync and rsync only)
  --quick         small data for a smoke run (A 64 MiB, B 1000 files, C 20 files)
  --rtt MS        every tool talks to its server through a relay process
                  (bench/_link_main.ts) that delays each byte MS/2 each way,
                  so the round trip is MS; 0 (default) is plain loopback.
                  Writes bench/results-rtt<MS>.md instead of results.md and
                  uses the distance sizes (A 256 MiB, B 2000 files of 4 KiB,
                  C 20 files of 10 MiB) unless --full or --quick
  --window KiB    with --rtt: unacknowledged bytes per connection and
                  direction (default 4096), what limits one TCP stream
  --full          with --rtt: the full sizes (A 1 GiB, B 10000, C 100 files)
  --size-a MiB    size of workload A (overrides the default of any mode)
  --http-small    also run curl and aria2c on workload B (slow: one request per file)
  --timeout SEC   per-run time limit; a run past it is killed and FAILED (default 600)
  --out DIR       write the pulled copies under DIR (default: the temporary
                  directory, on the system disk); e.g. a tmpfs, to time the
                  transfer without this machine's disk
  --keep          keep the temporary data and logs
  -h, --help      this text
`;

const { values: opts } = parseArgs({
  args: Deno.args,
  options: {
    runs: { type: "string", default: "3" },
    only: { type: "string", default: "A,B,C" },
    tools: { type: "string", default: "hsync,rsync,curl,aria2c" },
    direction: { type: "string", default: "pull,push" },
    quick: { type: "boolean", default: false },
    rtt: { type: "string", default: "0" },
    window: { type: "string", default: "4096" },
    full: { type: "boolean", default: false },
    "size-a": { type: "string" },
    "http-small": { type: "boolean", default: false },
    timeout: { type: "string", default: "600" },
    out: { type: "string" },
    keep: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
  strict: true,
  allowPositionals: false,
});

if (opts.help) {
  console.log(HELP);
  Deno.exit(0);
}

const RUNS = Number(opts.runs);
const TIMEOUT_S = Number(opts.timeout);
setDefaultTimeout(TIMEOUT_S);
if (!Number.isInteger(RUNS) || RUNS < 1) {
  usage(`--runs must be a positive integer, got "${opts.runs}"`);
}
if (!(TIMEOUT_S > 0)) {
  usage(`--timeout must be a positive number, got "${opts.timeout}"`);
}
/** Round trip the relays add, in ms (0: no relay, plain loopback). */
const RTT_MS = Number(opts.rtt);
if (!Number.isInteger(RTT_MS) || RTT_MS < 0) {
  usage(`--rtt must be a whole number of milliseconds, got "${opts.rtt}"`);
}
const WINDOW_KIB = Number(opts.window);
if (!Number.isInteger(WINDOW_KIB) || WINDOW_KIB < 64) {
  usage(
    `--window must be a whole number of KiB, at least 64, got "${opts.window}"`,
  );
}
const SIZE_A_MIB = opts["size-a"] === undefined
  ? undefined
  : Number(opts["size-a"]);
if (
  SIZE_A_MIB !== undefined && (!Number.isInteger(SIZE_A_MIB) || SIZE_A_MIB < 1)
) {
  usage(`--size-a must be a whole number of MiB, got "${opts["size-a"]}"`);
}
if (opts.quick && opts.full) usage("--quick and --full exclude each other");

type WorkloadId = "A" | "B" | "C";
type ToolId = "hsync" | "rsync" | "curl" | "aria2c";
const ALL_WORKLOADS: WorkloadId[] = ["A", "B", "C"];
const ALL_TOOLS: ToolId[] = ["hsync", "rsync", "curl", "aria2c"];

type Direction = "pull" | "push";
const workloads = parseList(opts.only, ALL_WORKLOADS, "--only");
const directions = parseList(
  opts.direction,
  ["pull", "push"] as Direction[],
  "--direction",
);
const tools = parseList(opts.tools, ALL_TOOLS, "--tools");

function usage(msg: string): never {
  console.error(`bench: ${msg}\n\n${HELP}`);
  Deno.exit(1);
}

function parseList<T extends string>(s: string, all: T[], flag: string): T[] {
  const want = s.split(",").map((x) => x.trim()).filter((x) => x !== "");
  for (const w of want) {
    if (!all.includes(w as T)) {
      usage(`${flag}: unknown "${w}" (choose from ${all.join(",")})`);
    }
  }
  return all.filter((x) => want.includes(x)); // canonical order, no duplicates
}

/** Pause after deleting a workload's outputs, so the file system has settled before the next workload. */
const SETTLE_MS = 5000;
const MiB = 1024 * 1024;
const SIZES = opts.quick
  ? {
    aBytes: 64 * MiB,
    bFiles: 1000,
    bDirs: 10,
    bBytes: 4096,
    cFiles: 20,
    cBytes: 10 * MiB,
  }
  : RTT_MS > 0 && !opts.full
  // At a distance one stream moves ~80 MB/s (4 MiB window, 50 ms): the
  // sizes of issue 23's table keep a run affordable.
  ? {
    aBytes: 256 * MiB,
    bFiles: 2000,
    bDirs: 20,
    bBytes: 4096,
    cFiles: 20,
    cBytes: 10 * MiB,
  }
  : {
    aBytes: 1024 * MiB,
    bFiles: 10000,
    bDirs: 100,
    bBytes: 4096,
    cFiles: 100,
    cBytes: 10 * MiB,
  };
if (SIZE_A_MIB !== undefined) SIZES.aBytes = SIZE_A_MIB * MiB;

const RESULTS_MD = join(
  REPO,
  "bench",
  RTT_MS > 0 ? `results-rtt${RTT_MS}.md` : "results.md",
);
const NO_COLOR = { NO_COLOR: "1" };

interface Workload {
  id: WorkloadId;
  title: string;
  /** Source root relative to the data dir (a file for A, a directory for B and C). */
  src: string;
  bytes: number;
  files: number;
  manifest: Manifest;
}

async function generate(
  dataDir: string,
  ids: WorkloadId[],
): Promise<Workload[]> {
  const out: Workload[] = [];
  for (const id of ids) {
    const t0 = performance.now();
    if (id === "A") {
      await Deno.mkdir(join(dataDir, "A"), { recursive: true });
      await writeRandomFile(join(dataDir, "A", "big.bin"), SIZES.aBytes);
      out.push({
        id,
        title: `1 file of ${fmtSize(SIZES.aBytes)}`,
        src: "A/big.bin",
        bytes: SIZES.aBytes,
        files: 1,
        manifest: new Map(),
      });
    } else if (id === "B") {
      const per = Math.ceil(SIZES.bFiles / SIZES.bDirs);
      for (let d = 0; d < SIZES.bDirs; d++) {
        const dir = join(dataDir, "B", `d${String(d).padStart(3, "0")}`);
        await Deno.mkdir(dir, { recursive: true });
        for (let i = 0; i < per && d * per + i < SIZES.bFiles; i++) {
          await writeRandomFile(
            join(dir, `f${String(d * per + i).padStart(5, "0")}.bin`),
            SIZES.bBytes,
          );
        }
      }
      out.push({
        id,
        title: `${SIZES.bFiles} files of ${
          fmtSize(SIZES.bBytes)
        } in ${SIZES.bDirs} dirs`,
        src: "B",
        bytes: SIZES.bFiles * SIZES.bBytes,
        files: SIZES.bFiles,
        manifest: new Map(),
      });
    } else {
      await Deno.mkdir(join(dataDir, "C"), { recursive: true });
      for (let i = 0; i < SIZES.cFiles; i++) {
        await writeRandomFile(
          join(dataDir, "C", `f${String(i).padStart(3, "0")}.bin`),
          SIZES.cBytes,
        );
      }
      out.push({
        id,
        title: `${SIZES.cFiles} files of ${fmtSize(SIZES.cBytes)}`,
        src: "C",
        bytes: SIZES.cFiles * SIZES.cBytes,
        files: SIZES.cFiles,
        manifest: new Map(),
      });
    }
    console.log(
      `[data] ${id}: generated in ${
        ((performance.now() - t0) / 1000).toFixed(1)
      } s`,
    );
  }
  await run("sync", [], { timeoutS: 600 }); // flush so write-back does not disturb the first runs
  for (const w of out) {
    const t0 = performance.now();
    const srcPath = join(dataDir, w.src);
    if (w.id === "A") {
      const size = (await Deno.stat(srcPath)).size;
      w.manifest.set("big.bin", { size, sha: await sha256File(srcPath) });
    } else {
      w.manifest = await manifestOf(srcPath);
    }
    console.log(
      `[data] ${w.id}: hashed ${w.manifest.size} file(s) in ${
        ((performance.now() - t0) / 1000).toFixed(1)
      } s` +
        " (page cache warmed)",
    );
  }
  return out;
}

// ---------------------------------------------------------------- tools

interface Ctx {
  tmp: string;
  dataDir: string;
  hsyncPort: number;
  rsyncPort: number;
  hsyncEnv: Record<string, string>;
  /** The writable hsyncd pushes go to (0: none). */
  pushPort: number;
  pushEnv: Record<string, string>;
  /** Where pushes land (served by the writable hsyncd and the rsync module `benchw`). */
  incoming: string;
  /** With --rtt: the relay processes the ports above lead to. */
  relays: Relay[];
}

/**
 * The port a tool should use for the server on `port`: with --rtt, that of
 * a new relay process in front of it (kept in `ctx.relays`), else `port`.
 */
async function viaRelay(ctx: Ctx, name: string, port: number): Promise<number> {
  if (RTT_MS === 0) return port;
  const relay = await startRelay(
    ctx.tmp,
    name,
    port,
    RTT_MS / 2,
    WINDOW_KIB * 1024,
  );
  ctx.relays.push(relay);
  console.log(
    `[setup] ${name} pid ${relay.child.pid}: 127.0.0.1:${relay.port} -> ${port}, ` +
      `round trip ${RTT_MS} ms, window ${WINDOW_KIB} KiB`,
  );
  return relay.port;
}

/**
 * The push of `tool` for workload `w` into `incoming/<run>` (which exists):
 * the expected result is `<run>/big.bin` for A and `<run>/<B|C>/...`.
 */
function pushInvocation(
  tool: ToolId,
  w: Workload,
  ctx: Ctx,
  run: string,
): Invocation | null {
  const src = join(ctx.dataDir, w.src);
  const name = w.id === "A" ? "big.bin" : w.id;
  switch (tool) {
    case "hsync":
      return {
        cmd: "deno",
        args: hsyncPushArgs(ctx.pushPort, src, join(ctx.incoming, run, name)),
        cwd: REPO,
        env: ctx.pushEnv,
      };
    case "rsync":
      return {
        cmd: "rsync",
        args: [
          "-a",
          w.id === "A" ? src : `${src}/`,
          `rsync://127.0.0.1:${ctx.rsyncPort}/benchw/${run}/${name}${
            w.id === "A" ? "" : "/"
          }`,
        ],
      };
    default:
      return null;
  }
}

interface Invocation {
  cmd: string;
  args: string[];
  cwd?: string;
  env?: Record<string, string>;
}

function fileUrl(ctx: Ctx, absPath: string): string {
  return `http://127.0.0.1:${ctx.hsyncPort}/v1/file?path=${
    encodeURIComponent(absPath)
  }`;
}

/**
 * Build the client command for `tool` on workload `w`, writing into the empty directory `dest`.
 * The expected result is `dest/big.bin` for A and `dest/<B|C>/...` for B and C.
 * Returns null when the tool does not take part in this workload.
 */
async function invocation(
  tool: ToolId,
  w: Workload,
  ctx: Ctx,
  dest: string,
): Promise<Invocation | null> {
  const src = join(ctx.dataDir, w.src);
  const out = w.id === "A" ? join(dest, "big.bin") : join(dest, w.id);
  const files = [...w.manifest.keys()];
  switch (tool) {
    case "hsync":
      return {
        cmd: "deno",
        args: hsyncPullArgs(ctx.hsyncPort, src, out),
        cwd: REPO,
        env: ctx.hsyncEnv,
      };
    case "rsync":
      return {
        cmd: "rsync",
        args: [
          "-a",
          w.id === "A"
            ? `rsync://127.0.0.1:${ctx.rsyncPort}/bench/${w.src}`
            : `rsync://127.0.0.1:${ctx.rsyncPort}/bench/${w.src}/`,
          w.id === "A" ? out : `${out}/`,
        ],
      };
    case "curl":
      if (w.id === "A") {
        return {
          cmd: "curl",
          args: ["-s", "-S", "-f", "-o", out, fileUrl(ctx, src)],
        };
      }
      if (w.id === "B" && !opts["http-small"]) return null;
      {
        // One config file with url/output pairs (10,000 URLs do not fit a command line).
        const cfg = join(ctx.tmp, `curl-${w.id}.cfg`);
        await Deno.writeTextFile(
          cfg,
          files.map((rel) =>
            `url = "${fileUrl(ctx, join(src, rel))}"\noutput = "${
              join(out, rel)
            }"\n`
          )
            .join(""),
        );
        return {
          cmd: "curl",
          args: [
            "--parallel",
            "--parallel-max",
            "16",
            "-s",
            "-S",
            "-f",
            "--create-dirs",
            "-K",
            cfg,
          ],
        };
      }
    case "aria2c": {
      const common = [
        "--file-allocation=none",
        "--allow-overwrite=true",
        "--auto-file-renaming=false",
        "--console-log-level=error",
        "--summary-interval=0",
        "--download-result=hide",
      ];
      if (w.id === "A") {
        return {
          cmd: "aria2c",
          args: [
            "-x16",
            "-s16",
            "-k1M",
            ...common,
            "-d",
            dest,
            "-o",
            "big.bin",
            fileUrl(ctx, src),
          ],
        };
      }
      if (w.id === "B" && !opts["http-small"]) return null;
      const list = join(ctx.tmp, `aria2-${w.id}.txt`);
      await Deno.writeTextFile(
        list,
        files.map((rel) => {
          const p = join(out, rel);
          const slash = p.lastIndexOf("/");
          return `${fileUrl(ctx, join(src, rel))}\n  dir=${
            p.slice(0, slash)
          }\n  out=${p.slice(slash + 1)}\n`;
        }).join(""),
      );
      return {
        cmd: "aria2c",
        args: w.id === "C"
          ? ["-i", list, "-j16", "-x4", "-s4", "-k1M", ...common]
          : ["-i", list, "-j16", "-x1", ...common],
      };
    }
  }
}

// ---------------------------------------------------------------- measurement

interface RunResult {
  ok: boolean;
  seconds: number;
  rssKiB: number | null;
  why?: string;
  /** CPU seconds the relays used during the run (with --rtt). */
  relayCpu?: number;
}

/** ", relay CPU 0.42 s, " for the run log (empty without --rtt). */
function relayNote(res: RunResult): string {
  return res.relayCpu === undefined
    ? ""
    : `relay CPU ${res.relayCpu.toFixed(2)} s, `;
}

/** CPU seconds used so far by all relays together (null when one could not be read). */
async function relaysCpu(ctx: Ctx): Promise<number | null> {
  let sum = 0;
  for (const r of ctx.relays) {
    const s = await cpuSeconds(r.child.pid);
    if (s === null) return null;
    sum += s;
  }
  return sum;
}

async function timedRun(inv: Invocation, ctx: Ctx): Promise<RunResult> {
  const timeFile = join(ctx.tmp, "time.out");
  await Deno.remove(timeFile).catch(() => {});
  const cpu0 = ctx.relays.length ? await relaysCpu(ctx) : null;
  // time -> timeout -> client: `timeout` bounds the client, `time` reports the peak RSS of the
  // largest process in the tree (Linux propagates children's maxrss), i.e. the client's.
  const r = await run(
    "/usr/bin/time",
    [
      "-o",
      timeFile,
      "-f",
      "%M",
      "timeout",
      "-k",
      "10",
      String(TIMEOUT_S),
      inv.cmd,
      ...inv.args,
    ],
    { cwd: inv.cwd, env: inv.env, timeoutS: TIMEOUT_S + 30 },
  );
  const txt = await Deno.readTextFile(timeFile).catch(() => "");
  const m = txt.trim().split("\n").reverse().find((l) =>
    /^\d+$/.test(l.trim())
  );
  const rssKiB = m ? Number(m.trim()) : null;
  const cpu1 = cpu0 === null ? null : await relaysCpu(ctx);
  const relayCpu = cpu0 === null || cpu1 === null ? undefined : cpu1 - cpu0;
  if (r.code !== 0) {
    const why = r.code === 124 || r.signal
      ? `killed after ${TIMEOUT_S} s timeout`
      : `exit ${r.code}${r.stderr.trim() ? `: ${tail(r.stderr)}` : ""}`;
    return { ok: false, seconds: r.seconds, rssKiB, why, relayCpu };
  }
  return { ok: true, seconds: r.seconds, rssKiB, relayCpu };
}

// ---------------------------------------------------------------- main

interface Row {
  workload: Workload;
  direction: Direction;
  tool: ToolId;
  runs: RunResult[];
  skipped?: string;
}

async function envInfo(): Promise<Record<string, string>> {
  const cpu = (await readProc("/proc/cpuinfo")).match(
    /^model name\s*:\s*(.+)$/m,
  )?.[1] ??
    "unknown";
  const nproc =
    (await run("nproc", [], { stdout: true, timeoutS: 10 }).catch(() => null))
      ?.stdout.trim() ||
    String(navigator.hardwareConcurrency);
  const memKiB = Number(
    (await readProc("/proc/meminfo")).match(
      /MemTotal:\s+(\d+)/,
    )?.[1],
  );
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    nproc,
    cpu,
    memory: memKiB ? `${(memKiB / 1024 / 1024).toFixed(1)} GiB` : "unknown",
    kernel: `${Deno.build.os} ${Deno.osRelease()}`,
    deno:
      `${Deno.version.deno} (V8 ${Deno.version.v8}, TypeScript ${Deno.version.typescript})`,
  };
}

async function toolVersion(tool: ToolId): Promise<string> {
  if (tool === "hsync") {
    const v = await Deno.readTextFile(join(REPO, "lib", "shared", "version.ts"))
      .catch(
        () => "",
      );
    return `hsync ${
      v.match(/["'](\d+\.\d+\.\d+[^"']*)["']/)?.[1] ?? "(source)"
    } via deno run`;
  }
  const r = await run(tool, ["--version"], { stdout: true, timeoutS: 10 })
    .catch(() => null);
  const first = (r?.stdout ?? "").split("\n")[0].trim();
  return first.replace(/\s+/g, " ").replace(/ protocol version.*$/, "").replace(
    /^(curl \S+).*$/,
    "$1",
  ) || tool;
}

async function main(): Promise<number> {
  const info = await envInfo();
  console.log(
    `[env] ${Object.entries(info).map(([k, v]) => `${k}: ${v}`).join("; ")}`,
  );

  // --- tools available?
  const skipped = new Map<ToolId, string>();
  const timeMissing = await ensureCommand("time", "time");
  if (timeMissing || !(await exists("/usr/bin/time"))) {
    console.error(
      `bench: /usr/bin/time is required: ${timeMissing ?? "not found"}`,
    );
    return 1;
  }
  const pkgs: Record<Exclude<ToolId, "hsync">, string> = {
    rsync: "rsync",
    curl: "curl",
    aria2c: "aria2",
  };
  for (const t of tools) {
    if (t === "hsync") {
      const need = ["main_server.ts", "main_client.ts"].filter((f) =>
        !existsSync(join(REPO, f))
      );
      if (need.length) {
        skipped.set(t, `${need.join(", ")} not found in ${REPO}`);
      }
      continue;
    }
    const why = await ensureCommand(t, pkgs[t]);
    if (why) skipped.set(t, why);
  }
  for (const [t, why] of skipped) console.log(`[setup] skipping ${t}: ${why}`);
  const versions = new Map<ToolId, string>();
  for (const t of tools) {
    if (!skipped.has(t)) versions.set(t, await toolVersion(t));
  }

  const tmp = await Deno.makeTempDir({ prefix: "hsync-bench-" });
  const dataDir = join(tmp, "data");
  await Deno.mkdir(dataDir, { recursive: true });
  let outDir = join(tmp, "out");
  if (opts.out === undefined) await Deno.mkdir(outDir, { recursive: true });
  else {
    try {
      outDir = await Deno.makeTempDir({
        dir: opts.out,
        prefix: "hsync-bench-out-",
      });
    } catch (error) {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
      usage(`--out ${opts.out}: ${(error as Error).message}`);
    }
  }
  const outFs = (await run("stat", ["-f", "-c", "%T", outDir], {
    stdout: true,
    timeoutS: 10,
  })).stdout.trim() || "unknown";
  info.out = `${
    outDir === join(tmp, "out") ? "the temporary directory" : opts.out
  } (${outFs})`;
  console.log(`[setup] temp dir ${tmp}, outputs under ${outDir} (${outFs})`);

  let hsyncd: Server | null = null;
  let rsyncd: Server | null = null;
  let pushd: Server | null = null;
  let serverHWM: number | null = null;
  const relays: Relay[] = [];
  const onSignal = () => {
    console.error("\nbench: interrupted, cleaning up");
    for (const c of live) {
      try {
        c.kill("SIGTERM");
      } catch { /* gone */ }
    }
    for (const s of [hsyncd, rsyncd, pushd, ...relays]) {
      try {
        s?.child.kill("SIGTERM");
      } catch { /* gone */ }
    }
    if (!opts.keep) {
      for (const dir of [tmp, outDir]) {
        try {
          Deno.removeSync(dir, { recursive: true });
        } catch { /* best effort, or already gone with tmp */ }
      }
    }
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);

  try {
    const ws = await generate(dataDir, workloads);
    const ctx: Ctx = {
      tmp,
      dataDir,
      hsyncPort: 0,
      rsyncPort: 0,
      hsyncEnv: {},
      pushPort: 0,
      pushEnv: {},
      incoming: join(outDir, "push-incoming"),
      relays,
    };
    if (directions.includes("push")) {
      await Deno.mkdir(ctx.incoming, { recursive: true });
    }

    // --- hsyncd: serves the hsync client and, through its plain-HTTP file endpoint, curl and aria2c
    const wantHsyncd = tools.some((t) => t !== "rsync" && !skipped.has(t));
    let hsyncdFailure = "";
    const serverMissing = !existsSync(join(REPO, "main_server.ts"));
    if (wantHsyncd && !serverMissing) {
      try {
        console.log("[setup] caching the programs' modules, starting hsyncd");
        const started = await startHsyncd(tmp, dataDir);
        hsyncd = started;
        ctx.hsyncEnv = started.env;
        console.log(
          `[setup] hsyncd pid ${hsyncd.child.pid} on 127.0.0.1:${started.port}`,
        );
        ctx.hsyncPort = await viaRelay(ctx, "relay-hsyncd", started.port);
      } catch (e) {
        hsyncdFailure = (e as Error).message;
        if (tools.includes("hsync") && !skipped.has("hsync")) {
          skipped.set("hsync", `hsyncd: ${hsyncdFailure}`);
        }
        console.log(`[setup] hsyncd: ${hsyncdFailure}`);
      }
    }
    if (hsyncd && tools.includes("hsync") && !skipped.has("hsync")) {
      console.log("[setup] caching hsync client modules (deno cache)");
      const c = await run("deno", ["cache", "main_client.ts"], {
        cwd: REPO,
        env: NO_COLOR,
        timeoutS: 300,
      });
      if (c.code !== 0) {
        skipped.set(
          "hsync",
          `deno cache main_client.ts failed: ${tail(c.stderr)}`,
        );
        console.log(`[setup] skipping hsync: ${skipped.get("hsync")}`);
      }
    }
    if (hsyncd && tools.includes("hsync") && !skipped.has("hsync")) {
      // One untimed pull so Deno's code cache is populated before the first timed run.
      const w0 = ws[0];
      const one = w0.id === "A"
        ? w0.src
        : join(w0.src, [...w0.manifest.keys()][0]);
      const warm = await run(
        "deno",
        hsyncPullArgs(
          ctx.hsyncPort,
          join(dataDir, one),
          join(tmp, "warmup.bin"),
        ),
        { cwd: REPO, env: ctx.hsyncEnv, timeoutS: 120 },
      );
      if (warm.code !== 0) {
        console.log(
          `[setup] warning: hsync warm-up pull failed: exit ${warm.code} ${
            tail(warm.stderr)
          }`,
        );
      }
      await Deno.remove(join(tmp, "warmup.bin")).catch(() => {});
    }
    if (
      !hsyncd &&
      ["curl", "aria2c"].some((t) =>
        tools.includes(t as ToolId) && !skipped.has(t as ToolId)
      )
    ) {
      // No hsyncd (not written yet, or failed): serve the same URLs from a minimal in-process
      // stand-in so curl and aria2c can still be exercised; the report says so.
      fallback = startStandIn(dataDir);
      ctx.hsyncPort = await viaRelay(
        ctx,
        "relay-stand-in",
        fallback.addr.port,
      );
      standInNote = `hsyncd was not available (${
        serverMissing
          ? "main_server.ts not found"
          : `failed to start: ${hsyncdFailure}`
      }); ` +
        "curl and aria2c downloaded from a minimal in-process stand-in HTTP server, so their numbers are not " +
        "hsyncd numbers";
      console.log(`[setup] ${standInNote}`);
    }

    // --- rsync daemon (also started for curl/aria2c-free runs only when rsync is wanted)
    if (tools.includes("rsync") && !skipped.has("rsync")) {
      try {
        rsyncd = await startRsyncd(
          tmp,
          dataDir,
          directions.includes("push") ? ctx.incoming : undefined,
        );
        console.log(
          `[setup] rsync daemon pid ${rsyncd.child.pid} on 127.0.0.1:${rsyncd.port}`,
        );
        ctx.rsyncPort = await viaRelay(ctx, "relay-rsyncd", rsyncd.port);
      } catch (e) {
        skipped.set("rsync", (e as Error).message);
        console.log(`[setup] skipping rsync: ${(e as Error).message}`);
      }
    }

    // --- a second hsyncd, writable, for the push rows
    if (
      directions.includes("push") && tools.includes("hsync") &&
      !skipped.has("hsync")
    ) {
      try {
        const started = await startHsyncd(tmp, ctx.incoming, "hsyncd-push", {
          writable: true,
        });
        pushd = started;
        ctx.pushEnv = started.env;
        console.log(
          `[setup] writable hsyncd pid ${pushd.child.pid} on 127.0.0.1:${started.port}`,
        );
        ctx.pushPort = await viaRelay(ctx, "relay-hsyncd-push", started.port);
      } catch (e) {
        console.log(`[setup] writable hsyncd: ${(e as Error).message}`);
      }
    }

    // --- runs
    const rows: Row[] = [];
    const active = tools.filter((t) => !skipped.has(t));
    for (const w of directions.includes("pull") ? ws : []) {
      const n = w.id === "B" ? Math.max(RUNS, 5) : RUNS;
      const wRows = new Map<ToolId, Row>();
      for (const t of tools) {
        const row: Row = {
          workload: w,
          direction: "pull",
          tool: t,
          runs: [],
          skipped: skipped.get(t),
        };
        wRows.set(t, row);
        rows.push(row);
      }
      console.log(
        `\n[run] workload ${w.id}: ${w.title} (${
          (w.bytes / 1e6).toFixed(1)
        } MB), ${n} runs per tool`,
      );
      const doneDirs: string[] = [];
      for (let r = 0; r < n; r++) {
        const order = active.map((_, i) => active[(i + r) % active.length]);
        for (const t of order) {
          const row = wRows.get(t)!;
          if (row.skipped) continue;
          const dest = join(outDir, `${w.id}-${t}-${r + 1}`);
          await Deno.mkdir(dest, { recursive: true });
          const inv = await invocation(t, w, ctx, dest);
          if (!inv) {
            row.skipped =
              `not run on ${w.id} (one HTTP request per file; pass --http-small to include)`;
            await Deno.remove(dest, { recursive: true });
            continue;
          }
          if (t === "curl" || t === "aria2c") {
            // Parent directories are the tool's concern for A; for B/C pre-create the root (untimed).
            if (w.id !== "A") {
              await Deno.mkdir(join(dest, w.id), { recursive: true });
            }
          }
          const res = await timedRun(inv, ctx);
          if (res.ok) {
            const bad = await verify(
              w.id === "A" ? dest : join(dest, w.id),
              w.manifest,
            );
            if (bad) res.ok = false, res.why = `wrong output: ${bad}`;
          }
          row.runs.push(res);
          console.log(
            `[run] ${w.id} ${t.padEnd(6)} ${r + 1}/${n}: ${
              res.seconds.toFixed(3)
            } s, ` +
              `client RSS ${
                res.rssKiB === null
                  ? "?"
                  : (res.rssKiB / 1024).toFixed(0) + " MiB"
              }, ` +
              relayNote(res) + (res.ok ? "ok" : `FAILED (${res.why})`),
          );
          // Kept until the workload ends: on this VM's ext4 (mounted with
          // `discard`) file creation runs up to 10x slower for seconds after a
          // large deletion, which would land on the next tool's run. Under
          // --out (say a tmpfs, which holds its files in memory) each copy
          // goes at once.
          if (opts.out === undefined) doneDirs.push(dest);
          else await Deno.remove(dest, { recursive: true }).catch(() => {});
          await run("sync", [], { timeoutS: 600 }); // no write-back of this run spills into the next
        }
      }
      for (const dir of doneDirs.splice(0)) {
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
      await run("sync", [], { timeoutS: 600 });
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    }

    // --- push rows: the same data sent to the writable hsyncd and rsync module
    const pushers = active.filter((t) =>
      (t === "hsync" && pushd !== null) || (t === "rsync" && rsyncd !== null)
    );
    for (const w of directions.includes("push") ? ws : []) {
      const n = w.id === "B" ? Math.max(RUNS, 5) : RUNS;
      const wRows = new Map<ToolId, Row>();
      for (const t of pushers) {
        const row: Row = { workload: w, direction: "push", tool: t, runs: [] };
        wRows.set(t, row);
        rows.push(row);
      }
      console.log(
        `\n[run] push ${w.id}: ${w.title} (${
          (w.bytes / 1e6).toFixed(1)
        } MB), ${n} runs per tool`,
      );
      const doneDirs: string[] = [];
      for (let r = 0; r < n; r++) {
        const order = pushers.map((_, i) => pushers[(i + r) % pushers.length]);
        for (const t of order) {
          const row = wRows.get(t)!;
          const runDir = `push-${w.id}-${t}-${r + 1}`;
          const dest = join(ctx.incoming, runDir);
          await Deno.mkdir(dest, { recursive: true });
          const inv = pushInvocation(t, w, ctx, runDir)!;
          const res = await timedRun(inv, ctx);
          if (res.ok) {
            const bad = await verify(
              w.id === "A" ? dest : join(dest, w.id),
              w.manifest,
            );
            if (bad) res.ok = false, res.why = `wrong output: ${bad}`;
          }
          row.runs.push(res);
          console.log(
            `[run] push ${w.id} ${t.padEnd(6)} ${r + 1}/${n}: ${
              res.seconds.toFixed(3)
            } s, ` +
              `client RSS ${
                res.rssKiB === null
                  ? "?"
                  : (res.rssKiB / 1024).toFixed(0) + " MiB"
              }, ` +
              relayNote(res) + (res.ok ? "ok" : `FAILED (${res.why})`),
          );
          if (opts.out === undefined) doneDirs.push(dest);
          else await Deno.remove(dest, { recursive: true }).catch(() => {});
          await run("sync", [], { timeoutS: 600 });
        }
      }
      for (const dir of doneDirs.splice(0)) {
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
      await run("sync", [], { timeoutS: 600 });
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    }

    if (hsyncd) {
      serverHWM = await vmHWM(hsyncd.child.pid);
    }
    const md = report(rows, info, versions, skipped, serverHWM);
    await Deno.writeTextFile(RESULTS_MD, md);
    // Format it the way `deno fmt --check` (part of `deno task ok`) expects; aligns the table too.
    await run("deno", ["fmt", "--quiet", RESULTS_MD], {
      cwd: REPO,
      timeoutS: 60,
    });
    console.log(`\n${await Deno.readTextFile(RESULTS_MD).catch(() => md)}`);
    console.log(`[done] wrote ${RESULTS_MD}`);
    return rows.some((r) => r.runs.some((x) => !x.ok)) ? 2 : 0;
  } finally {
    for (const s of [...relays, hsyncd, rsyncd, pushd]) {
      if (s) await stopServer(s);
    }
    if (fallback) await fallback.shutdown();
    if (opts.keep) console.log(`[cleanup] kept ${tmp} and ${outDir}`);
    else {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
      await Deno.remove(outDir, { recursive: true }).catch(() => {});
    }
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

let fallback: Deno.HttpServer<Deno.NetAddr> | null = null;
let standInNote = "";

/** Minimal GET /v1/file?path=P server with single-range support (used only when hsyncd is absent). */
function startStandIn(root: string): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) => {
      const u = new URL(req.url);
      const p = u.searchParams.get("path") ?? "";
      if (
        u.pathname !== "/v1/file" || !p.startsWith(root + "/") ||
        p.includes("/../")
      ) {
        return new Response("not found", { status: 404 });
      }
      let f: Deno.FsFile;
      try {
        f = await Deno.open(p, { read: true });
      } catch {
        return new Response("not found", { status: 404 });
      }
      const size = (await f.stat()).size;
      const m = req.headers.get("range")?.match(/^bytes=(\d*)-(\d*)$/);
      let start = 0, end = size - 1, status = 200;
      const headers = new Headers({ "accept-ranges": "bytes" });
      if (m && (m[1] !== "" || m[2] !== "")) {
        if (m[1] === "") start = Math.max(0, size - Number(m[2]));
        else {
          start = Number(m[1]);
          end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
        }
        if (start >= size || start > end) {
          f.close();
          return new Response(null, {
            status: 416,
            headers: { "content-range": `bytes */${size}` },
          });
        }
        status = 206;
        headers.set("content-range", `bytes ${start}-${end}/${size}`);
      }
      headers.set("content-length", String(end - start + 1));
      if (req.method === "HEAD") {
        f.close();
        return new Response(null, { status, headers });
      }
      await f.seek(start, Deno.SeekMode.Start);
      let left = end - start + 1;
      const body = new ReadableStream<Uint8Array>({
        async pull(c) {
          if (left <= 0) {
            f.close();
            c.close();
            return;
          }
          const buf = new Uint8Array(Math.min(left, 256 * 1024));
          const n = await f.read(buf);
          if (n === null) {
            f.close();
            c.close();
            return;
          }
          left -= n;
          c.enqueue(buf.subarray(0, n));
        },
        cancel() {
          f.close();
        },
      });
      return new Response(body, { status, headers });
    },
  );
}

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.stat(p);
    return true;
  } catch {
    return false;
  }
}

function existsSync(p: string): boolean {
  try {
    Deno.statSync(p);
    return true;
  } catch {
    return false;
  }
}

function report(
  rows: Row[],
  info: Record<string, string>,
  versions: Map<ToolId, string>,
  skipped: Map<ToolId, string>,
  serverHWM: number | null,
): string {
  const lines: string[] = [];
  lines.push("# hsync benchmark", "");
  lines.push(
    `- date: ${info.date}`,
    `- machine: ${info.nproc} CPUs (nproc), ${info.cpu}, ${info.memory} RAM`,
    `- kernel: ${info.kernel}`,
    `- deno: ${info.deno}`,
    `- tools: ${[...versions.values()].join("; ") || "none"}`,
    `- transfer: loopback 127.0.0.1, page cache warm, fresh empty destination per run, runs interleaved ` +
      "with the tool order rotated each run",
    `- outputs written to: ${info.out}`,
  );
  const far = RTT_MS > 0;
  if (far) {
    lines.push(
      `- distance: every tool reaches its server through its own relay process (bench/_link_main.ts, one ` +
        `per server): round trip ${RTT_MS} ms (${
          RTT_MS / 2
        } ms each way), window ${WINDOW_KIB} KiB per ` +
        "connection and direction, one round trip for each new connection's handshake",
      "- hsync: no configuration file (no `-c`, no hsync.ini in its HSYNC_DIR), only `-host` and `-p`",
      `- sizes: A ${fmtSize(SIZES.aBytes)}; B ${SIZES.bFiles} files of ${
        fmtSize(SIZES.bBytes)
      } in ${SIZES.bDirs} dirs; C ${SIZES.cFiles} files of ${
        fmtSize(SIZES.cBytes)
      }`,
    );
  }
  lines.push("");
  // With --rtt: ratio vs aria2c (pull A only) and the relays' CPU.
  const farHead = far ? " ratio vs aria2c | relay CPU s |" : "";
  const farRule = far ? "---:|---:|" : "";
  const farEmpty = far ? " | |" : "";
  lines.push(
    `| workload | tool | median s | MB/s | client peak RSS MiB | ratio vs rsync |${farHead} runs |`,
    `|---|---|---:|---:|---:|---:|${farRule}---|`,
  );
  const medians = new Map<string, number>();
  for (const r of rows) {
    if (r.runs.length && r.runs.every((x) => x.ok)) {
      medians.set(
        `${r.direction}/${r.workload.id}/${r.tool}`,
        median(r.runs.map((x) => x.seconds)),
      );
    }
  }
  const notes: string[] = [];
  for (const r of rows) {
    const wl = `${
      r.direction === "push" ? "push " : ""
    }${r.workload.id}: ${r.workload.title}`;
    if (r.runs.length === 0) {
      lines.push(`| ${wl} | ${r.tool} | skipped | | | |${farEmpty} 0 |`);
      if (r.skipped && r.skipped !== skipped.get(r.tool)) {
        notes.push(`${r.workload.id}/${r.tool} skipped: ${r.skipped}`);
      }
      continue;
    }
    const failed = r.runs.filter((x) => !x.ok);
    const rss = r.runs.map((x) => x.rssKiB).filter((x): x is number =>
      x !== null
    );
    const rssTxt = rss.length ? (Math.max(...rss) / 1024).toFixed(0) : "?";
    if (failed.length) {
      lines.push(
        `| ${wl} | ${r.tool} | **FAILED** (${failed.length}/${r.runs.length} runs) | | ${rssTxt} | |${farEmpty} ${r.runs.length} |`,
      );
      const whys = [...new Set(failed.map((x) => x.why))];
      notes.push(`${r.workload.id}/${r.tool} FAILED: ${whys.join("; ")}`);
      continue;
    }
    const med = medians.get(`${r.direction}/${r.workload.id}/${r.tool}`)!;
    const base = medians.get(`${r.direction}/${r.workload.id}/rsync`);
    const ratio = base ? (med / base).toFixed(2) : "n/a";
    const times = r.runs.map((x) => x.seconds.toFixed(2)).join(", ");
    let farCells = "";
    if (far) {
      const aria = r.direction === "pull" && r.workload.id === "A"
        ? medians.get(`pull/A/aria2c`)
        : undefined;
      const cpu = r.runs.map((x) => x.relayCpu).filter((x): x is number =>
        x !== undefined
      );
      farCells = ` ${aria ? (med / aria).toFixed(2) : ""} | ${
        cpu.length ? median(cpu).toFixed(2) : "?"
      } |`;
    }
    lines.push(
      `| ${wl} | ${r.tool} | ${med.toFixed(3)} | ${
        (r.workload.bytes / 1e6 / med).toFixed(1)
      } | ${rssTxt} | ` +
        `${ratio} |${farCells} ${r.runs.length} (${times}) |`,
    );
  }
  lines.push("");
  lines.push(
    `hsyncd server peak RSS (VmHWM over the whole benchmark): ${
      serverHWM === null
        ? (standInNote || !tools.includes("hsync")
          ? "n/a (hsyncd not run)"
          : "unknown")
        : `${(serverHWM / 1024).toFixed(0)} MiB`
    }`,
    "",
  );
  lines.push(
    "Notes: wall time of the client process only (hsync includes `deno run` start-up); MB = 10^6 bytes; " +
      "ratio = median / rsync median (lower is faster); every run verified (file list, sizes, SHA-256), " +
      "a wrong output is FAILED, never a time; client RSS from `/usr/bin/time -f %M` (largest process of the client)." +
      (far
        ? " Ratio vs aria2c is for pull A only (aria2c -x16 -s16 -k1M); relay CPU s is the median user + system " +
          "CPU the relay processes used during a run (from /proc/PID/stat), to show the relay is not the bottleneck."
        : ""),
  );
  if (standInNote) notes.push(standInNote);
  for (const [t, why] of skipped) notes.push(`${t} skipped: ${why}`);
  if (notes.length) lines.push("", ...notes.map((n) => `- ${n}`));
  return lines.join("\n") + "\n";
}

Deno.exit(await main());
