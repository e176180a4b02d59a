// deno-lint-ignore-file no-console
// Scale benchmark (`deno run -q -P=bench bench/scale.ts`): listing memory on a huge tree,
// files per second on many small files against rsync, and hsyncd's memory under many clients.
import { parseArgs } from "node:util";
import { join } from "node:path";
import {
  ensureCommand,
  fmtSize,
  hsyncPullArgs,
  live,
  manifestOf,
  median,
  REPO,
  run,
  sampleServer,
  type Server,
  setDefaultTimeout,
  startHsyncd,
  startRsyncd,
  stopServer,
  tail,
  verify,
  vmHWM,
  writeRandomFile,
} from "./_common.ts";

const HELP = `usage: deno run -q -P=bench bench/scale.ts [options]
  --entries N     entries of the tree listed (default 1000000)
  --small N       small files pulled by hsync and rsync (default 100000)
  --small-bytes N size of each small file (default 4096)
  --clients N     concurrent hsync clients against one hsyncd (default 64)
  --flat N        entries of one flat directory listed at once (default 150000)
  --listings N    concurrent listings of that directory (default 8)
  --runs N        runs per tool for --small, interleaved (default 3)
  --only LIST     list,small,clients,flat (default all)
  --keep          keep the temporary directory
Writes bench/scale_results.md.`;

const { values: opts } = parseArgs({
  options: {
    entries: { type: "string", default: "1000000" },
    small: { type: "string", default: "100000" },
    "small-bytes": { type: "string", default: "4096" },
    clients: { type: "string", default: "64" },
    flat: { type: "string", default: "150000" },
    listings: { type: "string", default: "8" },
    runs: { type: "string", default: "3" },
    only: { type: "string", default: "list,small,clients,flat" },
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
    console.error(`scale: --${flag} ${value}: expected a positive integer`);
    Deno.exit(64);
  }
  return n;
}
const ENTRIES = count("entries", opts.entries);
const SMALL = count("small", opts.small);
const SMALL_BYTES = count("small-bytes", opts["small-bytes"]);
const CLIENTS = count("clients", opts.clients);
const RUNS = count("runs", opts.runs);
const FLAT = count("flat", opts.flat);
const LISTINGS = count("listings", opts.listings);
const PARTS = opts.only.split(",").map((s) => s.trim());
for (const p of PARTS) {
  if (!["list", "small", "clients", "flat"].includes(p)) {
    console.error(`scale: --only ${opts.only}: unknown part "${p}"`);
    Deno.exit(64);
  }
}
setDefaultTimeout(3600);
const PER_DIR = 1000;
const RESULTS_MD = join(REPO, "bench", "scale_results.md");

/** `n` files of `size` random bytes in directories of PER_DIR; empty files when size is 0. */
async function makeTree(root: string, n: number, size: number): Promise<void> {
  const empty = new Uint8Array(0);
  for (let d = 0; d * PER_DIR < n; d++) {
    const dir = join(root, `d${String(d).padStart(4, "0")}`);
    Deno.mkdirSync(dir, { recursive: true });
    for (let i = d * PER_DIR; i < Math.min(n, (d + 1) * PER_DIR); i++) {
      const path = join(dir, `f${String(i).padStart(7, "0")}`);
      if (size === 0) Deno.writeFileSync(path, empty);
      else await writeRandomFile(path, size);
    }
  }
}

/** The pulling client under /usr/bin/time: wall seconds, peak RSS (KiB), exit code. */
async function timed(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ seconds: number; rssKiB: number; code: number; err: string }> {
  const out = await Deno.makeTempFile({ prefix: "scale-time-" });
  const r = await run("/usr/bin/time", ["-o", out, "-f", "%M", cmd, ...args], {
    cwd: REPO,
    env: { NO_COLOR: "1", ...env },
  });
  const text = await Deno.readTextFile(out);
  await Deno.remove(out);
  const rss = text.trim().split("\n").reverse().find((l) => /^\d+$/.test(l));
  return {
    seconds: r.seconds,
    rssKiB: Number(rss ?? 0),
    code: r.code,
    err: tail(r.stderr),
  };
}

/** Reads a streamed listing to its end, counting lines, without keeping it. */
async function countListing(port: number, path: string): Promise<number> {
  const r = await fetch(
    `http://127.0.0.1:${port}/v1/list?path=${encodeURIComponent(path)}`,
  );
  if (!r.ok || !r.body) throw new Error(`list ${path}: HTTP ${r.status}`);
  let lines = 0;
  for await (const chunk of r.body) {
    for (const b of chunk) if (b === 10) lines++;
  }
  return lines;
}

/**
 * `listings` listings of one directory read to the end at once while
 * `/v1/health` is asked every 50 ms: how long health waited at worst and at
 * the median, and how long the listings took.
 */
async function healthWhileListing(
  port: number,
  dir: string,
  listings: number,
): Promise<{ worstMs: number; medianMs: number; listSeconds: number }> {
  const t0 = performance.now();
  let done = 0;
  const all = Promise.all(
    Array.from(
      { length: listings },
      () => countListing(port, dir).finally(() => done++),
    ),
  );
  const waits: number[] = [];
  while (done < listings) {
    const a = performance.now();
    const r = await fetch(`http://127.0.0.1:${port}/v1/health`);
    await r.body?.cancel();
    waits.push(performance.now() - a);
    await new Promise((r) => setTimeout(r, 50));
  }
  await all;
  return {
    worstMs: Math.max(...waits),
    medianMs: median(waits),
    listSeconds: (performance.now() - t0) / 1000,
  };
}

const mib = (kib: number | null) =>
  kib === null ? "?" : (kib / 1024).toFixed(0);

async function main(): Promise<number> {
  for (const [cmd, pkg] of [["rsync", "rsync"], ["/usr/bin/time", "time"]]) {
    const why = await ensureCommand(cmd.replace("/usr/bin/", ""), pkg);
    if (why) console.log(`[setup] ${cmd}: ${why}`);
  }
  const tmp = await Deno.makeTempDir({
    dir: "/var/tmp",
    prefix: "hsync-scale-",
  });
  const servers: Server[] = [];
  const lines: string[] = [];
  let failed = false;
  const onSignal = () => {
    for (const c of live) c.kill("SIGTERM");
    for (const s of servers) s.child.kill("SIGTERM");
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  try {
    const info = (await run("uname", ["-r"], { stdout: true })).stdout.trim();
    const cpus = (await run("nproc", [], { stdout: true })).stdout.trim();
    lines.push(
      "# hsync scale benchmark",
      "",
      `- date: ${new Date().toISOString()}`,
      `- machine: ${cpus} CPUs, kernel ${info}; loopback; data under /var/tmp`,
      `- command: deno run -q -P=bench bench/scale.ts ${Deno.args.join(" ")}`
        .trimEnd(),
      "",
    );

    if (PARTS.includes("list")) {
      const root = join(tmp, "list");
      // Three sizes, listed smallest first: hsyncd's peak (VmHWM) can only
      // rise, so a flat peak from the middle size on is memory that does not
      // grow with the tree.
      const sizes = [
        ...new Set([
          Math.min(10_000, ENTRIES),
          Math.max(Math.min(10_000, ENTRIES), Math.round(ENTRIES / 4)),
          ENTRIES,
        ]),
      ];
      const t0 = performance.now();
      console.log(`[list] creating trees of ${sizes.join(", ")} empty files`);
      for (const n of sizes) await makeTree(join(root, `t${n}`), n, 0);
      console.log(
        `[list] created in ${((performance.now() - t0) / 1000).toFixed(0)} s`,
      );
      const server = await startHsyncd(tmp, root, "hsyncd-list");
      servers.push(server);
      const rows: string[] = [];
      for (const n of sizes) {
        const tree = join(root, `t${n}`);
        const l0 = performance.now();
        const count = await countListing(server.port, tree);
        const listSeconds = (performance.now() - l0) / 1000;
        const hwm = await vmHWM(server.child.pid);
        // The client lists everything and excludes every file: its memory is the listing's.
        const client = await timed(
          "deno",
          hsyncPullArgs(server.port, tree, join(tmp, `out-${n}`), [
            "--exclude",
            "f*",
          ]),
          server.env,
        );
        if (client.code !== 0) {
          failed = true;
          console.log(
            `[list] client failed: exit ${client.code} ${client.err}`,
          );
        }
        rows.push(
          `| ${n} entries | ${count} | ${listSeconds.toFixed(2)} | ${
            mib(hwm)
          } | ${client.seconds.toFixed(2)} | ${mib(client.rssKiB)} |`,
        );
      }
      await stopServer(server);
      servers.pop();
      lines.push(
        "## Listing memory",
        "",
        "Server: `GET /v1/list` read to the end, trees listed smallest first (its peak RSS can only rise); " +
          "client: `hsync` over the whole tree with every file excluded.",
        "",
        "| tree | lines streamed | list s | hsyncd peak RSS MiB so far | client s | client peak RSS MiB |",
        "| ---- | -------------: | -----: | -------------------------: | -------: | ------------------: |",
        ...rows,
        "",
      );
      console.log(lines.slice(-(rows.length + 1)).join("\n"));
      await Deno.remove(root, { recursive: true });
    }

    if (PARTS.includes("flat")) {
      const root = join(tmp, "flat");
      const dir = join(root, "one");
      console.log(`[flat] creating ${FLAT} empty files in one directory`);
      Deno.mkdirSync(dir, { recursive: true });
      const empty = new Uint8Array(0);
      for (let i = 0; i < FLAT; i++) {
        Deno.writeFileSync(
          join(dir, `entry-${String(i).padStart(7, "0")}`),
          empty,
        );
      }
      const server = await startHsyncd(tmp, root, "hsyncd-flat");
      servers.push(server);
      const got = await healthWhileListing(server.port, dir, LISTINGS);
      const hwm = await vmHWM(server.child.pid);
      await stopServer(server);
      servers.pop();
      lines.push(
        "## Health while listing one huge directory",
        "",
        `${LISTINGS} listings of one directory of ${FLAT} entries read to the end at once; ` +
          "`GET /v1/health` asked every 50 ms meanwhile.",
        "",
        "| listings | entries | all listed s | health worst ms | health median ms | hsyncd peak RSS MiB |",
        "| -------: | ------: | -----------: | --------------: | ---------------: | ------------------: |",
        `| ${LISTINGS} | ${FLAT} | ${got.listSeconds.toFixed(1)} | ${
          got.worstMs.toFixed(0)
        } | ${got.medianMs.toFixed(0)} | ${mib(hwm)} |`,
        "",
      );
      console.log(lines.slice(-4).join("\n"));
      await Deno.remove(root, { recursive: true });
    }

    if (PARTS.includes("small")) {
      const data = join(tmp, "small");
      const src = join(data, "tree");
      console.log(`[small] creating ${SMALL} files of ${fmtSize(SMALL_BYTES)}`);
      await makeTree(src, SMALL, SMALL_BYTES);
      const manifest = await manifestOf(src);
      await run("sync", []);
      const hsyncd = await startHsyncd(tmp, data, "hsyncd-small");
      servers.push(hsyncd);
      const rsyncd = await startRsyncd(tmp, data);
      servers.push(rsyncd);
      const results: Record<string, { s: number[]; rss: number[] }> = {
        hsync: { s: [], rss: [] },
        rsync: { s: [], rss: [] },
      };
      const outputs: string[] = [];
      for (let r = 0; r < RUNS; r++) {
        const order = r % 2 === 0 ? ["hsync", "rsync"] : ["rsync", "hsync"];
        for (const tool of order) {
          const out = join(tmp, `out-${tool}-${r}`);
          outputs.push(out);
          const res = tool === "hsync"
            ? await timed(
              "deno",
              hsyncPullArgs(hsyncd.port, src, out),
              hsyncd.env,
            )
            : await timed("rsync", [
              "-a",
              `rsync://127.0.0.1:${rsyncd.port}/bench/tree/`,
              `${out}/`,
            ]);
          const bad = res.code !== 0
            ? `exit ${res.code} ${res.err}`
            : await verify(out, manifest);
          if (bad) {
            failed = true;
            console.log(`[small] ${tool} run ${r + 1}: FAILED ${bad}`);
            continue;
          }
          results[tool].s.push(res.seconds);
          results[tool].rss.push(res.rssKiB);
          console.log(
            `[small] ${tool} run ${r + 1}: ${res.seconds.toFixed(2)} s, ${
              (SMALL / res.seconds).toFixed(0)
            } files/s, RSS ${mib(res.rssKiB)} MiB`,
          );
          await run("sync", []);
        }
      }
      await stopServer(rsyncd);
      await stopServer(hsyncd);
      servers.length = 0;
      lines.push(
        `## ${SMALL} files of ${fmtSize(SMALL_BYTES)}`,
        "",
        "| tool | median s | files/s | client peak RSS MiB | runs |",
        "| ---- | -------: | ------: | ------------------: | ---- |",
      );
      for (const [tool, v] of Object.entries(results)) {
        if (v.s.length === 0) continue;
        const m = median(v.s);
        lines.push(
          `| ${tool} | ${m.toFixed(2)} | ${(SMALL / m).toFixed(0)} | ${
            mib(Math.max(...v.rss))
          } | ${v.s.map((x) => x.toFixed(2)).join(", ")} |`,
        );
      }
      lines.push("");
      console.log(lines.slice(-6).join("\n"));
      for (const o of outputs) {
        await Deno.remove(o, { recursive: true }).catch(() => {});
      }
      await Deno.remove(data, { recursive: true });
    }

    if (PARTS.includes("clients")) {
      const data = join(tmp, "clients");
      const src = join(data, "tree");
      // Per client: 4 files of 8 MiB (ranges) and 200 files of 16 KiB (bundles).
      await Deno.mkdir(join(src, "small"), { recursive: true });
      for (let i = 0; i < 4; i++) {
        await writeRandomFile(join(src, `big${i}.bin`), 8 * 1024 * 1024);
      }
      for (let i = 0; i < 200; i++) {
        await writeRandomFile(join(src, "small", `f${i}.bin`), 16 * 1024);
      }
      const manifest = await manifestOf(src);
      const hsyncd = await startHsyncd(tmp, data, "hsyncd-clients");
      servers.push(hsyncd);
      const idle = await vmHWM(hsyncd.child.pid);
      console.log(`[clients] ${CLIENTS} clients at once`);
      const sampler = sampleServer(hsyncd.child.pid, hsyncd.port);
      const t0 = performance.now();
      const runs = await Promise.all(
        Array.from({ length: CLIENTS }, (_, i) =>
          timed(
            "deno",
            hsyncPullArgs(hsyncd.port, src, join(tmp, `client-${i}`)),
            hsyncd.env,
          )),
      );
      const wall = (performance.now() - t0) / 1000;
      const peak = await vmHWM(hsyncd.child.pid);
      const seen = await sampler.stop();
      await stopServer(hsyncd);
      servers.length = 0;
      let ok = 0;
      for (let i = 0; i < CLIENTS; i++) {
        const bad = runs[i].code !== 0
          ? `exit ${runs[i].code} ${runs[i].err}`
          : await verify(join(tmp, `client-${i}`), manifest);
        if (bad) console.log(`[clients] client ${i}: FAILED ${bad}`);
        else ok++;
      }
      if (ok !== CLIENTS) failed = true;
      const bytes = CLIENTS *
        [...manifest.values()].reduce((a, f) => a + f.size, 0);
      lines.push(
        `## ${CLIENTS} concurrent clients`,
        "",
        `Each pulls 4 files of 8 MiB and 200 files of 16 KiB (${
          fmtSize(bytes / CLIENTS)
        }) from one hsyncd.`,
        "",
        "| clients ok | wall s | total MB/s | hsyncd RSS idle MiB | hsyncd peak RSS MiB | of it anonymous / file-backed MiB | connections at most |",
        "| ---------: | -----: | ---------: | ------------------: | ------------------: | --------------------------------: | ------------------: |",
        `| ${ok}/${CLIENTS} | ${wall.toFixed(1)} | ${
          (bytes / 1e6 / wall).toFixed(0)
        } | ${mib(idle)} | ${mib(peak)} | ${mib(seen.anon)} / ${
          mib(seen.file)
        } | ${seen.connections} |`,
        "",
        `The make-up is from the largest of ${seen.samples} samples taken every 0.5 s (RSS ${
          mib(seen.rss)
        } MiB then); file-backed memory is mostly Deno's own code.`,
        "",
      );
      console.log(lines.slice(-3).join("\n"));
      await Deno.remove(data, { recursive: true });
    }

    await Deno.writeTextFile(RESULTS_MD, lines.join("\n"));
    await run("deno", ["fmt", "--quiet", RESULTS_MD], { cwd: REPO });
    console.log(`[done] wrote ${RESULTS_MD}`);
    return failed ? 2 : 0;
  } finally {
    for (const s of servers) await stopServer(s);
    if (opts.keep) console.log(`[cleanup] kept ${tmp}`);
    else await Deno.remove(tmp, { recursive: true }).catch(() => {});
    Deno.removeSignalListener("SIGINT", onSignal);
  }
}

Deno.exit(await main());
