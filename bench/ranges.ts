// Benchmark: one big file in one stream vs in parallel byte ranges, over loopback with emulated latency (`deno run -q -P=bench bench/ranges.ts`).
// deno-lint-ignore-file no-console

import { parseArgs } from "node:util";
import { join } from "node:path";
import {
  hsyncPullArgs,
  live,
  median,
  REPO,
  run,
  sha256File,
  startHsyncd,
  stopServer,
  tail,
  writeRandomFile,
} from "./_common.ts";
import { startLink } from "./_link.ts";

const HELP = `usage: deno run -q -P=bench bench/ranges.ts [options]

Pulls one file with each Max_part_num given, directly over loopback (delay
0) and through a relay that emulates a long path (bench/_link.ts): each byte
arrives DELAY ms after it was sent and each connection has at most WINDOW
unacknowledged bytes per direction, which is what limits one TCP stream on a
real path with latency. Shows whether parallel ranges pay off there.

  --size MiB      file size (default 256)
  --delays LIST   one-way delays in ms (default 0,5,25)
  --window KiB    window per connection and direction (default 4096)
  --parts LIST    Max_part_num values compared (default 1,8)
  --runs N        runs per delay and part count, interleaved (default 3)
  -h, --help      this text

Every run is verified by SHA-256.
`;

const { values: opts } = parseArgs({
  args: Deno.args,
  options: {
    size: { type: "string", default: "256" },
    delays: { type: "string", default: "0,5,25" },
    window: { type: "string", default: "4096" },
    parts: { type: "string", default: "1,8" },
    runs: { type: "string", default: "3" },
    help: { type: "boolean", short: "h", default: false },
  },
  strict: true,
  allowPositionals: false,
});
if (opts.help) {
  console.log(HELP);
  Deno.exit(0);
}

function numbers(flag: string, text: string, min: number): number[] {
  const out = text.split(",").map((s) => Number(s.trim()));
  if (out.length === 0 || out.some((n) => !Number.isInteger(n) || n < min)) {
    console.error(
      `ranges: --${flag} "${text}": expected whole numbers of at least ${min}, separated by commas`,
    );
    Deno.exit(1);
  }
  return out;
}

const SIZE_MIB = numbers("size", opts.size, 1)[0];
const DELAYS = numbers("delays", opts.delays, 0);
const PARTS = numbers("parts", opts.parts, 1);
const RUNS = numbers("runs", opts.runs, 1)[0];
const WINDOW_KIB = numbers("window", opts.window, 64)[0];

async function main(): Promise<number> {
  const tmp = await Deno.makeTempDir({
    dir: "/var/tmp",
    prefix: "hsync-ranges-",
  });
  let server: Awaited<ReturnType<typeof startHsyncd>> | undefined;
  const onSignal = () => {
    for (const c of live) c.kill("SIGTERM");
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  let failed = false;
  try {
    const data = join(tmp, "data");
    await Deno.mkdir(data);
    const src = join(data, "big.bin");
    console.log(`[setup] writing ${SIZE_MIB} MiB of random bytes`);
    await writeRandomFile(src, SIZE_MIB * 1024 * 1024);
    const want = await sha256File(src);
    server = await startHsyncd(tmp, data, "hsyncd-ranges");
    const inis = new Map<number, string>();
    for (const parts of PARTS) {
      const ini = join(tmp, `parts-${parts}.ini`);
      // Parts of at least 16 MiB, so the file is split into exactly `parts`.
      await Deno.writeTextFile(
        ini,
        `[hscp]\nMax_part_num = ${parts}\nMin_part_size = 16M\n`,
      );
      inis.set(parts, ini);
    }
    const rows: string[] = [];
    for (const delay of DELAYS) {
      const link = delay === 0
        ? undefined
        : startLink(server.port, delay, WINDOW_KIB * 1024);
      const port = link?.port ?? server.port;
      const times = new Map<number, number[]>(PARTS.map((p) => [p, []]));
      for (let r = 0; r < RUNS; r++) {
        const order = r % 2 === 0 ? PARTS : [...PARTS].reverse();
        for (const parts of order) {
          const out = join(tmp, `out-${parts}.bin`);
          await Deno.remove(out).catch(() => {});
          const p = await run(
            "deno",
            hsyncPullArgs(port, src, out, [
              "-c",
              inis.get(parts)!,
            ]),
            { cwd: REPO, env: server.env },
          );
          const seconds = p.seconds;
          if (p.code !== 0 || await sha256File(out) !== want) {
            failed = true;
            console.log(
              `[${delay} ms] parts ${parts}: FAILED exit ${p.code} ${
                tail(p.stderr)
              }`,
            );
            continue;
          }
          times.get(parts)!.push(seconds);
          console.log(
            `[${delay} ms] parts ${parts}: ${seconds.toFixed(2)} s`,
          );
        }
      }
      await link?.close();
      const base = median(times.get(PARTS[0])!);
      for (const parts of PARTS) {
        const t = times.get(parts)!;
        if (t.length === 0) continue;
        const m = median(t);
        const mbs = SIZE_MIB * 1024 * 1024 / 1e6 / m;
        rows.push(
          `| ${delay} | ${2 * delay} | ${parts} | ${m.toFixed(2)} | ${
            mbs.toFixed(0)
          } | ${(m / base).toFixed(2)} | ${
            t.map((x) => x.toFixed(2)).join(", ")
          } |`,
        );
      }
    }
    console.log(
      [
        "",
        `${SIZE_MIB} MiB file, window ${WINDOW_KIB} KiB per connection, median of ${RUNS} interleaved runs (wall seconds of the hsync process)`,
        "",
        "| one-way delay ms | RTT ms | Max_part_num | median s | MB/s | vs first | runs |",
        "| ---------------: | -----: | -----------: | -------: | ---: | -------: | ---- |",
        ...rows,
      ].join("\n"),
    );
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    if (server) await stopServer(server);
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  return failed ? 2 : 0;
}

Deno.exit(await main());
