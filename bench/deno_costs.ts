// Benchmark: what Deno itself costs per small file for the calls hsync and hsyncd make on workload B, under each program's own permission set and under --allow-all (`deno run -q -P=bench bench/deno_costs.ts`).
// deno-lint-ignore-file no-console
import { parseArgs } from "node:util";
import { join } from "node:path";
import {
  closeSync,
  constants as fsConstants,
  fstatSync,
  openSync,
  readSync,
} from "node:fs";
import { median, REPO, run } from "./_common.ts";

const USAGE = `usage: deno run -q -P=bench bench/deno_costs.ts [options]

  --files N       small files per measurement (default 3000)
  --rounds N      rounds, each running every case once, interleaved (default 5)
  --in DIR        where the files are made (default: the system's temporary
                  directory); a tmpfs keeps a disk's own cost per file from
                  hiding Deno's (Deno refuses /dev/shm without --allow-all)
  -h, --help      this text
`;

/** One measured loop, run in a child process. */
interface Case {
  id: string;
  what: string;
  /** The permission set of the program that makes these calls. */
  own: "hsync" | "hsyncd";
}

const CASES: Case[] = [
  {
    id: "create",
    what:
      "hsync: create a 4 KiB part file, set its mtime, rename it into place",
    own: "hsync",
  },
  {
    id: "read",
    what: "hsyncd: open (O_NONBLOCK, O_NOFOLLOW), fstat, read, close",
    own: "hsyncd",
  },
  {
    id: "fstat",
    what: "hsyncd: node-compat fstatSync of an open file",
    own: "hsyncd",
  },
  {
    id: "lstat",
    what: "hsyncd: Deno.lstatSync by path",
    own: "hsyncd",
  },
];

/** The child: runs one case over `files` files in `dir` and prints microseconds per file. */
function child(id: string, dir: string, files: number): void {
  const data = new Uint8Array(4096);
  const names = Array.from({ length: files }, (_, i) => join(dir, `f${i}`));
  const now = new Date();
  const old = new Date(1_000_000_000_000);
  let sink = 0;
  const started = performance.now();
  if (id === "create") {
    for (const name of names) {
      const part = `${name}.hsync-part`;
      Deno.writeFileSync(part, data, { createNew: true });
      Deno.utimeSync(part, now, old);
      Deno.renameSync(part, name);
    }
  } else if (id === "read" || id === "fstat") {
    const flags = fsConstants.O_RDONLY | fsConstants.O_NONBLOCK |
      fsConstants.O_NOFOLLOW;
    if (id === "read") {
      for (const name of names) {
        const fd = openSync(name, flags);
        sink += fstatSync(fd).ino;
        sink += readSync(fd, data, 0, data.length, 0);
        closeSync(fd);
      }
    } else {
      const fds = names.map((name) => openSync(name, flags));
      const t = performance.now();
      for (const fd of fds) sink += fstatSync(fd).ino;
      const us = (performance.now() - t) * 1000 / files;
      for (const fd of fds) closeSync(fd);
      console.log(us.toFixed(2));
      return;
    }
  } else if (id === "lstat") {
    for (const name of names) sink += Deno.lstatSync(name).ino ?? 0;
  } else {
    throw new Error(`Unknown case "${id}"`);
  }
  const us = (performance.now() - started) * 1000 / files;
  if (sink < 0) console.log(sink); // keeps the loop from being optimised away
  console.log(us.toFixed(2));
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      files: { type: "string", default: "3000" },
      rounds: { type: "string", default: "5" },
      child: { type: "string" },
      dir: { type: "string" },
      in: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const files = Number(values.files);
  const rounds = Number(values.rounds);
  for (const [flag, n] of [["files", files], ["rounds", rounds]] as const) {
    if (!Number.isSafeInteger(n) || n < 1) {
      console.error(
        `deno_costs: --${flag} "${
          values[flag]
        }": expected a whole number of at least 1`,
      );
      return 2;
    }
  }
  if (values.child !== undefined) {
    child(values.child, values.dir!, files);
    return 0;
  }

  // Deep enough to look like a real destination: Deno's cost grows with depth.
  const parent = values.in;
  let tmp: string;
  try {
    tmp = await Deno.makeTempDir({ dir: parent, prefix: "hsync-deno-costs-" });
  } catch (error) {
    console.error(
      `deno_costs: cannot make a directory in ${
        parent === undefined ? "the temporary directory" : `"${parent}"`
      }: ${(error as Error).message}`,
    );
    return 2;
  }
  const dir = join(tmp, "tree", "of", "data");
  const times = new Map<string, number[]>();
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const c of CASES) {
        for (const perms of [`-P=${c.own}`, "-A"]) {
          await Deno.remove(dir, { recursive: true }).catch(() => {});
          await Deno.mkdir(dir, { recursive: true });
          if (c.id !== "create") {
            const data = new Uint8Array(4096);
            for (let i = 0; i < files; i++) {
              Deno.writeFileSync(join(dir, `f${i}`), data);
            }
          }
          const out = await run("deno", [
            "run",
            "-q",
            perms,
            "bench/deno_costs.ts",
            "--child",
            c.id,
            "--dir",
            dir,
            "--files",
            String(files),
          ], { cwd: REPO, timeoutS: 300, stdout: true });
          const us = Number(out.stdout.trim().split("\n").pop());
          if (out.code !== 0 || !Number.isFinite(us)) {
            console.error(
              `deno_costs: ${c.id} with ${perms} failed: ${out.stderr.trim()}`,
            );
            return 2;
          }
          const key = `${c.id} ${perms === "-A" ? "all" : "own"}`;
          times.set(key, [...(times.get(key) ?? []), us]);
          console.error(`[round ${round}] ${c.id} ${perms}: ${us} us`);
        }
      }
    }
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }

  console.log(
    `\n${files} files of 4 KiB in ${dir} (${
      dir.split("/").length - 1
    } path components), median of ${rounds} interleaved rounds, microseconds per file\n`,
  );
  console.log(
    "| calls | own permission set | --allow-all | own / all |",
  );
  console.log("| ----- | -----------------: | ----------: | --------: |");
  for (const c of CASES) {
    const own = median(times.get(`${c.id} own`)!);
    const all = median(times.get(`${c.id} all`)!);
    console.log(
      `| ${c.what} (\`-P=${c.own}\`) | ${own.toFixed(1)} | ${
        all.toFixed(1)
      } | ${(own / all).toFixed(2)} |`,
    );
  }
  return 0;
}

Deno.exit(await main());
