// Memory serving many clients, hsyncd against an rsync daemon, same clients, same files, same run
// (`deno run -q -P=bench bench/memory.ts`); see bench/README.md.
// deno-lint-ignore-file no-console
import { parseArgs } from "node:util";
import { join } from "node:path";
import {
  ensureCommand,
  fmtSize,
  hsyncPullArgs,
  live,
  manifestOf,
  median,
  type Relay,
  REPO,
  run,
  type Server,
  setDefaultTimeout,
  startHsyncd,
  startRelay,
  startRsyncd,
  stopServer,
  tail,
  verify,
  writeRandomFile,
} from "./_common.ts";

const HELP = `usage: deno run -q -P=bench bench/memory.ts [options]

N clients at once pull the same tree (4 files of 8 MiB, 200 of 16 KiB) from
hsyncd and, in the same run, from an rsync daemon; the memory of each server
(all its processes) is sampled while they do.

  --clients N     clients at once against each server (default 64)
  --runs N        rounds, each server once per round, order alternated (default 1)
  --every MS      sampling interval (default 50)
  --rtt MS        clients reach each server through a relay process
                  (bench/_link_main.ts) with this round trip (default 20;
                  0: straight to the server)
  --window KiB    the relay's window per connection and direction (default
                  64: about 3 MB/s per connection at 20 ms), so that each
                  client lasts long enough for all N to overlap
  --out DIR       write the clients' copies under DIR (e.g. a tmpfs; default
                  the temporary directory under /var/tmp)
  --keep          keep the temporary directory
  -h, --help      this text
Writes bench/memory_results.md; exits 2 when a client failed.`;

const { values: opts } = parseArgs({
  options: {
    clients: { type: "string", default: "64" },
    runs: { type: "string", default: "1" },
    every: { type: "string", default: "50" },
    rtt: { type: "string", default: "20" },
    window: { type: "string", default: "64" },
    out: { type: "string" },
    keep: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (opts.help) {
  console.log(HELP);
  Deno.exit(0);
}
function count(flag: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`memory: --${flag} "${value}": expected a positive integer`);
    Deno.exit(1);
  }
  return n;
}
const CLIENTS = count("clients", opts.clients);
const RUNS = count("runs", opts.runs);
const EVERY_MS = count("every", opts.every);
const RTT_MS = opts.rtt === "0" ? 0 : count("rtt", opts.rtt);
const WINDOW_KIB = count("window", opts.window);
setDefaultTimeout(1800);
const RESULTS_MD = join(REPO, "bench", "memory_results.md");

/** What bench/_pss_sampler.ts prints (KiB, summed over the server's processes). */
interface PssPeak {
  /** The sample with the largest PSS sum, and its make-up. */
  peak: {
    pss: number;
    pssAnon: number;
    pssFile: number;
    pssShmem: number;
    /** RSS summed at that sample: shared pages counted once per process. */
    rss: number;
    processes: number;
  };
  rssMax: number;
  processesMax: number;
  /** Most clients (processes sharing a socket count once, from `ss -p`) connected at once. */
  clientsMax: number;
  connectionsMax: number;
  samples: number;
}

/** Starts the sampler on `pid` and its descendants; `stop()` closes its stdin and reads its answer. */
function startSampler(pid: number, port: number): { stop(): Promise<PssPeak> } {
  const child = new Deno.Command("deno", {
    args: [
      "run",
      "-q",
      "-A",
      join(REPO, "bench", "_pss_sampler.ts"),
      String(pid),
      String(port),
      String(EVERY_MS),
    ],
    cwd: REPO,
    env: { NO_COLOR: "1" },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  live.add(child);
  return {
    async stop() {
      await child.stdin.close();
      const out = await child.output();
      live.delete(child);
      const text = new TextDecoder().decode(out.stdout).trim();
      if (out.code !== 0 || text === "") {
        throw new Error(
          `sampler failed: exit ${out.code} ${
            tail(new TextDecoder().decode(out.stderr))
          }`,
        );
      }
      return JSON.parse(text) as PssPeak;
    },
  };
}

const mib = (kib: number) => (kib / 1024).toFixed(1);

interface Round {
  tool: "hsyncd" | "rsyncd";
  idle: PssPeak;
  busy: PssPeak;
  ok: number;
  wall: number;
}

async function main(): Promise<number> {
  for (const [cmd, pkg] of [["rsync", "rsync"], ["ss", "iproute2"]]) {
    const why = await ensureCommand(cmd, pkg);
    if (why) {
      console.error(`memory: ${cmd} is required: ${why}`);
      return 1;
    }
  }
  const tmp = await Deno.makeTempDir({
    dir: "/var/tmp",
    prefix: "hsync-memory-",
  });
  let outRoot = join(tmp, "out");
  if (opts.out !== undefined) {
    try {
      outRoot = await Deno.makeTempDir({
        dir: opts.out,
        prefix: "hsync-memory-out-",
      });
    } catch (error) {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
      console.error(`memory: --out ${opts.out}: ${(error as Error).message}`);
      return 1;
    }
  }
  const servers: Server[] = [];
  const onSignal = () => {
    for (const c of live) c.kill("SIGTERM");
    for (const s of servers) s.child.kill("SIGTERM");
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  let failed = false;
  try {
    const data = join(tmp, "data");
    const src = join(data, "tree");
    // Per client: 4 files of 8 MiB (ranges) and 200 files of 16 KiB (bundles), as in issue 23.
    await Deno.mkdir(join(src, "small"), { recursive: true });
    for (let i = 0; i < 4; i++) {
      await writeRandomFile(join(src, `big${i}.bin`), 8 * 1024 * 1024);
    }
    for (let i = 0; i < 200; i++) {
      await writeRandomFile(join(src, "small", `f${i}.bin`), 16 * 1024);
    }
    const manifest = await manifestOf(src);
    const perClient = [...manifest.values()].reduce((a, f) => a + f.size, 0);
    await run("sync", []);
    const hsyncd = await startHsyncd(tmp, data, "hsyncd-memory");
    servers.push(hsyncd);
    const rsyncd = await startRsyncd(tmp, data);
    servers.push(rsyncd);
    // The port each tool's clients use: a relay's, or the server's own.
    const portOf = new Map<Server, number>();
    for (
      const [name, server] of [["hsyncd", hsyncd], ["rsyncd", rsyncd]] as const
    ) {
      if (RTT_MS === 0) {
        portOf.set(server, server.port);
        continue;
      }
      const relay: Relay = await startRelay(
        tmp,
        `relay-${name}`,
        server.port,
        RTT_MS / 2,
        WINDOW_KIB * 1024,
      );
      servers.unshift(relay);
      portOf.set(server, relay.port);
    }
    console.log(
      `[setup] hsyncd pid ${hsyncd.child.pid}, rsync daemon pid ${rsyncd.child.pid}; ` +
        `${CLIENTS} clients of ${fmtSize(perClient)} each`,
    );
    // One untimed pull fills Deno's caches, so start-up is the same for every client.
    const warm = await run(
      "deno",
      hsyncPullArgs(hsyncd.port, join(src, "small", "f0.bin"), join(tmp, "w")),
      { cwd: REPO, env: hsyncd.env },
    );
    if (warm.code !== 0) console.log(`[setup] warm-up: ${tail(warm.stderr)}`);

    const rounds: Round[] = [];
    for (let r = 0; r < RUNS; r++) {
      const order: Round["tool"][] = r % 2 === 0
        ? ["hsyncd", "rsyncd"]
        : ["rsyncd", "hsyncd"];
      for (const tool of order) {
        const server = tool === "hsyncd" ? hsyncd : rsyncd;
        const port = portOf.get(server)!;
        // Idle: a short sampling with no client.
        const idleSampler = startSampler(server.child.pid, port);
        await new Promise((res) => setTimeout(res, 1000));
        const idle = await idleSampler.stop();
        const sampler = startSampler(server.child.pid, port);
        await new Promise((res) => setTimeout(res, 300));
        console.log(`[${tool}] round ${r + 1}: ${CLIENTS} clients at once`);
        const t0 = performance.now();
        const outs = Array.from(
          { length: CLIENTS },
          (_, i) => join(outRoot, `${tool}-${r}-${i}`),
        );
        const results = await Promise.all(
          outs.map((out) =>
            tool === "hsyncd"
              ? run("deno", hsyncPullArgs(port, src, out), {
                cwd: REPO,
                env: hsyncd.env,
              })
              : run("rsync", [
                "-a",
                `rsync://127.0.0.1:${port}/bench/tree/`,
                `${out}/`,
              ])
          ),
        );
        const wall = (performance.now() - t0) / 1000;
        const busy = await sampler.stop();
        let ok = 0;
        for (let i = 0; i < CLIENTS; i++) {
          const bad = results[i].code !== 0
            ? `exit ${results[i].code} ${tail(results[i].stderr)}`
            : await verify(outs[i], manifest);
          if (bad) console.log(`[${tool}] client ${i}: FAILED ${bad}`);
          else ok++;
        }
        if (ok !== CLIENTS) failed = true;
        for (const o of outs) {
          await Deno.remove(o, { recursive: true }).catch(() => {});
        }
        await run("sync", []);
        console.log(
          `[${tool}] ${ok}/${CLIENTS} ok in ${wall.toFixed(1)} s; peak PSS ${
            mib(busy.peak.pss)
          } MiB (anon ${mib(busy.peak.pssAnon)}, file ${
            mib(busy.peak.pssFile)
          }) over ${busy.peak.processes} process(es), RSS summed then ${
            mib(busy.peak.rss)
          } MiB; ${busy.clientsMax} clients and ${busy.connectionsMax} connections at most; ${busy.samples} samples`,
        );
        rounds.push({ tool, idle, busy, ok, wall });
      }
    }

    const lines = [
      "# Memory serving many clients",
      "",
      `- date: ${new Date().toISOString().replace(/\.\d+Z$/, "Z")}`,
      `- machine: ${
        (await run("nproc", [], { stdout: true })).stdout.trim()
      } CPUs, kernel ${
        (await run("uname", ["-r"], { stdout: true })).stdout.trim()
      }; loopback`,
      `- command: deno run -q -P=bench bench/memory.ts ${Deno.args.join(" ")}`
        .trimEnd(),
      `- each of ${CLIENTS} clients at once pulls 4 files of 8 MiB and 200 of 16 KiB (${
        fmtSize(perClient)
      }): \`hsync\` (deno run, no configuration file) from hsyncd, \`rsync -a\` from an rsync daemon`,
      RTT_MS === 0
        ? "- clients connect straight to the server (loopback)"
        : `- clients reach each server through a relay process (bench/_link_main.ts): round trip ${RTT_MS} ms, ` +
          `window ${WINDOW_KIB} KiB per connection and direction, so each client lasts long enough that all overlap`,
      "",
      "| server | round | clients ok | clients connected at once (most) | connections (most) | wall s | idle PSS MiB | peak PSS MiB | of it anon / file / shmem MiB | RSS summed then MiB | processes then |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
      ...rounds.map((x, i) =>
        `| ${x.tool} | ${
          Math.floor(i / 2) + 1
        } | ${x.ok}/${CLIENTS} | ${x.busy.clientsMax} | ${x.busy.connectionsMax} | ${
          x.wall.toFixed(1)
        } | ${mib(x.idle.peak.pss)} | ${mib(x.busy.peak.pss)} | ${
          mib(x.busy.peak.pssAnon)
        } / ${mib(x.busy.peak.pssFile)} / ${mib(x.busy.peak.pssShmem)} | ${
          mib(x.busy.peak.rss)
        } | ${x.busy.peak.processes} |`
      ),
      "",
    ];
    for (let r = 0; r < RUNS; r++) {
      const h = rounds.find((x, i) => x.tool === "hsyncd" && i >> 1 === r)!;
      const s = rounds.find((x, i) => x.tool === "rsyncd" && i >> 1 === r)!;
      lines.push(
        `Round ${r + 1}: hsyncd / rsync daemon peak PSS ${
          (h.busy.peak.pss / s.busy.peak.pss).toFixed(2)
        }x (anonymous memory alone ${
          (h.busy.peak.pssAnon / s.busy.peak.pssAnon).toFixed(2)
        }x).`,
        "",
      );
    }
    if (RUNS > 1) {
      // The peak swings with the garbage collector's timing: one round says little.
      const peaks = (tool: string) =>
        rounds.filter((x) => x.tool === tool).map((x) => x.busy.peak.pss);
      const h = median(peaks("hsyncd"));
      const s = median(peaks("rsyncd"));
      lines.push(
        `Median over ${RUNS} rounds: hsyncd ${mib(h)} MiB, rsync daemon ${
          mib(s)
        } MiB of peak PSS: ${(h / s).toFixed(2)}x.`,
        "",
      );
    }
    lines.push(
      "PSS (proportional set size, `/proc/PID/smaps_rollup`) counts a page shared by k processes as 1/k in each: " +
        "summed over the rsync daemon and its forked children (one per client, found through the parent pid in " +
        "`/proc/*/stat`) it is what they take together, where summed RSS counts every shared page once per process. " +
        `Sampled every ${EVERY_MS} ms; the peak is the largest sum of one sample. File-backed pages (the program's ` +
        "code) are shared with the clients of the same program too (deno for hsync, rsync for rsync), so the " +
        "anonymous part (heaps, buffers) is the cleaner comparison. Clients connected at once: client processes " +
        "with a connection established to the server's port (`ss -tnp`, every 0.5 s; rsync's receiver and " +
        "generator, which share their socket, count once).",
    );
    await Deno.writeTextFile(RESULTS_MD, lines.join("\n") + "\n");
    await run("deno", ["fmt", "--quiet", RESULTS_MD], { cwd: REPO });
    console.log(`\n${await Deno.readTextFile(RESULTS_MD)}`);
    console.log(`[done] wrote ${RESULTS_MD}`);
    return failed ? 2 : 0;
  } finally {
    for (const s of servers) await stopServer(s);
    Deno.removeSignalListener("SIGINT", onSignal);
    if (opts.keep) console.log(`[cleanup] kept ${tmp} and ${outRoot}`);
    else {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
      await Deno.remove(outRoot, { recursive: true }).catch(() => {});
    }
  }
}

Deno.exit(await main());
