/** Tests of hsyncd's process helpers: pidfile, liveness, stale detection, uptime, self command. */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  checkPidfile,
  connectHost,
  exposureWarning,
  formatUptime,
  isLoopback,
  ownProcessStart,
  parseProcFacts,
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
} from "../lib/daemon.ts";
import { RUNTIME_FLAGS } from "../lib/runtime_flags.ts";

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

/** A fake process table: pid -> facts. */
function fakeProbe(table: Map<number, ProcessFacts>): ProcessProbe {
  return {
    exists: (pid) => table.has(pid),
    facts: (pid) => Promise.resolve(table.get(pid)),
  };
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "hsyncd_daemon_test_" });
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
    assert.deepEqual(names, ["hsyncd.pid"], "no temporary file is left behind");
  });
});

Deno.test("readPidfile() calls a file that is not a pidfile invalid", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "hsyncd.pid");
    for (const text of ["", "1234\n", "{}", '{"pid": -1}', "not json"]) {
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
      [4242, { state: "S", start: 1000, cmdline: ["hsyncd"] }],
      [5000, { state: "S", start: 9999, cmdline: ["bash"] }],
      [6000, { state: "Z", start: 1000, cmdline: [] }],
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
      [1, { state: "S", start: 5, cmdline: ["/sbin/init"] }],
      [2, { state: "S", start: 5, cmdline: ["/usr/local/bin/hsyncd"] }],
      [3, { state: "S", start: 5, cmdline: ["deno", "run", "main_server.ts"] }],
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

Deno.test("systemProbe recognises this process and a process that has exited", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "hsyncd.pid");
    const start = await ownProcessStart();
    assert.ok(start !== undefined && start > 0);
    await writePidfile(path, info({ pid: Deno.pid, procStart: start }));
    assert.equal((await checkPidfile(path)).state, "running");
    await writePidfile(path, info({ pid: Deno.pid, procStart: start + 1 }));
    assert.equal((await checkPidfile(path)).state, "stale", "a recycled pid");

    const child = new Deno.Command("true").spawn();
    await child.status;
    assert.equal(systemProbe.exists(child.pid), false);
    await writePidfile(path, info({ pid: child.pid }));
    assert.equal((await checkPidfile(path)).state, "stale");
  });
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
  const table = new Map<number, ProcessFacts>([
    [4242, { state: "S", start: 1000, cmdline: [] }],
  ]);
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
