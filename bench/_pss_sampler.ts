// Samples the memory of a process and all its descendants until its stdin
// closes, then prints one JSON line (a PssPeak, see bench/memory.ts):
//   deno run -q -A bench/_pss_sampler.ts ROOT_PID PORT EVERY_MS
// Deno refuses /proc to anything short of --allow-all, hence a process of its
// own, which reads nothing but /proc and runs nothing but `ss`.
// deno-lint-ignore-file no-console

const [root, port, everyMs] = Deno.args.map(Number);
if (
  Deno.args.length !== 3 || !(root > 0) || !(port > 0) || !(everyMs > 0)
) {
  console.error(
    `_pss_sampler: expected ROOT_PID PORT EVERY_MS, got "${
      Deno.args.join(" ")
    }"`,
  );
  Deno.exit(1);
}

/** Parent of every process seen, read once per process from /proc/PID/stat. */
const parentOf = new Map<number, number>();

function refreshParents(): void {
  const seen = new Set<number>();
  for (const e of Deno.readDirSync("/proc")) {
    const pid = Number(e.name);
    if (!Number.isInteger(pid)) continue;
    seen.add(pid);
    if (parentOf.has(pid)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      // After the command name (which may hold spaces): state, then ppid.
      parentOf.set(
        pid,
        Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]),
      );
    } catch {
      // gone already
    }
  }
  for (const pid of parentOf.keys()) if (!seen.has(pid)) parentOf.delete(pid);
}

function tree(): number[] {
  const out = [root];
  for (let i = 0; i < out.length; i++) {
    for (const [pid, ppid] of parentOf) if (ppid === out[i]) out.push(pid);
  }
  return out;
}

const kib = (text: string, key: string) =>
  Number(text.match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"))?.[1] ?? 0);

const peak = {
  pss: 0,
  pssAnon: 0,
  pssFile: 0,
  pssShmem: 0,
  rss: 0,
  processes: 0,
};
let rssMax = 0;
let processesMax = 0;
let clientsMax = 0;
let connectionsMax = 0;
let samples = 0;

function sample(): void {
  refreshParents();
  const now = { pss: 0, pssAnon: 0, pssFile: 0, pssShmem: 0, rss: 0 };
  let processes = 0;
  for (const pid of tree()) {
    let text: string;
    try {
      text = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`);
    } catch {
      continue; // exited between the listing and now
    }
    processes++;
    now.pss += kib(text, "Pss");
    now.pssAnon += kib(text, "Pss_Anon");
    now.pssFile += kib(text, "Pss_File");
    now.pssShmem += kib(text, "Pss_Shmem");
    now.rss += kib(text, "Rss");
  }
  if (processes === 0) return;
  samples++;
  if (now.pss > peak.pss) Object.assign(peak, now, { processes });
  rssMax = Math.max(rssMax, now.rss);
  processesMax = Math.max(processesMax, processes);
}

/** Clients and connections established to `port`, from `ss`. */
async function clients(): Promise<void> {
  const r = await new Deno.Command("ss", {
    args: ["-Htnp", "state", "established", "dport", "=", `:${port}`],
    stdout: "piped",
    stderr: "null",
  }).output();
  const text = new TextDecoder().decode(r.stdout);
  // A client is the set of processes holding a socket (rsync's receiver and
  // generator share theirs); the benchmark's own connections do not count.
  const owners = new Set<string>();
  let connections = 0;
  for (const line of text.split("\n")) {
    const pids = [...line.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
    if (pids.length === 0 || pids.includes(Deno.ppid)) continue;
    connections++;
    owners.add(pids.sort((a, b) => a - b).join(","));
  }
  clientsMax = Math.max(clientsMax, owners.size);
  connectionsMax = Math.max(connectionsMax, connections);
}

let running = true;
const stdinDone = (async () => {
  for await (const _ of Deno.stdin.readable) { /* until closed */ }
  running = false;
})();
const clientLoop = (async () => {
  while (running) {
    await clients().catch(() => {});
    await new Promise((r) => setTimeout(r, 500));
  }
})();
while (running) {
  sample();
  await new Promise((r) => setTimeout(r, everyMs));
}
await Promise.all([stdinDone, clientLoop]);
console.log(JSON.stringify({
  peak,
  rssMax,
  processesMax,
  clientsMax,
  connectionsMax,
  samples,
}));
