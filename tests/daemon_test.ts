/** Tests of hsyncd's process helpers: pidfile, liveness, stale detection, uptime, self command. */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  checkPidfile,
  connectHost,
  exposureWarning,
  formatUptime,
  isHsyncdExecutable,
  isLoopback,
  ownProcessStart,
  parseProcFacts,
  parseUids,
  pidfilePath,
  type PidInfo,
  type ProcessFacts,
  type ProcessProbe,
  readPidfile,
  removePidfile,
  selfCommand,
  serverUrl,
  systemProbe,
  waitForPortFree,
  waitUntilGone,
  writePidfile,
} from "../lib/server/daemon.ts";
import { RUNTIME_FLAGS } from "../lib/shared/runtime_flags.ts";

function info(more: Partial<PidInfo> = {}): PidInfo {
  return {
    pid: 4242,
    host: "127.0.0.1",
    port: 10808,
    scheme: "http",
    started: "2026-11-23T10:00:00.000Z",
    procStart: 1000,
    version: "0.1.0",
    ...more,
  };
}

/** The uid of files this test creates (the test may run as root or not). */
const UID = Deno.statSync(Deno.makeTempDirSync()).uid ?? 0;
const EXE = "/usr/local/bin/hsyncd";

/** Facts of a process of this user running hsyncd, with `more` changed. */
function hsyncdFacts(more: Partial<ProcessFacts> = {}): ProcessFacts {
  return {
    state: "S",
    start: 1000,
    cmdline: [EXE],
    uids: [UID, UID, UID, UID],
    exe: EXE,
    ...more,
  };
}

/** A fake process table: pid -> facts (undefined: exists, but /proc cannot be read). */
function fakeProbe(
  table: Map<number, ProcessFacts | undefined>,
  self: { uid?: number; exe?: string } = {},
): ProcessProbe {
  return {
    exists: (pid) => table.has(pid),
    facts: (pid) => Promise.resolve(table.get(pid)),
    self: () =>
      Promise.resolve({
        uid: "uid" in self ? self.uid : UID,
        exe: self.exe ?? EXE,
      }),
  };
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "hsyncd_daemon_test_" });
  await Deno.chmod(dir, 0o755);
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("writePidfile() and readPidfile() round-trip, creating the directory", async () => {
  await withTempDir(async (dir) => {
    const path = pidfilePath(join(dir, "nested"));
    assert.equal(await readPidfile(path), undefined);
    await writePidfile(path, info());
    assert.deepEqual(await readPidfile(path), info());
    const names = [...Deno.readDirSync(join(dir, "nested"))].map((e) => e.name);
    assert.deepEqual(
      names.sort(),
      ["hsyncd.json", "hsyncd.pid"],
      "no temporary file is left behind",
    );
  });
});

Deno.test("readPidfile() calls a file that is not a pidfile invalid", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "hsyncd.pid");
    for (const text of ["", "-1234\n", "{}", '{"pid": -1}', "not json"]) {
      await Deno.writeTextFile(path, text);
      assert.equal(await readPidfile(path), "invalid", text);
    }
  });
});

Deno.test("removePidfile() with a pid leaves a pidfile naming another process", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "hsyncd.pid");
    await writePidfile(path, info({ pid: 7 }));
    await removePidfile(path, 8);
    assert.notEqual(await readPidfile(path), undefined);
    await removePidfile(path, 7);
    assert.equal(await readPidfile(path), undefined);
    await removePidfile(path); // absent is fine
  });
});

Deno.test("checkPidfile() tells absent, running and stale apart", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "hsyncd.pid");
    const table = new Map<number, ProcessFacts>([
      [4242, hsyncdFacts()],
      [5000, hsyncdFacts({ start: 9999, cmdline: ["bash"] })],
      [6000, hsyncdFacts({ state: "Z", cmdline: [] })],
    ]);
    const probe = fakeProbe(table);
    assert.deepEqual(await checkPidfile(path, probe), { state: "absent" });

    await writePidfile(path, info());
    assert.deepEqual(await checkPidfile(path, probe), {
      state: "running",
      info: info(),
    });

    const cases: Array<[string, PidInfo]> = [
      ["the process is gone", info({ pid: 4243 })],
      ["the pid was recycled", info({ pid: 5000 })],
      ["the process is a zombie", info({ pid: 6000 })],
    ];
    for (const [why, written] of cases) {
      await writePidfile(path, written);
      assert.deepEqual(await checkPidfile(path, probe), {
        state: "stale",
        info: written,
        reason: `pid ${written.pid} is not running`,
      }, why);
    }

    await Deno.writeTextFile(path, "garbage");
    assert.deepEqual(await checkPidfile(path, probe), {
      state: "stale",
      reason: "it is not an hsyncd pidfile",
    });
  });
});

Deno.test("checkPidfile() without a recorded start time trusts only a command line naming hsyncd", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "hsyncd.pid");
    const table = new Map<number, ProcessFacts>([
      [1, hsyncdFacts({ start: 5, cmdline: ["/sbin/init"] })],
      [2, hsyncdFacts({ start: 5, cmdline: ["/usr/local/bin/hsyncd"] })],
      [
        3,
        hsyncdFacts({
          start: 5,
          cmdline: ["deno", "run", "main_server.ts"],
          exe: "/usr/bin/deno",
        }),
      ],
    ]);
    for (
      const [pid, expected] of [[1, "stale"], [2, "running"], [3, "running"]]
    ) {
      await writePidfile(
        path,
        info({ pid: pid as number, procStart: undefined }),
      );
      const state = await checkPidfile(path, fakeProbe(table));
      assert.equal(state.state, expected, `pid ${pid}`);
    }
  });
});

Deno.test("systemProbe tells an hsyncd of this user from this test process, a recycled pid and an exited process", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "hsyncd.pid");
    const start = await ownProcessStart();
    assert.ok(start !== undefined && start > 0);
    // This process runs deno, but its command line names no hsyncd.
    await writePidfile(path, info({ pid: Deno.pid, procStart: start }));
    assert.deepEqual(await checkPidfile(path), {
      state: "untrusted",
      info: info({ pid: Deno.pid, procStart: start }),
      reason:
        `names pid ${Deno.pid}, which is not this user's hsyncd: its command line does not name hsyncd`,
    });
    await writePidfile(path, info({ pid: Deno.pid, procStart: start + 1 }));
    assert.equal((await checkPidfile(path)).state, "stale", "a recycled pid");

    // The same executable as this process, with hsyncd on its command line.
    const script = join(dir, "hsyncd_stand_in.ts");
    await Deno.writeTextFile(script, "setTimeout(() => {}, 60_000);\n");
    const standIn = new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", script],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      let procStart: number | undefined;
      for (let i = 0; i < 100 && procStart === undefined; i++) {
        const facts = await systemProbe.facts(standIn.pid);
        if (facts?.cmdline.includes(script)) procStart = facts.start;
        else await new Promise((r) => setTimeout(r, 20));
      }
      await writePidfile(path, info({ pid: standIn.pid, procStart }));
      assert.equal((await checkPidfile(path)).state, "running");
    } finally {
      standIn.kill("SIGKILL");
      await standIn.status;
    }

    const child = new Deno.Command("true").spawn();
    await child.status;
    assert.equal(systemProbe.exists(child.pid), false);
    await writePidfile(path, info({ pid: child.pid }));
    assert.equal((await checkPidfile(path)).state, "stale");
  });
});

Deno.test("systemProbe reads the owner and executable of a process, and who this process is", async () => {
  const sleeper = new Deno.Command("sleep", {
    args: ["30"],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    const facts = await systemProbe.facts(sleeper.pid);
    assert.ok(facts !== undefined);
    assert.deepEqual(facts.uids?.slice(0, 2), [Deno.uid(), Deno.uid()]);
    assert.match(facts.exe ?? "", /\/sleep$/);
    assert.match(facts.cmdline[0], /sleep$/);
    assert.equal(facts.cmdline[1], "30");
  } finally {
    sleeper.kill("SIGKILL");
    await sleeper.status;
  }
  assert.deepEqual(await systemProbe.self(), {
    uid: Deno.uid(),
    exe: Deno.execPath(),
  });
});

Deno.test("checkPidfile() refuses a live process with the recorded start time that is not this user's hsyncd", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "hsyncd.pid");
    const not = "names pid 4242, which is not this user's hsyncd";
    const cases: Array<[string, ProcessFacts | undefined, string]> = [
      [
        "a forged pidfile naming sleep",
        hsyncdFacts({ exe: "/usr/bin/sleep", cmdline: ["sleep", "60"] }),
        `${not}: its executable "/usr/bin/sleep" is not hsyncd`,
      ],
      [
        "a renamed executable",
        hsyncdFacts({ exe: "/usr/bin/bash", cmdline: ["hsyncd"] }),
        `${not}: its executable "/usr/bin/bash" is not hsyncd`,
      ],
      [
        "another user's process",
        hsyncdFacts({ uids: [UID + 1, UID + 1, UID + 1, UID + 1] }),
        `${not}: it runs as uid ${UID + 1}`,
      ],
      [
        "a setuid process",
        hsyncdFacts({ uids: [UID, UID + 1, UID + 1, UID + 1] }),
        `${not}: it runs as uid ${UID}`,
      ],
      [
        "an owner that cannot be read",
        hsyncdFacts({ uids: undefined }),
        `${not}: it runs as an unknown uid`,
      ],
      [
        "an executable that cannot be read",
        hsyncdFacts({ exe: undefined }),
        `${not}: its executable cannot be read`,
      ],
      [
        "a command line not naming hsyncd",
        hsyncdFacts({ cmdline: ["/usr/local/bin/other"] }),
        `${not}: its command line does not name hsyncd`,
      ],
      [
        "a process whose /proc cannot be read",
        undefined,
        "names pid 4242, which cannot be checked: /proc/4242 cannot be read",
      ],
    ];
    await writePidfile(path, info());
    for (const [why, facts, reason] of cases) {
      const probe = fakeProbe(new Map([[4242, facts]]));
      assert.deepEqual(await checkPidfile(path, probe), {
        state: "untrusted",
        info: info(),
        reason,
      }, why);
    }
    const unknownSelf = fakeProbe(new Map([[4242, hsyncdFacts()]]), {
      uid: undefined,
    });
    assert.deepEqual(await checkPidfile(path, unknownSelf), {
      state: "untrusted",
      reason: "cannot be checked: this user's uid cannot be read",
    });
    // The same binary after an upgrade replaced it on disk.
    const upgraded = fakeProbe(
      new Map([[4242, hsyncdFacts({ exe: "/opt/hs/bin/x (deleted)" })]]),
      { exe: "/opt/hs/bin/x" },
    );
    assert.equal((await checkPidfile(path, upgraded)).state, "running");
  });
});

Deno.test("checkPidfile() trusts no pidfile others could have written: a symlink, not a regular file, not ours, loose mode, hard links, an open directory", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "hsyncd.pid");
    const probe = fakeProbe(new Map([[4242, hsyncdFacts()]]));
    const real = join(dir, "elsewhere.json");
    await Deno.writeTextFile(real, JSON.stringify(info()), { mode: 0o644 });
    await Deno.chmod(real, 0o644);
    const untrusted = async (why: string, reason: string) =>
      assert.deepEqual(
        await checkPidfile(path, probe),
        { state: "untrusted", reason },
        why,
      );

    await Deno.symlink(real, path);
    await untrusted("a symlink", "is a symbolic link");
    await Deno.remove(path);

    await Deno.mkdir(path);
    await untrusted("a directory", "is not a regular file");
    await Deno.remove(path);

    await Deno.link(real, path);
    await untrusted("a hard link", "has 2 hard links");
    await Deno.remove(path);

    await writePidfile(path, info());
    assert.equal((await checkPidfile(path, probe)).state, "running");
    await Deno.chmod(path, 0o664);
    await untrusted(
      "group-writable",
      "is writable by group or others (mode 0664)",
    );
    await Deno.chmod(path, 0o646);
    await untrusted(
      "world-writable",
      "is writable by group or others (mode 0646)",
    );
    await Deno.chmod(path, 0o644);

    const other = fakeProbe(new Map([[4242, hsyncdFacts()]]), {
      uid: UID + 7,
    });
    assert.deepEqual(await checkPidfile(path, other), {
      state: "untrusted",
      reason: `is owned by uid ${UID}, not by this user (uid ${UID + 7})`,
    });

    await Deno.chmod(dir, 0o1777);
    await untrusted(
      "an HSYNC_DIR anyone can write",
      `is in "${dir}", which others can write (mode 1777)`,
    );
    await Deno.chmod(dir, 0o755);
    assert.equal((await checkPidfile(path, probe)).state, "running");
  });
});

Deno.test("writePidfile() follows no symlink planted at a temporary name or at the pidfile", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "hsyncd.pid");
    const victim = join(dir, "victim.txt");
    await Deno.writeTextFile(victim, "victim\n");
    // The temporary name used to be `hsyncd.pid.PID.tmp`, easy to plant.
    await Deno.symlink(victim, `${path}.${info().pid}.tmp`);
    await writePidfile(path, info());
    assert.equal(await Deno.readTextFile(victim), "victim\n");
    const written = await Deno.lstat(path);
    assert.ok(written.isFile);
    assert.equal((written.mode ?? 0) & 0o777, 0o644);
    assert.deepEqual(await readPidfile(path), info());

    await Deno.remove(path);
    await Deno.symlink(victim, path);
    await writePidfile(path, info());
    assert.equal(await Deno.readTextFile(victim), "victim\n");
    assert.ok((await Deno.lstat(path)).isFile, "the symlink was replaced");
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(names, [
      "hsyncd.json",
      "hsyncd.pid",
      `hsyncd.pid.${info().pid}.tmp`,
      "victim.txt",
    ], "no temporary file of its own is left");
  });
});

Deno.test("readPidfile() reads no symlink, FIFO or oversized file as a pidfile", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "hsyncd.pid");
    const real = join(dir, "real.json");
    await Deno.writeTextFile(real, JSON.stringify(info()));
    await Deno.symlink(real, path);
    assert.equal(await readPidfile(path), "invalid");
    await Deno.remove(path);
    const mkfifo = await new Deno.Command("mkfifo", { args: [path] }).output();
    assert.ok(mkfifo.success);
    assert.equal(await readPidfile(path), "invalid", "without hanging");
    await Deno.remove(path);
    await Deno.writeTextFile(
      path,
      JSON.stringify({ ...info(), pad: "x".repeat(5000) }),
    );
    assert.equal(await readPidfile(path), "invalid");
  });
});

Deno.test("isHsyncdExecutable() accepts this program, an hsyncd binary and deno", () => {
  const own = "/usr/local/bin/hsyncd";
  const cases: Array<[string, boolean]> = [
    ["/usr/local/bin/hsyncd", true],
    ["/usr/local/bin/hsyncd (deleted)", true],
    ["/opt/hsync/hsyncd-0.2", true],
    ["/home/u/.deno/bin/deno", true],
    ["/usr/bin/sleep", false],
    ["/usr/bin/bash", false],
    ["/tmp/not-hsyncd", false],
  ];
  for (const [exe, expected] of cases) {
    assert.equal(isHsyncdExecutable(exe, own), expected, exe);
  }
  assert.equal(isHsyncdExecutable("/srv/x/run", "/srv/x/run"), true);
});

Deno.test("parseUids() reads the Uid line of /proc/PID/status", () => {
  const status = "Name:\tsleep\nUmask:\t0022\nState:\tS (sleeping)\n" +
    "Uid:\t1000\t1000\t1000\t1000\nGid:\t100\t100\t100\t100\n";
  assert.deepEqual(parseUids(status), [1000, 1000, 1000, 1000]);
  assert.equal(parseUids("Name:\tx\n"), undefined);
  assert.equal(parseUids("Uid:\tx\ty\n"), undefined);
});

Deno.test("parseProcFacts() reads state, start time and command line, whatever the process name", () => {
  const stat = "123 (my (odd) name) S 1 123 123 0 -1 4194560 110 0 0 0 0 0 " +
    "0 0 20 0 1 0 943144 2990080 409 18446744073709551615\n";
  assert.deepEqual(parseProcFacts(stat + "deno\0run\0main_server.ts\0"), {
    state: "S",
    start: 943144,
    cmdline: ["deno", "run", "main_server.ts"],
  });
  assert.equal(parseProcFacts("garbage"), undefined);
});

Deno.test("waitUntilGone() returns true once the process exits, false at the timeout", async () => {
  const table = new Map<number, ProcessFacts>([[4242, hsyncdFacts()]]);
  const probe = fakeProbe(table);
  assert.equal(await waitUntilGone(info(), 120, probe), false);
  setTimeout(() => table.delete(4242), 100);
  assert.equal(await waitUntilGone(info(), 5000, probe), true);
});

Deno.test("waitForPortFree() waits while the port is bound", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  try {
    assert.equal(await waitForPortFree("127.0.0.1", port, 150), false);
    setTimeout(() => listener.close(), 100);
    assert.equal(await waitForPortFree("127.0.0.1", port, 5000), true);
  } finally {
    try {
      listener.close();
    } catch {
      // Closed by the timer.
    }
  }
});

const uptimes: Array<[number, string]> = [
  [0, "0s"],
  [999, "0s"],
  [3_000, "3s"],
  [60_000, "1m 0s"],
  [3_723_000, "1h 2m 3s"],
  [3_600_000, "1h 0m 0s"],
  [90_061_000, "1d 1h 1m 1s"],
  [-5_000, "0s"],
];
for (const [ms, text] of uptimes) {
  Deno.test(`formatUptime(${ms}) is "${text}"`, () => {
    assert.equal(formatUptime(ms), text);
  });
}

Deno.test("serverUrl() and connectHost() bracket IPv6 and turn wildcards into loopback", () => {
  assert.equal(serverUrl("http", "0.0.0.0", 10808), "http://0.0.0.0:10808/");
  assert.equal(serverUrl("https", "::", 443), "https://[::]:443/");
  assert.equal(connectHost("0.0.0.0"), "127.0.0.1");
  assert.equal(connectHost("::"), "::1");
  assert.equal(connectHost("10.1.2.3"), "10.1.2.3");
});

Deno.test("isLoopback() knows the loopback addresses", () => {
  for (const host of ["127.0.0.1", "127.9.9.9", "::1", "localhost", "[::1]"]) {
    assert.equal(isLoopback(host), true, host);
  }
  for (const host of ["0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "fe80::1"]) {
    assert.equal(isLoopback(host), false, host);
  }
});

Deno.test("exposureWarning() warns only for an open non-loopback bind", () => {
  const open = {
    hostIp: "0.0.0.0",
    port: 10808,
    allowedHost: [],
    authorizedKeys: "",
    onlyAllowedPath: [],
  };
  assert.equal(
    exposureWarning(open),
    "WARNING: serving every readable file not refused by the path rules to ANY host that can reach 0.0.0.0:10808; set Allowed_host or Authorized_keys",
  );
  assert.equal(
    exposureWarning({ ...open, hostIp: "::", onlyAllowedPath: ["/data"] }),
    "WARNING: serving every readable file under /data not refused by the path rules to ANY host that can reach [::]:10808; set Allowed_host or Authorized_keys",
  );
  assert.equal(exposureWarning({ ...open, hostIp: "127.0.0.1" }), undefined);
  assert.equal(
    exposureWarning({ ...open, allowedHost: ["10.0.0.0/8"] }),
    undefined,
  );
  assert.equal(
    exposureWarning({ ...open, authorizedKeys: "/etc/hsync/keys" }),
    undefined,
  );
});

Deno.test("selfCommand() runs the binary when compiled and deno run -P=hsyncd from source", () => {
  const args = ["-l", "/tmp/h.log"];
  assert.deepEqual(
    selfCommand({
      execPath: "/usr/local/bin/hsyncd",
      mainModule: "file:///tmp/deno-compile-hsyncd/main_server.ts",
      standalone: true,
      args,
    }),
    { command: "/usr/local/bin/hsyncd", args },
  );
  assert.deepEqual(
    selfCommand({
      execPath: "/usr/bin/deno",
      mainModule: "file:///src/hsync/main_server.ts",
      standalone: false,
      args,
    }),
    {
      command: "/usr/bin/deno",
      args: [
        "run",
        "-P=hsyncd",
        ...RUNTIME_FLAGS.hsyncd,
        "--config",
        "/src/hsync/deno.json",
        "/src/hsync/main_server.ts",
        ...args,
      ],
    },
  );
});
