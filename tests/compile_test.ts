// deno-lint-ignore-file no-console
/** Tests of the shipped form: permission sets, `deno task compile` (binaries when a runtime is at hand) and the systemd unit. */
import assert from "node:assert/strict";
import { join } from "node:path";
import denoJson from "../deno.json" with { type: "json" };
import { VERSION } from "../lib/shared/version.ts";
import {
  compileArgs,
  ENTRIES,
  PROGRAMS,
  ROOT,
  RUNTIME_FLAGS,
  runtimeFailure,
  TARGET,
} from "../scripts/compile.ts";
import { clientArgv, freePort, serverArgv, tempDir } from "./_programs.ts";

type PermissionSet = Record<string, boolean | string[] | undefined>;
const sets = denoJson.permissions as Record<string, PermissionSet>;
const tasks = denoJson.tasks as Record<string, string>;

const UNIT = join(ROOT, "deploy/hsyncd.service");

// --- permission sets ------------------------------------------------------

Deno.test("no permission set in deno.json allows everything", () => {
  for (const [name, set] of Object.entries(sets)) {
    assert.equal("all" in set, false, `set "${name}" has "all"`);
  }
});

Deno.test("the program sets grant only what the programs use", () => {
  const hsyncd = sets.hsyncd;
  const hsync = sets.hsync;
  for (const [name, set] of [["hsyncd", hsyncd], ["hsync", hsync]] as const) {
    for (const never of ["ffi", "import", "all"]) {
      assert.equal(set[never], undefined, `${name} must not have "${never}"`);
    }
    // Environment variables are listed by name, never all of them.
    assert.ok(Array.isArray(set.env), `${name}: env must be a list`);
    assert.ok(set.env.includes("HSYNC_DIR") && set.env.includes("HOME"));
  }
  // The client runs nothing and asks the system only for its umask (the
  // modes of what it copies are masked by it, as cp and scp do).
  assert.equal(hsync.run, undefined, "hsync must not have run");
  assert.deepEqual(hsync.sys, ["umask"]);
  // The daemon asks the system for its host name and interface addresses
  // (the names a signature may be bound to on a wildcard listener) and its
  // umask (what modes of pushed files are masked with).
  assert.deepEqual(hsyncd.sys, ["hostname", "networkInterfaces", "umask"]);
});

Deno.test("deno task serve and pull run the programs under their own sets", () => {
  assert.match(
    tasks.serve,
    /^deno run (\S+ )*-P=hsyncd (\S+ )*main_server\.ts$/,
  );
  assert.match(tasks.pull, /^deno run (\S+ )*-P=hsync (\S+ )*main_client\.ts$/);
  assert.match(
    tasks.compile,
    /^deno run (\S+ )*-P=build scripts\/compile\.ts$/,
  );
  // The same V8 flags as the binaries (and the tests) get.
  for (const program of PROGRAMS) {
    const task = program === "hsync" ? tasks.pull : tasks.serve;
    for (const flag of RUNTIME_FLAGS[program]) {
      assert.ok(task.split(" ").includes(flag), `${task} lacks ${flag}`);
    }
    assert.ok(
      RUNTIME_FLAGS[program].every((f) => compileArgs(program).includes(f)),
    );
  }
  for (const task of [tasks.serve, tasks.pull, tasks.compile]) {
    assert.doesNotMatch(task, / (-A|--allow-)/);
  }
});

Deno.test("compileArgs() builds each binary with its set, for linux x64, type-checked", () => {
  for (const program of PROGRAMS) {
    const args = compileArgs(program);
    assert.equal(args[0], "compile");
    assert.ok(args.includes(`-P=${program}`), args.join(" "));
    assert.equal(args[args.indexOf("--target") + 1], TARGET);
    assert.equal(args[args.indexOf("--output") + 1], `dist/${program}`);
    assert.equal(args.at(-1), ENTRIES[program]);
    for (const flag of args) {
      assert.doesNotMatch(
        flag,
        /^(-A|--allow-|--no-check|--permission-set=(?!hsync))/,
      );
    }
  }
  assert.equal(ENTRIES.hsyncd, "main_server.ts");
  assert.equal(ENTRIES.hsync, "main_client.ts");
});

Deno.test("tests run the programs under exactly the binaries' permission sets", async () => {
  assert.ok(serverArgv().includes("-P=hsyncd"));
  assert.ok(clientArgv().includes("-P=hsync"));
  // No test or script grants permissions by flag: only through the named sets.
  const flag =
    /["'`](-A|--allow-(all|read|write|net|env|run|sys|ffi|import)\b)/;
  for (const dir of ["tests", "scripts"]) {
    for await (const e of Deno.readDir(join(ROOT, dir))) {
      if (!e.isFile || !e.name.endsWith(".ts")) continue;
      if (e.name === "compile_test.ts") continue;
      const text = await Deno.readTextFile(join(ROOT, dir, e.name));
      assert.doesNotMatch(text, flag, `${dir}/${e.name} grants a permission`);
    }
  }
});

// --- deno task compile ----------------------------------------------------

const DOWNLOAD_FAILURE =
  `Warning Permissions in the config file is an experimental feature and may change in the future.
Check main_server.ts
Compile main_server.ts to dist/hsyncd
Download https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip
error: Writing deno compile executable to temporary file 'dist/hsyncd.tmp-ae4c2b46e9cb4930'

Caused by:
    0: Setting up base binary.
    1: error sending request for url (https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip): client error (Connect): dns error: failed to lookup address information: Name or service not known
    2: client error (Connect)
    3: dns error
    4: failed to lookup address information: Name or service not known

Stack backtrace:
   0: <unknown>
`;

Deno.test("runtimeFailure() turns a failed runtime download into one line that says what to do", () => {
  const line = runtimeFailure(DOWNLOAD_FAILURE, { output: "dist/hsyncd" });
  assert.ok(line !== undefined);
  assert.doesNotMatch(line, /\n/);
  assert.match(line, /^Cannot build dist\/hsyncd: /);
  assert.match(line, /could not download its runtime \(denort/);
  assert.match(line, /failed to lookup address information/);
  assert.match(line, /DENORT_BIN=\/path\/to\/denort deno task compile/);
  assert.equal(
    runtimeFailure("error: Type checking failed.\n", { output: "dist/hsync" }),
    undefined,
  );
});

Deno.test("deno task compile fails with one line when DENORT_BIN is not a runtime", async () => {
  await using dir = await tempDir();
  const missing = join(dir.path, "no-such-denort");
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-q",
      "-P=build",
      "scripts/compile.ts",
      "--out-dir",
      join(dir.path, "dist"),
    ],
    cwd: ROOT,
    env: { DENORT_BIN: missing, NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 1, stderr);
  const lines = stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, stderr);
  assert.match(
    lines[0],
    /^Cannot build .*hsyncd: DENORT_BIN=".*no-such-denort" is not a usable denort runtime \(No such file/,
  );
});

/** Where `deno compile` finds its runtime without downloading, if anywhere. */
async function localRuntime(): Promise<string | undefined> {
  const bin = Deno.env.get("DENORT_BIN");
  if (bin) {
    return await Deno.stat(bin).then(
      () => `DENORT_BIN=${bin}`,
      () => undefined,
    );
  }
  // A runtime downloaded earlier sits in Deno's cache and is used offline.
  const info = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json"],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  if (!info.success) return undefined;
  const denoDir = JSON.parse(new TextDecoder().decode(info.stdout)).denoDir;
  const cached = join(
    denoDir,
    "dl",
    "release",
    `v${Deno.version.deno}`,
    `denort-${TARGET}.zip`,
  );
  return await Deno.stat(cached).then(() => cached, () => undefined);
}

const runtime = Deno.build.target === TARGET ? await localRuntime() : undefined;
if (runtime === undefined) {
  console.error(
    `compile_test: skipping the compiled-binary test: no local Deno runtime (denort ${Deno.version.deno} for ${TARGET}); set DENORT_BIN=/path/to/denort to run it`,
  );
}

/** Output of one run of a compiled binary. */
async function runBinary(
  binary: string,
  args: string[],
  env: Record<string, string>,
  cwd: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(binary, {
    args,
    cwd,
    clearEnv: true,
    env: { PATH: "/usr/bin:/bin", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

/** `Key = value` lines of each section of an ini text (comments and empty values left out). */
function iniLines(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const head = /^\[(.+)\]$/.exec(line);
    if (head) {
      section = head[1];
      out.set(section, []);
      continue;
    }
    const kv = /^([A-Za-z_]+)\s*=\s*(.+)$/.exec(line);
    if (kv && section) out.get(section)!.push(`${kv[1]} = ${kv[2]}`);
  }
  return out;
}

Deno.test({
  name:
    "the compiled binaries run standalone with their sets and embedded defaults",
  ignore: runtime === undefined,
  fn: async (t) => {
    await using dir = await tempDir();
    const dist = join(dir.path, "dist");
    const built = await t.step(
      "deno task compile builds both binaries",
      async () => {
        const out = await new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-q",
            "-P=build",
            "scripts/compile.ts",
            "--out-dir",
            dist,
          ],
          cwd: ROOT,
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
          signal: AbortSignal.timeout(300_000),
        }).output();
        const dec = new TextDecoder();
        assert.equal(out.code, 0, dec.decode(out.stderr));
        assert.match(
          dec.decode(out.stdout),
          /Built .*hsyncd[^]*Built .*hsync /,
        );
      },
    );
    if (!built) return;
    // Away from the repository, with no Deno and an almost empty environment.
    const away = join(dir.path, "elsewhere");
    await Deno.mkdir(away);
    const hsyncDir = join(dir.path, "hsync-dir");
    await Deno.mkdir(hsyncDir);
    const env = { HSYNC_DIR: hsyncDir };

    await t.step("--version prints the version", async () => {
      for (const program of PROGRAMS) {
        const r = await runBinary(
          join(dist, program),
          ["--version"],
          env,
          away,
        );
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout.trim(), `${program} ${VERSION}`);
      }
    });

    await t.step(
      "hsync echo-config shows the repository's hsync.ini as the built-in defaults",
      async () => {
        const r = await runBinary(
          join(dist, "hsync"),
          ["echo-config"],
          env,
          away,
        );
        assert.equal(r.code, 0, r.stderr);
        const defaults = iniLines(
          await Deno.readTextFile(join(ROOT, "hsync.ini")),
        );
        let checked = 0;
        for (const [section, lines] of defaults) {
          const shown = r.stdout.split(`[${section}]`)[1]?.split("\n[")[0] ??
            "";
          for (const line of lines) {
            assert.ok(shown.split("\n").includes(line), `[${section}] ${line}`);
            checked++;
          }
        }
        assert.ok(checked >= 20, `only ${checked} defaults checked`);
      },
    );

    await t.step(
      "compiled hsync pulls a file from compiled hsyncd",
      async () => {
        const data = join(dir.path, "data");
        await Deno.mkdir(data);
        const bytes = crypto.getRandomValues(new Uint8Array(65536));
        await Deno.writeFile(join(data, "sample.bin"), bytes);
        const ini = join(dir.path, "server.ini");
        await Deno.writeTextFile(
          ini,
          `[hsyncd]\nOnly_allowed_path = ${data}\n`,
        );
        const port = freePort();
        const server = new Deno.Command(join(dist, "hsyncd"), {
          args: ["-host", "127.0.0.1", "-p", String(port), "-c", ini],
          cwd: away,
          clearEnv: true,
          env: { PATH: "/usr/bin:/bin", ...env },
          stdin: "null",
          stdout: "null",
          stderr: "piped",
        }).spawn();
        const stderr = new Response(server.stderr).text();
        try {
          const deadline = Date.now() + 20_000;
          while (true) {
            const r = await fetch(`http://127.0.0.1:${port}/v1/health`).catch(
              () => undefined,
            );
            await r?.body?.cancel();
            if (r?.ok) break;
            assert.ok(Date.now() < deadline, "hsyncd did not answer in 20 s");
            await new Promise((r) => setTimeout(r, 100));
          }
          const out = join(dir.path, "out");
          await Deno.mkdir(out);
          const r = await runBinary(
            join(dist, "hsync"),
            [
              "-i",
              join(data, "sample.bin"),
              "-o",
              `${out}/`,
              "-host",
              "127.0.0.1",
              "-p",
              String(port),
              "--quiet",
            ],
            { HSYNC_DIR: join(dir.path, "client-dir") },
            away,
          );
          assert.equal(r.code, 0, r.stderr);
          assert.deepEqual(await Deno.readFile(join(out, "sample.bin")), bytes);
        } finally {
          server.kill("SIGTERM");
          const status = await server.status;
          const text = await stderr;
          assert.equal(status.code, 0, text);
        }
      },
    );
  },
});

// --- systemd unit ---------------------------------------------------------

/** The `Key=value` settings of a unit file, every value of a repeated key in order. */
function unitSettings(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith("[")) continue;
    const eq = line.indexOf("=");
    const key = line.slice(0, eq);
    out.set(key, [...(out.get(key) ?? []), line.slice(eq + 1)]);
  }
  return out;
}

Deno.test("deploy/hsyncd.service runs hsyncd in the foreground as a dedicated user, hardened", async () => {
  const unit = unitSettings(await Deno.readTextFile(UNIT));
  const one = (key: string) => {
    const values = unit.get(key);
    assert.ok(values !== undefined, `${key}= is missing`);
    return values.at(-1);
  };
  assert.equal(one("Type"), "simple");
  // Foreground is hsyncd's default: no start/-d in the command line.
  assert.match(
    one("ExecStart")!,
    /^\/usr\/local\/bin\/hsyncd -c \/etc\/hsync\/hsync\.ini$/,
  );
  assert.equal(one("User"), "hsync");
  assert.equal(one("Group"), "hsync");
  assert.equal(one("Restart"), "on-failure");
  assert.equal(one("Environment"), "HSYNC_DIR=/var/lib/hsyncd");
  assert.equal(one("StateDirectory"), "hsyncd");
  assert.equal(one("NoNewPrivileges"), "yes");
  assert.equal(one("ProtectSystem"), "strict");
  assert.equal(one("PrivateTmp"), "yes");
  assert.equal(one("PrivateDevices"), "yes");
  assert.deepEqual(one("ReadWritePaths")!.split(" "), [
    "/var/lib/hsyncd",
    "/var/log/hsyncd",
  ]);
  assert.equal(one("CapabilityBoundingSet"), "");
  assert.equal(one("AmbientCapabilities"), "");
  assert.equal(
    one("RestrictAddressFamilies"),
    "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
  );
  assert.equal(one("SystemCallArchitectures"), "native");
  // V8's JIT needs writable executable memory.
  assert.equal(unit.has("MemoryDenyWriteExecute"), false);
  // systemctl reload sends SIGHUP, which hsyncd handles by reloading its rules.
  assert.equal(one("ExecReload"), "/bin/kill -HUP $MAINPID");
  assert.equal(one("WantedBy"), "multi-user.target");
});

const analyze = await new Deno.Command("systemd-analyze", {
  args: ["--version"],
  stdout: "null",
  stderr: "null",
}).output().then((o) => o.success, () => false);
if (!analyze) {
  console.error(
    "compile_test: skipping systemd-analyze verify: systemd-analyze is not installed (apt-get install systemd)",
  );
}

Deno.test({
  name: "deploy/hsyncd.service passes systemd-analyze verify",
  ignore: !analyze,
  fn: async () => {
    await using dir = await tempDir();
    // verify insists that ExecStart exists: point it at one that does.
    const text = (await Deno.readTextFile(UNIT)).replace(
      /^ExecStart=\/usr\/local\/bin\/hsyncd /m,
      "ExecStart=/bin/true ",
    );
    assert.match(text, /^ExecStart=\/bin\/true /m);
    const copy = join(dir.path, "hsyncd.service");
    await Deno.writeTextFile(copy, text);
    const out = await new Deno.Command("systemd-analyze", {
      args: ["verify", copy],
      env: { SYSTEMD_LOG_COLOR: "0", NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    const said = (dec.decode(out.stdout) + dec.decode(out.stderr)).trim();
    assert.equal(out.code, 0, said);
    assert.equal(said, "", "systemd-analyze verify printed warnings");
  },
});
