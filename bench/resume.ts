// Benchmark of resume: bytes fetched (or pushed) again after a SIGKILL, kill-and-resume cycles, and what the journal costs (`deno run -q -P=bench bench/resume.ts`).
// deno-lint-ignore-file no-console

import { parseArgs } from "node:util";
import { createHash, randomFillSync } from "node:crypto";
import { join } from "node:path";
import defaults from "../hsync.ini" with { type: "text" };
import type { ByteRange } from "../lib/shared/byte_range.ts";
import { clientSettings, loadConfig } from "../lib/shared/config.ts";
import { loadJournal } from "../lib/shared/journal.ts";
import { journalPathFor, partPathFor } from "../lib/shared/part_file.ts";
import { pull } from "../lib/client/pull.ts";
import { startFaultProxy } from "../tests/_fault_proxy.ts";
import {
  freePort,
  hsyncdArgs,
  hsyncPullArgs,
  hsyncPushArgs,
  median,
  REPO,
  sha256File,
} from "./_common.ts";

const HELP = `usage: deno run -q -P=bench bench/resume.ts [options]

  --only a,b,c,d  parts to run (default all):
                    a = SIGKILL at a fraction of a big file, then rerun: bytes fetched again
                    b = kill-and-resume cycles at random moments: every result byte-identical
                    c = journal overhead: throughput with and without the journal
                    d = a push killed at --kill-at of a --size-a file, then rerun:
                        bytes sent again
  --size-a MiB    file size of part a (default 1024)
  --kill-at F     fraction of part a's file on disk when the client is killed (default 0.4)
  --runs-a N      repetitions of part a (default 3)
  --size-b MiB    file size of part b (default 256)
  --cycles N      cycles of part b (default 100)
  --size-c MiB    file size of part c, workload A (default 1024)
  --runs-c N      timed pulls per variant in part c (default 7, interleaved)
  --dir DIR       where the data and outputs go (default: a new temporary directory)
  --keep          keep the data and logs
  -h, --help      this text
`;

const { values: opts } = parseArgs({
  args: Deno.args,
  options: {
    only: { type: "string", default: "a,b,c,d" },
    "size-a": { type: "string", default: "1024" },
    "kill-at": { type: "string", default: "0.4" },
    "runs-a": { type: "string", default: "3" },
    "size-b": { type: "string", default: "256" },
    cycles: { type: "string", default: "100" },
    "size-c": { type: "string", default: "1024" },
    "runs-c": { type: "string", default: "7" },
    dir: { type: "string" },
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

function usage(message: string): never {
  console.error(`resume bench: ${message}\n\n${HELP}`);
  Deno.exit(1);
}

function positive(name: string, text: string, integer = true): number {
  const n = Number(text);
  if (!(n > 0) || (integer && !Number.isInteger(n))) {
    usage(
      `--${name} must be a positive ${
        integer ? "whole " : ""
      }number, got "${text}"`,
    );
  }
  return n;
}

const MiB = 1024 * 1024;
const parts = opts.only.split(",").map((p) => p.trim()).filter((p) => p);
for (const p of parts) {
  if (!["a", "b", "c", "d"].includes(p)) usage(`--only: unknown part "${p}"`);
}
const SIZE_A = positive("size-a", opts["size-a"]) * MiB;
const KILL_AT = positive("kill-at", opts["kill-at"], false);
if (KILL_AT >= 1) usage(`--kill-at must be below 1, got "${opts["kill-at"]}"`);
const RUNS_A = positive("runs-a", opts["runs-a"]);
const SIZE_B = positive("size-b", opts["size-b"]) * MiB;
const CYCLES = positive("cycles", opts.cycles);
const SIZE_C = positive("size-c", opts["size-c"]) * MiB;
const RUNS_C = positive("runs-c", opts["runs-c"]);

// ---------------------------------------------------------------- helpers

/** Writes `size` random bytes to `path`; returns their SHA-256. */
async function makeData(path: string, size: number): Promise<string> {
  const digest = createHash("sha256");
  using file = await Deno.open(path, {
    write: true,
    create: true,
    truncate: true,
  });
  const chunk = new Uint8Array(4 * MiB);
  for (let left = size; left > 0;) {
    const view = chunk.subarray(0, Math.min(left, chunk.length));
    randomFillSync(view);
    digest.update(view);
    let off = 0;
    while (off < view.length) off += await file.write(view.subarray(off));
    left -= view.length;
  }
  return digest.digest("hex");
}

/** Bytes of a (sparse) part file that were written: allocated blocks, page-granular, at most `size`. */
async function writtenBytes(path: string, size: number): Promise<number> {
  try {
    const info = await Deno.stat(path);
    return Math.min(size, (info.blocks ?? 0) * 512);
  } catch {
    return 0;
  }
}

/** Bytes the journal records: flushed (claimed) and written but unflushed (checked by SHA-256 on resume). */
async function recorded(
  finalPath: string,
): Promise<{ flushed: number; unflushed: number }> {
  const j = await loadJournal(journalPathFor(finalPath));
  const sum = (r: ByteRange[] = []) =>
    r.reduce((n, { start, end }) => n + end - start, 0);
  return { flushed: sum(j?.done), unflushed: sum(j?.unflushed) };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Names of unfinished work (part files, journals, their temporary files) in `dir`. */
async function leftovers(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (/\.hsync-(part|journal)/.test(e.name)) out.push(e.name);
  }
  return out;
}

async function syncDisks(): Promise<void> {
  await new Deno.Command("sync").output().catch(() => {});
}

function pct(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MiB`;
}

interface Hsyncd {
  port: number;
  log: string;
  child: Deno.ChildProcess;
  stop(): Promise<void>;
}

/** hsyncd serving `data` and taking pushes below `incoming` (loopback: no keys needed). */
async function startHsyncd(
  work: string,
  data: string,
  incoming: string,
): Promise<Hsyncd> {
  const port = freePort();
  const hsyncDir = join(work, "hsyncd-dir");
  await Deno.mkdir(hsyncDir, { recursive: true });
  const ini = join(work, "hsyncd.ini");
  await Deno.writeTextFile(
    ini,
    `[hsyncd]\nOnly_allowed_path = ${data}, ${incoming}\nWritable_path = ${incoming}\n`,
  );
  const log = join(work, "hsyncd.log");
  const child = new Deno.Command(Deno.execPath(), {
    args: hsyncdArgs(port, ini, ["-l", log]),
    cwd: REPO,
    env: { HSYNC_DIR: hsyncDir, NO_COLOR: "1" },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const deadline = Date.now() + 60_000;
  while (true) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/v1/health`);
      await r.body?.cancel();
      if (r.ok) break;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error("hsyncd did not answer within 60 s");
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    log,
    child,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // gone
      }
      await child.status;
    },
  };
}

/** Body bytes of file responses in the access log after `offset` (the log is flushed within a second). */
async function servedSince(log: string, offset: number): Promise<number> {
  await new Promise((r) => setTimeout(r, 1500));
  const text = await Deno.readTextFile(log);
  let n = 0;
  for (const line of text.slice(offset).split("\n")) {
    const f = line.split(" ");
    if (
      f[2] === "GET" && f[3]?.startsWith("/v1/file?") && /^20[06]$/.test(f[4])
    ) {
      n += Number(f[5]) || 0;
    }
  }
  return n;
}

async function logSize(log: string): Promise<number> {
  try {
    return (await Deno.readTextFile(log)).length;
  } catch {
    return 0;
  }
}

interface Client {
  child: Deno.ChildProcess;
  status: Promise<Deno.CommandStatus>;
  stderr: Promise<string>;
}

function spawnClient(
  server: Hsyncd,
  remote: string,
  out: string,
  hsyncDir: string,
): Client {
  const child = new Deno.Command(Deno.execPath(), {
    args: hsyncPullArgs(server.port, remote, out),
    cwd: REPO,
    env: { HSYNC_DIR: hsyncDir, NO_COLOR: "1" },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  return { child, status: child.status, stderr };
}

async function runToEnd(
  server: Hsyncd,
  remote: string,
  out: string,
  hsyncDir: string,
): Promise<void> {
  const c = spawnClient(server, remote, out, hsyncDir);
  const [status, stderr] = await Promise.all([c.status, c.stderr]);
  if (status.code !== 0) {
    throw new Error(`hsync exited with ${status.code}: ${stderr.trim()}`);
  }
}

// ---------------------------------------------------------------- parts

const work = opts.dir ??
  await Deno.makeTempDir({ prefix: "hsync-resume-bench-" });
const data = join(work, "data");
const outs = join(work, "out");
await Deno.mkdir(data, { recursive: true });
await Deno.mkdir(outs, { recursive: true });
const clientDir = join(work, "client-dir");
await Deno.mkdir(clientDir, { recursive: true });
let failures = 0;
const report: string[] = [];

console.log(
  `[setup] ${work}; ${navigator.hardwareConcurrency} CPUs; Deno ${Deno.version.deno}`,
);
const sizes = new Map<number, { path: string; sha: string }>();

/** The random data file of `size` bytes (written once) and its SHA-256. */
async function dataFile(size: number): Promise<{ path: string; sha: string }> {
  let d = sizes.get(size);
  if (d === undefined) {
    const path = join(data, `file-${size / MiB}MiB.bin`);
    console.log(`[setup] writing ${mib(size)} of random data`);
    d = { path, sha: await makeData(path, size) };
    sizes.set(size, d);
  }
  return d;
}

const incoming = join(work, "incoming");
await Deno.mkdir(incoming, { recursive: true });
const server = await startHsyncd(work, data, incoming);

try {
  // One untimed pull so Deno's caches are warm.
  const warm = await dataFile(
    parts.includes("b") ? SIZE_B : parts.includes("a") ? SIZE_A : SIZE_C,
  );
  await runToEnd(server, warm.path, join(outs, "warm.bin"), clientDir);
  await Deno.remove(join(outs, "warm.bin"));

  if (parts.includes("a")) {
    const src = await dataFile(SIZE_A);
    const rows: string[] = [];
    const shares: number[] = [];
    for (let i = 0; i < RUNS_A; i++) {
      const out = join(outs, `a-${i}.bin`);
      const part = partPathFor(out);
      const c = spawnClient(server, src.path, out, clientDir);
      const t0 = performance.now();
      while (await writtenBytes(part, SIZE_A) < KILL_AT * SIZE_A) {
        if (performance.now() - t0 > 600_000) {
          throw new Error("part a: no progress");
        }
        await new Promise((r) => setTimeout(r, 2));
      }
      c.child.kill("SIGKILL");
      await c.status;
      await c.stderr;
      const arrived = await writtenBytes(part, SIZE_A);
      const kept = await recorded(out);
      // Lines of the killed run reach the log within a second.
      await new Promise((r) => setTimeout(r, 1500));
      const offset = await logSize(server.log);
      await runToEnd(server, src.path, out, clientDir);
      const fetched = await servedSince(server.log, offset);
      const ok = await sha256File(out) === src.sha &&
        (await leftovers(outs)).length === 0;
      if (!ok) failures++;
      // Bytes that had arrived before the kill and came again in the rerun.
      const again = fetched - (SIZE_A - arrived);
      shares.push(again / arrived);
      rows.push(
        `| ${i + 1} | ${mib(arrived)} (${pct(arrived / SIZE_A)}) | ${
          mib(kept.flushed)
        } + ${mib(kept.unflushed)} | ${mib(fetched)} | ${mib(again)} | ${
          pct(again / arrived)
        } | ${ok ? "yes" : "NO"} |`,
      );
      await Deno.remove(out).catch(() => {});
      await syncDisks();
    }
    report.push(
      `### a: SIGKILL at ${pct(KILL_AT)} of a ${mib(SIZE_A)} file, then rerun`,
      "",
      "| run | on disk at the kill | journal: flushed + unflushed | rerun fetched | fetched again | again / arrived | byte-identical |",
      "| --: | --: | --: | --: | --: | --: | --- |",
      ...rows,
      "",
      `median fetched again: ${
        pct(median(shares))
      } of what had arrived (target at most 25%)`,
      "",
    );
    console.log(report.slice(-rows.length - 6).join("\n"));
  }

  if (parts.includes("b")) {
    const src = await dataFile(SIZE_B);
    // How long one whole pull takes, so kills spread over all of it (start-up included).
    const t0 = performance.now();
    await runToEnd(server, src.path, join(outs, "b-time.bin"), clientDir);
    const full = performance.now() - t0;
    await Deno.remove(join(outs, "b-time.bin"));
    let identical = 0;
    let corrupt = 0;
    let stray = 0;
    let placedBeforeKill = 0;
    const againShares: number[] = [];
    const lost: number[] = [];
    let arrivedAll = 0;
    const started = performance.now();
    for (let i = 0; i < CYCLES; i++) {
      const out = join(outs, "b.bin");
      const part = partPathFor(out);
      const c = spawnClient(server, src.path, out, clientDir);
      const delay = Math.random() * full * 1.1;
      await Promise.race([
        new Promise((r) => setTimeout(r, delay)),
        c.status,
      ]);
      try {
        c.child.kill("SIGKILL");
      } catch {
        // it finished first
      }
      await c.status;
      await c.stderr;
      const arrived = await writtenBytes(part, SIZE_B);
      const journal = await recorded(out);
      const kept = journal.flushed + journal.unflushed;
      if (await exists(out)) {
        // A final name before the rerun must already hold the whole file.
        placedBeforeKill++;
        if (await sha256File(out) !== src.sha) corrupt++;
      } else if (arrived > 0) {
        againShares.push((arrived - kept) / arrived);
        lost.push(Math.max(0, arrived - kept));
        arrivedAll += arrived;
      }
      await runToEnd(server, src.path, out, clientDir);
      if (await sha256File(out) === src.sha) identical++;
      else corrupt++;
      if ((await leftovers(outs)).length > 0) stray++;
      await Deno.remove(out);
      if ((i + 1) % 10 === 0) {
        console.log(
          `[b] ${
            i + 1
          }/${CYCLES} cycles, ${identical} identical, ${corrupt} corrupt, ${stray} with stray files`,
        );
      }
    }
    if (identical !== CYCLES || corrupt > 0 || stray > 0) failures++;
    report.push(
      `### b: ${CYCLES} kill-and-resume cycles on a ${mib(SIZE_B)} file`,
      "",
      `- kill at a uniformly random moment in [0, 1.1 x ${
        (full / 1000).toFixed(2)
      } s] (one whole pull, start-up included), then rerun`,
      `- byte-identical results: ${identical}/${CYCLES}; corrupt files: ${corrupt}; cycles leaving a part, journal or temporary file: ${stray}`,
      `- kills after the file was already placed: ${placedBeforeKill} (each checked byte-identical before the rerun)`,
      `- bytes on disk at the kill that the journal did not record (fetched again), over the ${againShares.length} kills mid-transfer: median ${
        againShares.length ? pct(median(againShares)) : "-"
      } of what had arrived, largest ${
        lost.length ? mib(Math.max(...lost)) : "-"
      }, in all ${
        arrivedAll ? pct(lost.reduce((a, b) => a + b, 0) / arrivedAll) : "-"
      } of the bytes that had arrived`,
      `- ${((performance.now() - started) / 1000).toFixed(0)} s in all`,
      "",
    );
    console.log(report.slice(-8).join("\n"));
  }

  if (parts.includes("c")) {
    const src = await dataFile(SIZE_C);
    const config = await loadConfig({ defaults, hsyncDir: clientDir });
    const settings = clientSettings(config, "hscp");
    const times: Record<"journal" | "none", number[]> = {
      journal: [],
      none: [],
    };
    for (let i = 0; i < RUNS_C; i++) {
      const order: Array<"journal" | "none"> = i % 2 === 0
        ? ["journal", "none"]
        : ["none", "journal"];
      for (const variant of order) {
        const out = join(outs, `c-${variant}.bin`);
        await syncDisks();
        const t0 = performance.now();
        const summary = await pull({
          baseUrl: `http://127.0.0.1:${server.port}`,
          remotePath: src.path,
          localPath: out,
          settings,
          parallelFiles: 8,
          journal: variant === "journal",
        });
        const seconds = (performance.now() - t0) / 1000;
        if (summary.files !== 1 || await sha256File(out) !== src.sha) {
          failures++;
          console.log(`[c] ${variant}: wrong result`);
        }
        times[variant].push(seconds);
        console.log(
          `[c] run ${i + 1} ${variant}: ${seconds.toFixed(3)} s, ${
            (SIZE_C / seconds / 1e6).toFixed(1)
          } MB/s`,
        );
        await Deno.remove(out);
      }
    }
    const withJ = SIZE_C / median(times.journal) / 1e6;
    const without = SIZE_C / median(times.none) / 1e6;
    report.push(
      `### c: journal overhead, one ${
        mib(SIZE_C)
      } file (workload A), ${RUNS_C} interleaved runs each`,
      "",
      "| variant | median s | MB/s | runs (s) |",
      "| --- | --: | --: | --- |",
      `| journal (default) | ${median(times.journal).toFixed(3)} | ${
        withJ.toFixed(1)
      } | ${times.journal.map((t) => t.toFixed(2)).join(", ")} |`,
      `| journal off | ${median(times.none).toFixed(3)} | ${
        without.toFixed(1)
      } | ${times.none.map((t) => t.toFixed(2)).join(", ")} |`,
      "",
      `throughput cost of the journal: ${
        pct(1 - withJ / without)
      } (target at most 5%; journal saves and any flushes they started included)`,
      "",
    );
    console.log(report.slice(-9).join("\n"));
  }
  if (parts.includes("d")) {
    const src = await dataFile(SIZE_A);
    const rows: string[] = [];
    const shares: number[] = [];
    for (let i = 0; i < RUNS_A; i++) {
      const remote = join(incoming, `d-${i}.bin`);
      // Counts the request bytes of each run (headers included: a few KiB).
      await using proxy = startFaultProxy(
        server.port,
        () => ({ kind: "none" }),
      );
      const args = hsyncPushArgs(proxy.port, src.path, remote);
      const spawn = () =>
        new Deno.Command(Deno.execPath(), {
          args,
          cwd: REPO,
          env: { HSYNC_DIR: clientDir, NO_COLOR: "1" },
          stdin: "null",
          stdout: "null",
          stderr: "piped",
        }).spawn();
      const killed = spawn();
      const t0 = performance.now();
      while (proxy.bytesUpstream < KILL_AT * SIZE_A) {
        if (performance.now() - t0 > 600_000) {
          throw new Error("part d: no progress");
        }
        await new Promise((r) => setTimeout(r, 2));
      }
      killed.kill("SIGKILL");
      await killed.output();
      const sent = proxy.bytesUpstream;
      // What the server kept: its status, once it has flushed what arrived.
      await new Promise((r) => setTimeout(r, 1000));
      const status = await fetch(
        `http://127.0.0.1:${server.port}/v1/upload?path=${
          encodeURIComponent(remote)
        }`,
      );
      const held = status.ok
        ? ((await status.json()).held as Array<[number, number]>)
          .reduce((n, [a, b]) => n + b - a, 0)
        : (await status.body?.cancel(), 0);
      const before = proxy.bytesUpstream;
      const rerun = await spawn().output();
      if (rerun.code !== 0) {
        throw new Error(
          `hsync --push exited with ${rerun.code}: ${
            new TextDecoder().decode(rerun.stderr).trim()
          }`,
        );
      }
      const pushed = proxy.bytesUpstream - before;
      const ok = await sha256File(remote) === src.sha &&
        (await leftovers(incoming)).length === 0;
      if (!ok) failures++;
      // Bytes that had been sent before the kill and went again in the rerun.
      const again = Math.max(0, pushed - (SIZE_A - sent));
      shares.push(again / sent);
      rows.push(
        `| ${i + 1} | ${mib(sent)} (${pct(sent / SIZE_A)}) | ${mib(held)} | ${
          mib(pushed)
        } | ${mib(again)} | ${pct(again / sent)} | ${ok ? "yes" : "NO"} |`,
      );
      await Deno.remove(remote).catch(() => {});
      await syncDisks();
    }
    report.push(
      `### d: a push killed with SIGKILL at ${pct(KILL_AT)} of a ${
        mib(SIZE_A)
      } file, then rerun`,
      "",
      "| run | sent before the kill | held by hsyncd | rerun sent | sent again | again / sent before | byte-identical |",
      "| --: | --: | --: | --: | --: | --: | --- |",
      ...rows,
      "",
      `median sent again: ${
        pct(median(shares))
      } of what had been sent (target at most 25%)`,
      "",
    );
    console.log(report.slice(-rows.length - 6).join("\n"));
  }
} finally {
  await server.stop();
  if (!opts.keep && opts.dir === undefined) {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

console.log("\n## hsync resume benchmark\n");
console.log(report.join("\n"));
Deno.exit(failures > 0 ? 2 : 0);
