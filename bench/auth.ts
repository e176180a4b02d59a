// Benchmark: the cost of request signing (key authentication) on workload B, 10,000 files x 4 KiB in 100 directories.
// Run: deno run -q -P=bench bench/auth.ts [--runs N] [--files-per-dir N] [--tls]
// deno-lint-ignore-file no-console

import { parseArgs } from "node:util";
import { join } from "node:path";
import {
  createVerifier,
  loadIdentity,
  parseAuthorizedKeys,
  signRequest,
  writeKeyPair,
} from "../lib/shared/auth.ts";
import { makeTestPki, type TestPki } from "../tests/_tls.ts";
import { freePort, hsyncdArgs, hsyncPullArgs, REPO } from "./_common.ts";

const { values: opts } = parseArgs({
  options: {
    runs: { type: "string", default: "5" },
    "files-per-dir": { type: "string", default: "100" },
    tls: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (opts.help) {
  console.log(`usage: deno run -q -P=bench bench/auth.ts [options]

  --runs N            timed pulls per variant, interleaved (default 5)
  --files-per-dir N   files of 4 KiB in each of the 100 directories (default 100)
  --tls               also time HTTPS with a private CA (needs openssl)`);
  Deno.exit(0);
}
const RUNS = Number(opts.runs);
const PER_DIR = Number(opts["files-per-dir"]);

interface Variant {
  name: string;
  /** The server's access log: one line per request. */
  log: string;
  port: number;
  hsyncDir: string;
  extraArgs: string[];
  server?: Deno.ChildProcess;
}

const tmp = await Deno.makeTempDir({ prefix: "hsync-bench-auth-" });
const variants: Variant[] = [];
try {
  // Workload B.
  const data = join(tmp, "B");
  const block = new Uint8Array(4096);
  for (let d = 0; d < 100; d++) {
    const dir = join(data, `d${String(d).padStart(3, "0")}`);
    await Deno.mkdir(dir, { recursive: true });
    for (let f = 0; f < PER_DIR; f++) {
      crypto.getRandomValues(block);
      await Deno.writeFile(
        join(dir, `f${String(f).padStart(4, "0")}.bin`),
        block,
      );
    }
  }
  const files = 100 * PER_DIR;

  // The signing client's key, made as `hsync keygen` makes it.
  const keyDir = join(tmp, "client-key");
  const keys = await writeKeyPair(keyDir, { comment: "bench" });
  const authorized = join(tmp, "authorized_keys");
  await Deno.writeTextFile(authorized, keys.publicLine + "\n");

  // The same private CA and server certificate as the TLS tests (openssl).
  let pki: TestPki | undefined;
  if (opts.tls) {
    const p = join(tmp, "pki");
    await Deno.mkdir(p);
    pki = await makeTestPki(p);
  }

  const setups: Array<{ name: string; signed: boolean; tls: boolean }> = [
    { name: "plain HTTP, unsigned", signed: false, tls: false },
    { name: "plain HTTP, signed", signed: true, tls: false },
  ];
  if (pki) {
    setups.push({ name: "HTTPS, unsigned", signed: false, tls: true });
    setups.push({ name: "HTTPS, signed", signed: true, tls: true });
  }
  for (const s of setups) {
    const dir = join(tmp, s.name.replace(/\W+/g, "-"));
    await Deno.mkdir(join(dir, "server-state"), { recursive: true });
    const ini = [`[hsyncd]`, `Only_allowed_path = ${data}`];
    if (s.signed) ini.push(`Authorized_keys = ${authorized}`);
    if (s.tls && pki) {
      ini.push(`Cert_file = ${pki.certFile}`, `Key_file = ${pki.keyFile}`);
    }
    await Deno.writeTextFile(join(dir, "server.ini"), ini.join("\n") + "\n");
    const clientIni = ["[hscp]"];
    if (s.tls && pki) clientIni.push("Tls = yes", `CA_file = ${pki.caFile}`);
    await Deno.writeTextFile(
      join(dir, "client.ini"),
      clientIni.join("\n") + "\n",
    );
    // An unsigned client has no key in its HSYNC_DIR; a signed one uses the keygen default.
    const hsyncDir = s.signed ? keyDir : join(dir, "client-state");
    await Deno.mkdir(hsyncDir, { recursive: true });
    const port = freePort();
    const server = new Deno.Command(Deno.execPath(), {
      args: hsyncdArgs(port, join(dir, "server.ini"), [
        "-l",
        join(dir, "hsyncd.log"),
      ]),
      cwd: REPO,
      env: { HSYNC_DIR: join(dir, "server-state") },
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const v: Variant = {
      name: s.name,
      log: join(dir, "hsyncd.log"),
      port,
      hsyncDir,
      extraArgs: ["-c", join(dir, "client.ini")],
      server,
    };
    variants.push(v);
    // Wait for "listening on".
    const reader = server.stdout.getReader();
    let out = "";
    while (!out.includes("listening on")) {
      const { done, value } = await reader.read();
      if (done) throw new Error(`hsyncd for ${s.name} exited: ${out}`);
      out += new TextDecoder().decode(value);
    }
    reader.releaseLock();
    server.stdout.cancel().catch(() => {});
  }

  console.log(
    `workload B: ${files} files x 4 KiB in 100 directories; ${RUNS} pulls per variant, interleaved`,
  );
  const times = new Map<string, number[]>(variants.map((v) => [v.name, []]));
  for (let run = 0; run < RUNS; run++) {
    for (const v of variants) {
      const dest = join(tmp, "out");
      const started = performance.now();
      const r = await new Deno.Command(Deno.execPath(), {
        args: hsyncPullArgs(v.port, data, dest, v.extraArgs),
        cwd: REPO,
        env: { HSYNC_DIR: v.hsyncDir },
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).output();
      const seconds = (performance.now() - started) / 1000;
      if (!r.success) {
        throw new Error(
          `${v.name}: hsync exited ${r.code}: ${
            new TextDecoder().decode(r.stderr)
          }`,
        );
      }
      let count = 0;
      for await (const d of Deno.readDir(dest)) {
        for await (const f of Deno.readDir(join(dest, d.name))) {
          if (f.isFile) count++;
        }
      }
      if (count !== files) {
        throw new Error(`${v.name}: ${count} files instead of ${files}`);
      }
      times.get(v.name)!.push(seconds);
      console.log(
        `  run ${run + 1} ${v.name.padEnd(22)} ${seconds.toFixed(3)} s`,
      );
      await Deno.remove(dest, { recursive: true });
    }
  }

  // What signing costs per request, without the noise of 10,000 file creations.
  const identity = await loadIdentity(
    await Deno.readTextFile(keys.privateFile),
    keys.privateFile,
  );
  const verify = await createVerifier(
    parseAuthorizedKeys(keys.publicLine, "bench"),
  );
  const url = new URL(
    `http://127.0.0.1:1/v1/file?path=${
      encodeURIComponent(data)
    }%2Fd000%2Ff0000.bin`,
  );
  const N = 2000;
  let t0 = performance.now();
  const headers: string[] = [];
  for (let i = 0; i < N; i++) {
    headers.push(await signRequest(identity, "GET", url));
  }
  const signUs = (performance.now() - t0) * 1000 / N;
  t0 = performance.now();
  for (const h of headers) {
    const verdict = await verify({
      method: "GET",
      server: "http://127.0.0.1:1",
      pathAndQuery: url.pathname + url.search,
      authorization: h,
      bodySha256: "-",
    });
    if (!verdict.ok) {
      throw new Error("a signature did not verify");
    }
  }
  const verifyUs = (performance.now() - t0) * 1000 / N;
  const signedLog = variants.find((v) => v.name === "plain HTTP, signed")!.log;
  const lines = (await Deno.readTextFile(signedLog)).split("\n").filter((l) =>
    / \/v1\//.test(l)
  ).length;
  const perPull = lines / RUNS;
  console.log(
    `\nsigning: ${signUs.toFixed(0)} us per request (client), verifying: ${
      verifyUs.toFixed(0)
    } us (server); a pull of workload B makes ${
      perPull.toFixed(0)
    } requests, so ${
      (perPull * (signUs + verifyUs) / 1000).toFixed(1)
    } ms of signing work per pull`,
  );

  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) =>
      a - b
    );
    const m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  };
  console.log("\nvariant                  median s   min s   vs unsigned");
  for (const v of variants) {
    const xs = times.get(v.name)!;
    const rel = v.name.endsWith(", signed")
      ? `${
        ((median(xs) /
            median(times.get(v.name.replace(", signed", ", unsigned"))!) - 1) *
          100).toFixed(1)
      } %`
      : "";
    console.log(
      `${v.name.padEnd(24)} ${median(xs).toFixed(3).padStart(8)} ${
        Math.min(...xs).toFixed(3).padStart(7)
      }   ${rel}`,
    );
  }
} finally {
  for (const v of variants) {
    try {
      v.server?.kill("SIGTERM");
      await v.server?.status;
    } catch {
      // already gone
    }
  }
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
}
