/** End-to-end tests of the real hsyncd against a local attacker: forged pidfiles and symlinks planted at the pidfile and log names. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { pidfilePath, systemProbe } from "../lib/server/daemon.ts";
import { freePort, ROOT, serverArgv } from "./_programs.ts";

const HOST = "127.0.0.1";
const VICTIM_TEXT = "victim: must never change\n";

/** A scratch HSYNC_DIR, a served directory, a config file and a victim file, removed afterwards. */
interface Fixture {
  dir: string;
  hsyncDir: string;
  config: string;
  pidfile: string;
  /** A file the attacker wants hsyncd to truncate or append to. */
  victim: string;
  port: number;
  /** Processes to kill when a test fails half-way. */
  pids: Set<number>;
}

async function withFixture(
  fn: (f: Fixture) => Promise<void>,
  configExtra = "",
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "hsyncd_e2e_daemon_" });
  const data = join(dir, "data");
  await Deno.mkdir(data);
  await Deno.writeTextFile(join(data, "a.txt"), "hello\n");
  const hsyncDir = join(dir, "hsync");
  await Deno.mkdir(hsyncDir, { mode: 0o755 });
  const config = join(dir, "test.ini");
  await Deno.writeTextFile(
    config,
    `[hsyncd]\nOnly_allowed_path = ${data}\n${configExtra}`,
  );
  const victim = join(dir, "victim.txt");
  await Deno.writeTextFile(victim, VICTIM_TEXT);
  const port = freePort();
  const f: Fixture = {
    dir,
    hsyncDir,
    config,
    // Not the default port: the pidfile names it.
    pidfile: pidfilePath(hsyncDir, port),
    victim,
    port,
    pids: new Set(),
  };
  try {
    await fn(f);
  } finally {
    for (const pid of f.pids) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // Already gone, as it should be.
      }
    }
    await Deno.remove(dir, { recursive: true });
  }
}

function command(f: Fixture, args: string[]): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: [...serverArgv(), ...args],
    cwd: ROOT,
    env: { HSYNC_DIR: f.hsyncDir, NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

function flags(f: Fixture): string[] {
  return ["-host", HOST, "-p", String(f.port), "-c", f.config];
}

async function run(
  f: Fixture,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await command(f, args).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  const result = {
    code: out.code,
    stdout: decode(out.stdout),
    stderr: decode(out.stderr),
  };
  for (const m of result.stdout.matchAll(/\(pid (\d+)\)/g)) {
    f.pids.add(Number(m[1]));
  }
  return result;
}

/** True while the process runs (an exited process not yet reaped does not count). */
async function alive(pid: number): Promise<boolean> {
  return systemProbe.exists(pid) &&
    (await systemProbe.facts(pid))?.state !== "Z";
}

async function lstatOrUndefined(
  path: string,
): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

async function assertVictimUnchanged(f: Fixture): Promise<void> {
  assert.equal(await Deno.readTextFile(f.victim), VICTIM_TEXT);
}

/** Waits until `hsyncd` in the foreground answers /v1/health, or fails with its stderr. */
async function waitListening(
  f: Fixture,
  child: Deno.ChildProcess,
  stderr: () => string,
): Promise<void> {
  let exited: number | undefined;
  child.status.then((s) => exited = s.code);
  const deadline = Date.now() + 20_000;
  while (true) {
    if (exited !== undefined) {
      throw new Error(`hsyncd exited with ${exited}: ${stderr()}`);
    }
    try {
      const r = await fetch(`http://${HOST}:${f.port}/v1/health`);
      await r.body?.cancel();
      if (r.ok) return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`hsyncd did not start`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Starts hsyncd in the foreground; its stderr is collected. */
function foreground(
  f: Fixture,
  args: string[],
): { child: Deno.ChildProcess; stderr(): string; done: Promise<number> } {
  const child = command(f, args).spawn();
  f.pids.add(child.pid);
  let err = "";
  const pumps = Promise.all([
    child.stdout.cancel(),
    (async () => {
      for await (const t of child.stderr.pipeThrough(new TextDecoderStream())) {
        err += t;
      }
    })(),
  ]);
  const done = (async () => {
    const status = await child.status;
    await pumps;
    return status.code;
  })();
  return { child, stderr: () => err, done };
}

/** SIGKILL unless already exited, then reap (clean-up after a failed test). */
async function kill(
  server: { child: Deno.ChildProcess; done: Promise<number> },
): Promise<void> {
  try {
    server.child.kill("SIGKILL");
  } catch {
    // Already exited.
  }
  await server.done;
}

async function stopAll(children: Deno.ChildProcess[]): Promise<void> {
  for (const child of children) {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await child.status;
  }
}

Deno.test("hsyncd stop, restart and start refuse a pidfile naming another process with its start time copied, and that process lives on", async () => {
  await withFixture(async (f) => {
    const sleeper = new Deno.Command("sleep", {
      args: ["60"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    f.pids.add(sleeper.pid);
    try {
      const facts = await systemProbe.facts(sleeper.pid);
      assert.ok(facts !== undefined);
      const forged = {
        pid: sleeper.pid,
        host: HOST,
        port: f.port,
        scheme: "http",
        started: new Date().toISOString(),
        procStart: facts.start,
        version: "0.1.0",
      };
      await Deno.writeTextFile(f.pidfile, JSON.stringify(forged), {
        mode: 0o644,
      });
      const reason =
        `pidfile "${f.pidfile}" names pid ${sleeper.pid}, which is not this user's hsyncd: its executable "`;

      const stop = await run(f, ["stop"]);
      assert.equal(stop.code, 1);
      assert.equal(stop.stdout, "");
      assert.equal(stop.stderr.split("\n").length, 2, stop.stderr);
      assert.ok(
        stop.stderr.startsWith(`hsyncd: Cannot stop hsyncd: ${reason}`),
        stop.stderr,
      );
      assert.match(stop.stderr, /; no signal was sent\n$/);
      assert.equal(await alive(sleeper.pid), true, "sleep still runs");

      const restart = await run(f, ["restart", ...flags(f)]);
      assert.equal(restart.code, 1);
      assert.ok(
        restart.stderr.startsWith(`hsyncd: Cannot stop hsyncd: ${reason}`),
        restart.stderr,
      );
      assert.equal(await alive(sleeper.pid), true, "sleep still runs");

      const start = await run(f, ["start", ...flags(f)]);
      assert.equal(start.code, 1);
      assert.ok(
        start.stderr.startsWith(`hsyncd: Cannot start: ${reason}`),
        start.stderr,
      );
      const status = await run(f, ["status"]);
      assert.equal(status.code, 1);
      assert.ok(
        status.stderr.startsWith(
          `hsyncd: Cannot tell whether hsyncd runs: ${reason}`,
        ),
        status.stderr,
      );
      assert.equal(await alive(sleeper.pid), true, "sleep still runs");
      assert.equal(
        JSON.parse(await Deno.readTextFile(f.pidfile)).pid,
        sleeper.pid,
        "the pidfile is left for its owner to look at",
      );
    } finally {
      try {
        sleeper.kill("SIGKILL");
      } catch {
        // Already gone (signalled by the hsyncd under test: the failure).
      }
      await sleeper.status;
    }
  });
});

Deno.test("hsyncd stop refuses a pidfile that others can write, or in an HSYNC_DIR others can write", async () => {
  await withFixture(async (f) => {
    const sleeper = new Deno.Command("sleep", {
      args: ["60"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    f.pids.add(sleeper.pid);
    try {
      const facts = await systemProbe.facts(sleeper.pid);
      assert.ok(facts !== undefined);
      await Deno.writeTextFile(
        f.pidfile,
        JSON.stringify({
          pid: sleeper.pid,
          host: HOST,
          port: f.port,
          scheme: "http",
          started: new Date().toISOString(),
          procStart: facts.start,
          version: "0.1.0",
        }),
      );
      await Deno.chmod(f.pidfile, 0o666);
      const loose = await run(f, ["stop"]);
      assert.equal(loose.code, 1);
      assert.equal(
        loose.stderr,
        `hsyncd: Cannot stop hsyncd: pidfile "${f.pidfile}" is writable by group or others (mode 0666); no signal was sent\n`,
      );
      await Deno.chmod(f.pidfile, 0o644);
      await Deno.chmod(f.hsyncDir, 0o777);
      const openDir = await run(f, ["stop"]);
      assert.equal(openDir.code, 1);
      assert.equal(
        openDir.stderr,
        `hsyncd: Cannot stop hsyncd: pidfile "${f.pidfile}" is in "${f.hsyncDir}", which others can write (mode 0777); no signal was sent\n`,
      );
      assert.equal(await alive(sleeper.pid), true, "sleep still runs");
    } finally {
      try {
        sleeper.kill("SIGKILL");
      } catch {
        // Already gone (signalled by the hsyncd under test: the failure).
      }
      await sleeper.status;
    }
  });
});

Deno.test("hsyncd writes its pidfile without following a symlink planted at its temporary or final name", async () => {
  await withFixture(async (f) => {
    // The temporary name used to be predictable (`hsyncd.pid.PID.tmp`).
    const server = foreground(f, flags(f));
    const planted = `${f.pidfile}.${server.child.pid}.tmp`;
    await Deno.symlink(f.victim, planted);
    try {
      await waitListening(f, server.child, server.stderr);
      // hsyncd answers as soon as it listens; its pidfile follows.
      for (
        let i = 0;
        i < 200 && await lstatOrUndefined(f.pidfile) === undefined;
        i++
      ) {
        await new Promise((r) => setTimeout(r, 25));
      }
      await assertVictimUnchanged(f);
      const info = await Deno.lstat(f.pidfile);
      assert.ok(info.isFile, "the pidfile is a regular file");
      assert.equal((info.mode ?? 0) & 0o022, 0, "not writable by others");
      assert.equal(
        await Deno.readTextFile(f.pidfile),
        `${server.child.pid}\n`,
      );
      const stop = await run(f, ["stop"]);
      assert.equal(stop.code, 0, stop.stderr);
      assert.equal(await server.done, 0);
      await assertVictimUnchanged(f);
    } finally {
      await kill(server);
    }

    // At the final name: nobody follows it, and no start or stop trusts it.
    await Deno.remove(planted);
    await Deno.symlink(f.victim, f.pidfile);
    const start = await run(f, ["start", ...flags(f)]);
    assert.equal(start.code, 1);
    assert.equal(
      start.stderr,
      `hsyncd: Cannot start: pidfile "${f.pidfile}" is a symbolic link; remove it if no hsyncd runs\n`,
    );
    const stop = await run(f, ["stop"]);
    assert.equal(stop.code, 1);
    assert.equal(
      stop.stderr,
      `hsyncd: Cannot stop hsyncd: pidfile "${f.pidfile}" is a symbolic link; no signal was sent\n`,
    );
    await assertVictimUnchanged(f);
    assert.ok((await Deno.lstat(f.pidfile)).isSymlink);
  });
});

Deno.test("hsyncd refuses a log file name that is a symlink, in the foreground and detached, and leaves its target alone", async () => {
  await withFixture(async (f) => {
    const log = join(f.dir, "hsyncd.log");
    await Deno.symlink(f.victim, log);
    const line =
      `hsyncd: Cannot open log file "${log}": it is a symbolic link\n`;

    // Bounded: hsyncd that does not refuse serves on, and is killed.
    const server = foreground(f, [...flags(f), "-l", log]);
    const timer = setTimeout(() => kill(server), 10_000);
    assert.equal(await server.done, 1, "exits with 1 instead of serving");
    clearTimeout(timer);
    assert.equal(server.stderr(), line);
    await assertVictimUnchanged(f);
    assert.equal(await lstatOrUndefined(f.pidfile), undefined);

    const detached = await run(f, ["start", ...flags(f), "-l", log]);
    assert.equal(detached.code, 1);
    assert.equal(detached.stderr, line);
    await assertVictimUnchanged(f);

    // A failure before the log is open is still appended to the -l file
    // (where `start` looks for it), but not through a symlink.
    const badTls = join(f.dir, "bad_tls.ini");
    await Deno.writeTextFile(badTls, "[hsyncd]\nCert_file = /nowhere.pem\n");
    const early = await run(f, [...flags(f), "-c", badTls, "-l", log]);
    assert.equal(early.code, 1);
    assert.equal(
      early.stderr,
      "hsyncd: Cannot serve HTTPS: Cert_file is set but Key_file is not\n",
    );
    await assertVictimUnchanged(f);

    // The detached default log in HSYNC_DIR, too.
    await Deno.symlink(f.victim, join(f.hsyncDir, "hsyncd.log"));
    const byDefault = await run(f, ["start", ...flags(f)]);
    assert.equal(byDefault.code, 1);
    assert.equal(
      byDefault.stderr,
      `hsyncd: Cannot open log file "${
        join(f.hsyncDir, "hsyncd.log")
      }": it is a symbolic link\n`,
    );
    await assertVictimUnchanged(f);
  });
});

Deno.test("hsyncd never writes to a symlink planted at its log name while it rotates", async () => {
  await withFixture(async (f) => {
    // Deno opens a file by resolving every component in user space first;
    // a deep directory widens the window between rotation's rename and that
    // open, so the attacker below wins it within a second.
    const logDir = join(f.dir, ...Array(60).fill("d"));
    await Deno.mkdir(logDir, { recursive: true });
    const log = join(logDir, "access.log");
    // A second local user: plants `access.log -> victim` the instant
    // rotation renames the log away, in a tight loop.
    const attacker = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `const [victim, log] = Deno.args; const end = Date.now() + 5000;
         while (Date.now() < end) {
           try { Deno.symlinkSync(victim, log); } catch { /* exists */ }
         }`,
        f.victim,
        log,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    });
    const server = foreground(f, [...flags(f), "-l", log]);
    let raiders: Deno.ChildProcess[] = [];
    try {
      await waitListening(f, server.child, server.stderr);
      raiders = [1, 2, 3].map(() => attacker.spawn());
      for (const r of raiders) f.pids.add(r.pid);
      // Until the attacker holds the name and hsyncd has had lines to
      // write since (at most 5 s).
      const deadline = Date.now() + 5000;
      let won: number | undefined;
      let n = 0;
      while (Date.now() < Math.min(deadline, (won ?? Infinity) + 300)) {
        if (won === undefined && (await lstatOrUndefined(log))?.isSymlink) {
          won = Date.now();
        }
        const batch = Array.from(
          { length: 8 },
          () => fetch(`http://${HOST}:${f.port}/v1/health?n=${n++}`),
        );
        for (const r of await Promise.all(batch)) await r.body?.cancel();
      }
      await stopAll(raiders);
      server.child.kill("SIGTERM");
      assert.equal(await server.done, 0, server.stderr());
      await assertVictimUnchanged(f);
      assert.ok(
        (await Deno.lstat(log)).isSymlink,
        "the attacker won the log name during a rotation",
      );
      // Refused in one line (an open that merely failed would say nothing).
      assert.ok(
        server.stderr().includes(
          `hsyncd: Cannot open log file "${log}": it is a symbolic link;`,
        ),
        server.stderr(),
      );
    } finally {
      await stopAll(raiders);
      await kill(server);
    }
  }, "Log_max_bytes = 300\nLog_keep = 2\n");
});
