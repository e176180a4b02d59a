// deno-lint-ignore-file no-console
/**
 * Benchmark of `hsync --sync` against the real hsyncd on loopback: latency
 * from an append on the server to the bytes on the client's disk, CPU of
 * both sides while following many quiet files, and many files appended
 * concurrently (byte-identical at the end, nothing lost or repeated).
 *
 *   deno run -q -P=bench bench/follow.ts [--only latency,idle,burst]
 *     [--appends 200] [--idle-files 10000] [--idle-seconds 60]
 *     [--writers 50] [--rate 1000] [--burst-seconds 30] [--keep]
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { RUNTIME_FLAGS } from "../scripts/compile.ts";
import { freePort, hsyncdArgs, REPO, sleep } from "./_common.ts";

const enc = new TextEncoder();

interface Args {
  only: Set<string>;
  appends: number;
  idleFiles: number;
  idleSeconds: number;
  writers: number;
  rate: number;
  burstSeconds: number;
  keep: boolean;
}

function parse(): Args {
  const { values: v } = parseArgs({
    args: Deno.args,
    options: {
      only: { type: "string", default: "latency,idle,burst" },
      appends: { type: "string", default: "200" },
      "idle-files": { type: "string", default: "10000" },
      "idle-seconds": { type: "string", default: "60" },
      writers: { type: "string", default: "50" },
      rate: { type: "string", default: "1000" },
      "burst-seconds": { type: "string", default: "30" },
      keep: { type: "boolean", default: false },
      help: { type: "boolean", short: "h" },
    },
  });
  if (v.help) {
    console.log(
      "Usage: deno run -q -P=bench bench/follow.ts [--only latency,idle,burst] [--appends N] [--idle-files N] [--idle-seconds S] [--writers N] [--rate LINES_PER_S] [--burst-seconds S] [--keep]",
    );
    Deno.exit(0);
  }
  const num = (name: string, text: string, min: number) => {
    const n = Number(text);
    if (!Number.isFinite(n) || n < min) {
      console.error(`follow bench: invalid --${name} ${JSON.stringify(text)}`);
      Deno.exit(1);
    }
    return n;
  };
  const only = new Set(v.only!.split(",").map((s) => s.trim()));
  for (const o of only) {
    if (!["latency", "idle", "burst"].includes(o)) {
      console.error(
        `follow bench: unknown part ${JSON.stringify(o)} in --only`,
      );
      Deno.exit(1);
    }
  }
  return {
    only,
    appends: num("appends", v.appends!, 1),
    idleFiles: num("idle-files", v["idle-files"]!, 1),
    idleSeconds: num("idle-seconds", v["idle-seconds"]!, 1),
    writers: num("writers", v.writers!, 1),
    rate: num("rate", v.rate!, 1),
    burstSeconds: num("burst-seconds", v["burst-seconds"]!, 1),
    keep: v.keep!,
  };
}

// ---------------------------------------------------------------- processes

interface Proc {
  process: Deno.ChildProcess;
  stderr(): string;
  stop(): Promise<void>;
}

const live = new Set<Proc>();

function spawn(args: string[], env: Record<string, string>): Proc {
  const process = new Deno.Command(Deno.execPath(), {
    args,
    cwd: REPO,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let err = "";
  const dec = new TextDecoder();
  const drained = (async () => {
    for await (const c of process.stderr) {
      err += dec.decode(c, { stream: true });
      if (err.length > 1_000_000) err = err.slice(-100_000);
    }
  })();
  const proc: Proc = {
    process,
    stderr: () => err,
    async stop() {
      live.delete(proc);
      try {
        process.kill("SIGTERM");
      } catch {
        // gone
      }
      const t = setTimeout(() => {
        try {
          process.kill("SIGKILL");
        } catch {
          // gone
        }
      }, 15_000);
      await process.status;
      clearTimeout(t);
      await drained;
    },
  };
  live.add(proc);
  return proc;
}

async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  ms: number,
) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await sleep(20);
  }
}

interface Setup {
  dir: string;
  data: string;
  out: string;
  server: Proc;
  client?: Proc;
  port: number;
}

async function startPair(dir: string, data: string): Promise<Setup> {
  const port = freePort();
  await Deno.writeTextFile(
    join(dir, "server.ini"),
    `[hsyncd]\nOnly_allowed_path = ${data}\n`,
  );
  await Deno.mkdir(join(dir, "sdir"), { recursive: true });
  const server = spawn(
    hsyncdArgs(port, join(dir, "server.ini")),
    { HSYNC_DIR: join(dir, "sdir") },
  );
  await until("hsyncd", async () => {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/v1/health`);
      await r.body?.cancel();
      return r.ok;
    } catch {
      return false;
    }
  }, 20_000);
  return { dir, data, out: join(dir, "out"), server, port };
}

async function startFollower(s: Setup, remote: string): Promise<Proc> {
  await Deno.mkdir(join(s.dir, "cdir"), { recursive: true });
  const client = spawn(
    [
      "run",
      "-q",
      "-P=hsync",
      ...RUNTIME_FLAGS.hsync,
      "main_client.ts",
      "--sync",
      "-p",
      String(s.port),
      "-i",
      remote,
      "-o",
      s.out,
    ],
    { HSYNC_DIR: join(s.dir, "cdir") },
  );
  s.client = client;
  await until(
    "the follower",
    () => client.stderr().includes("following into"),
    300_000,
  );
  return client;
}

async function stopPair(s: Setup) {
  await s.client?.stop();
  await s.server.stop();
}

/** utime + stime of a process, in seconds (read with `cat` from /proc). */
async function cpuSeconds(pid: number, tick: number): Promise<number> {
  const out = await new Deno.Command("cat", {
    args: [`/proc/${pid}/stat`],
    stdout: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  // Fields after the command name (which may hold spaces) start after ") ".
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / tick;
}

async function clockTick(): Promise<number> {
  try {
    const out = await new Deno.Command("getconf", {
      args: ["CLK_TCK"],
      stdout: "piped",
    }).output();
    const n = Number(new TextDecoder().decode(out.stdout).trim());
    return n > 0 ? n : 100;
  } catch {
    return 100;
  }
}

function percentile(sorted: number[], p: number): number {
  const i = Math.min(
    sorted.length - 1,
    Math.max(0, Math.ceil(p / 100 * sorted.length) - 1),
  );
  return sorted[i];
}

// ---------------------------------------------------------------- parts

async function latency(root: string, args: Args): Promise<string[]> {
  const dir = join(root, "latency");
  const data = join(dir, "data");
  await Deno.mkdir(data, { recursive: true });
  const log = join(data, "run.log");
  await Deno.writeTextFile(log, "start\n");
  const s = await startPair(dir, data);
  try {
    await startFollower(s, data);
    const local = join(s.out, "run.log");
    await until("the first copy", () => sizeOf(local) === 6, 30_000);
    // The client's writes are seen through inotify on its directory, so the
    // observer costs nothing while it waits.
    const watcher = Deno.watchFs(s.out);
    let wake: () => void = () => {};
    (async () => {
      for await (const _ of watcher) wake();
    })().catch(() => {});
    const file = Deno.openSync(log, { append: true });
    let size = 6;
    const results: number[] = [];
    const warmup = 5;
    for (let i = 0; i < args.appends + warmup; i++) {
      await sleep(20 + Math.random() * 30);
      const line = enc.encode(
        `${new Date().toISOString()} append ${i} ${"x".repeat(40)}\n`,
      );
      const t0 = performance.now();
      file.writeSync(line);
      size += line.length;
      while (sizeOf(local) < size) {
        await new Promise<void>((r) => {
          const t = setTimeout(r, 5);
          wake = () => {
            clearTimeout(t);
            r();
          };
        });
        if (performance.now() - t0 > 10_000) {
          throw new Error(`append ${i} did not arrive in 10 s`);
        }
      }
      if (i >= warmup) results.push(performance.now() - t0);
    }
    file.close();
    watcher.close();
    const same = await sha256(log) === await sha256(local);
    results.sort((a, b) => a - b);
    return [
      `| latency | ${args.appends} appends of one line, 20-50 ms apart, one file | p50 ${
        percentile(results, 50).toFixed(1)
      } ms, p90 ${percentile(results, 90).toFixed(1)} ms, p99 ${
        percentile(results, 99).toFixed(1)
      } ms, max ${results[results.length - 1].toFixed(1)} ms | ${
        same ? "identical" : "DIFFERENT"
      } |`,
    ];
  } finally {
    await stopPair(s);
  }
}

async function idle(root: string, args: Args): Promise<string[]> {
  const dir = join(root, "idle");
  const data = join(dir, "data");
  const perDir = 100;
  for (let i = 0; i < args.idleFiles; i++) {
    const d = join(data, `d${Math.floor(i / perDir)}`);
    if (i % perDir === 0) await Deno.mkdir(d, { recursive: true });
    Deno.writeTextFileSync(join(d, `f${i}.log`), `quiet file ${i}\n`);
  }
  const s = await startPair(dir, data);
  try {
    const client = await startFollower(s, data);
    await sleep(3000);
    const tick = await clockTick();
    const c0 = await cpuSeconds(client.process.pid, tick);
    const s0 = await cpuSeconds(s.server.process.pid, tick);
    const t0 = performance.now();
    await sleep(args.idleSeconds * 1000);
    const secs = (performance.now() - t0) / 1000;
    const c1 = await cpuSeconds(client.process.pid, tick);
    const s1 = await cpuSeconds(s.server.process.pid, tick);
    const pct = (d: number) => (100 * d / secs).toFixed(2);
    return [
      `| idle | ${args.idleFiles} quiet files in ${
        Math.ceil(args.idleFiles / perDir)
      } directories, ${Math.round(secs)} s | client ${
        pct(c1 - c0)
      }% of a core (${(c1 - c0).toFixed(2)} s CPU), hsyncd ${pct(s1 - s0)}% (${
        (s1 - s0).toFixed(2)
      } s CPU) | - |`,
    ];
  } finally {
    await stopPair(s);
  }
}

async function burst(root: string, args: Args): Promise<string[]> {
  const dir = join(root, "burst");
  const data = join(dir, "data");
  await Deno.mkdir(data, { recursive: true });
  const paths = Array.from(
    { length: args.writers },
    (_, i) => join(data, `w${i}.log`),
  );
  for (const p of paths) await Deno.writeTextFile(p, "");
  const s = await startPair(dir, data);
  try {
    const client = await startFollower(s, data);
    const tick = await clockTick();
    const c0 = await cpuSeconds(client.process.pid, tick);
    const handles = paths.map((p) => Deno.openSync(p, { append: true }));
    const written = new Array(args.writers).fill(0);
    const pad = "y".repeat(32);
    const started = performance.now();
    let maxLag = 0;
    let lastSample = started;
    while (true) {
      const elapsed = performance.now() - started;
      if (elapsed >= args.burstSeconds * 1000) break;
      const due = Math.floor(elapsed * args.rate / 1000);
      handles.forEach((h, i) => {
        let text = "";
        for (; written[i] < due; written[i]++) {
          text += `w${i} ${written[i]} ${pad}\n`;
        }
        if (text !== "") h.writeSync(enc.encode(text));
      });
      if (performance.now() - lastSample > 1000) {
        lastSample = performance.now();
        let lag = 0;
        paths.forEach((p, i) =>
          lag += sizeOf(p) - sizeOf(join(s.out, `w${i}.log`))
        );
        maxLag = Math.max(maxLag, lag);
      }
      await sleep(10);
    }
    handles.forEach((h) => h.close());
    const stoppedWriting = performance.now();
    await until(
      "the follower to catch up",
      () =>
        paths.every((p, i) => sizeOf(p) === sizeOf(join(s.out, `w${i}.log`))),
      120_000,
    );
    const catchUp = performance.now() - stoppedWriting;
    const c1 = await cpuSeconds(client.process.pid, tick);
    let identical = 0;
    let inOrder = 0;
    for (let i = 0; i < paths.length; i++) {
      const local = join(s.out, `w${i}.log`);
      if (await sha256(paths[i]) === await sha256(local)) identical++;
      const lines = (await Deno.readTextFile(local)).split("\n");
      lines.pop();
      if (
        lines.length === written[i] &&
        lines.every((l, n) => l.startsWith(`w${i} ${n} `))
      ) inOrder++;
    }
    const total = written.reduce((a, b) => a + b, 0);
    const secs = (stoppedWriting - started) / 1000;
    return [
      `| burst | ${args.writers} files x ${args.rate} lines/s for ${
        Math.round(secs)
      } s (${total} lines, ${
        (paths.reduce((a, p) => a + sizeOf(p), 0) / 1048576).toFixed(1)
      } MiB) | caught up ${
        catchUp.toFixed(0)
      } ms after the last write; largest lag seen ${
        (maxLag / 1024).toFixed(0)
      } KiB; client CPU ${
        (100 * (c1 - c0) / ((performance.now() - started) / 1000)).toFixed(0)
      }% of a core | ${identical}/${paths.length} identical, ${inOrder}/${paths.length} every line once in order |`,
    ];
  } finally {
    await stopPair(s);
  }
}

function sizeOf(path: string): number {
  try {
    return Deno.statSync(path).size;
  } catch {
    return -1;
  }
}

async function sha256(path: string): Promise<string> {
  return createHash("sha256").update(await Deno.readFile(path)).digest("hex");
}

// ---------------------------------------------------------------- main

if (import.meta.main) {
  const args = parse();
  const root = await Deno.makeTempDir({ prefix: "hsync-follow-bench-" });
  const onSignal = () => {
    for (const p of live) {
      try {
        p.process.kill("SIGKILL");
      } catch {
        // gone
      }
    }
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  const rows: string[] = [];
  let failed = false;
  try {
    for (
      const [name, part] of [["latency", latency], ["idle", idle], [
        "burst",
        burst,
      ]] as const
    ) {
      if (!args.only.has(name)) continue;
      console.error(`follow bench: ${name}...`);
      try {
        rows.push(...await part(root, args));
      } catch (error) {
        failed = true;
        rows.push(
          `| ${name} | - | FAILED: ${
            error instanceof Error ? error.message : error
          } | - |`,
        );
      }
    }
  } finally {
    for (const p of [...live]) await p.stop();
    if (!args.keep) {
      await Deno.remove(root, { recursive: true }).catch(() => {});
    } else console.error(`follow bench: data kept in ${root}`);
  }
  console.log(
    `hsync --sync on ${Deno.hostname()}, ${navigator.hardwareConcurrency} cores, ${
      new Date().toISOString()
    }\n`,
  );
  console.log("| part | workload | result | check |");
  console.log("| ---- | -------- | ------ | ----- |");
  for (const row of rows) console.log(row);
  Deno.exit(failed ? 2 : 0);
}
