/** End-to-end: hsyncd's daemon commands with a plain-pid pidfile, a restart that keeps what the server was started with, and two servers sharing one HSYNC_DIR (issue 21). */
import assert from "node:assert/strict";
import { join } from "node:path";
import { freePort, ROOT, serverArgv, tempDir } from "./_programs.ts";

interface Setup {
  hsyncDir: string;
  config: string;
  pids: Set<number>;
}

async function hsyncd(s: Setup, args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [...serverArgv(), ...args],
    cwd: ROOT,
    env: { HSYNC_DIR: s.hsyncDir, NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  const r = {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
  for (const m of r.stdout.matchAll(/\(pid (\d+)\)/g)) s.pids.add(Number(m[1]));
  return r;
}

async function answers(port: number): Promise<boolean> {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/v1/health`);
    await r.body?.cancel();
    return true;
  } catch {
    return false;
  }
}

Deno.test("hsyncd restart keeps the port and address the server was started with, its pidfile is a plain pid, and two servers share one HSYNC_DIR", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  const hsyncDir = join(dir.path, "hsync");
  await Deno.mkdir(hsyncDir, { mode: 0o755 });
  const config = join(dir.path, "server.ini");
  await Deno.writeTextFile(config, `[hsyncd]\nOnly_allowed_path = ${data}\n`);
  const s: Setup = { hsyncDir, config, pids: new Set() };
  const [p1, p2] = [freePort(), freePort()];
  try {
    const first = await hsyncd(s, [
      "start",
      "-p",
      `${p1}`,
      "-host",
      "127.0.0.1",
      "-c",
      config,
    ]);
    assert.equal(first.code, 0, first.stderr);
    const pidfile = join(hsyncDir, `hsyncd-${p1}.pid`);
    const pid1 = Number(await Deno.readTextFile(pidfile));
    assert.equal(
      await Deno.readTextFile(pidfile),
      `${pid1}\n`,
      "kill -HUP $(cat pidfile) works",
    );
    const facts = JSON.parse(
      await Deno.readTextFile(join(hsyncDir, `hsyncd-${p1}.json`)),
    );
    assert.equal(facts.pid, pid1);
    assert.equal(facts.port, p1);
    Deno.kill(pid1, "SIGHUP");

    // No option given: the one server there is, started again as it was.
    const restart = await hsyncd(s, ["restart"]);
    assert.equal(restart.code, 0, restart.stderr);
    assert.match(
      restart.stdout,
      new RegExp(`started \\(pid \\d+\\) on http://127\\.0\\.0\\.1:${p1}/`),
    );
    const pid2 = Number(await Deno.readTextFile(pidfile));
    assert.notEqual(pid2, pid1);
    assert.ok(await answers(p1));

    // A second server on another port beside it.
    const second = await hsyncd(s, [
      "start",
      "-p",
      `${p2}`,
      "-host",
      "127.0.0.1",
      "-c",
      config,
    ]);
    assert.equal(second.code, 0, second.stderr);
    assert.ok(await answers(p2));
    const status2 = await hsyncd(s, ["status", "-p", `${p2}`]);
    assert.equal(status2.code, 0, status2.stderr);
    assert.match(
      status2.stdout,
      new RegExp(`on http://127\\.0\\.0\\.1:${p2}/`),
    );
    const which = await hsyncd(s, ["status"]);
    assert.equal(which.code, 1);
    assert.equal(
      which.stderr,
      `hsyncd: Several hsyncd use HSYNC_DIR "${hsyncDir}" (ports ${
        [p1, p2].sort((a, b) => a - b).join(", ")
      }); say which with -p PORT\n`,
    );
    const stop2 = await hsyncd(s, ["stop", "-p", `${p2}`]);
    assert.equal(stop2.code, 0, stop2.stderr);
    assert.equal(await answers(p2), false);
    assert.ok(await answers(p1), "the other server runs on");

    const stop1 = await hsyncd(s, ["stop"]);
    assert.equal(stop1.code, 0, stop1.stderr);
    assert.equal(await answers(p1), false);
    assert.deepEqual(
      [...Deno.readDirSync(hsyncDir)].map((e) => e.name).filter((n) =>
        /\.(pid|json)$/.test(n)
      ),
      [],
    );
  } finally {
    for (const pid of s.pids) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // Already stopped.
      }
    }
  }
});
