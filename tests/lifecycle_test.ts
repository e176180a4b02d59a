/** Tests of lib/server/lifecycle.ts in process: serve() prints through the terminal it is given and listens through the signals it is given. */
import assert from "node:assert/strict";
import { join } from "node:path";
import defaults from "../hsync.ini" with { type: "text" };
import {
  loadConfig,
  type Overrides,
  serverSettings,
} from "../lib/shared/config.ts";
import { ConfigError } from "../lib/shared/errors.ts";
import { pidfilePath, readPidfile } from "../lib/server/daemon.ts";
import {
  serve,
  type ServeSignals,
  type Terminal,
} from "../lib/server/lifecycle.ts";
import { freePort } from "./_programs.ts";

async function settingsFor(hsyncDir: string, overrides: Overrides) {
  const config = await loadConfig({
    defaults,
    hsyncDir,
    readTextFile: () => Promise.reject(new Deno.errors.NotFound("none")),
  });
  return serverSettings(config, overrides);
}

/** Signals the test sends by hand: `stop()` is a SIGTERM, `hangup()` a SIGHUP. */
function fakeSignals() {
  let onFirst!: (name: string) => void;
  const first = new Promise<string>((r) => onFirst = r);
  const hangups = new Set<() => void>();
  let listening = false;
  const signals: ServeSignals = {
    watchStop() {
      listening = true;
      return {
        first,
        second: new Promise<string>(() => {}),
        remove() {
          listening = false;
        },
      };
    },
    onHangup(listener) {
      hangups.add(listener);
      return () => hangups.delete(listener);
    },
  };
  return {
    signals,
    stop: () => onFirst("SIGTERM"),
    hangup: () => {
      for (const listener of hangups) listener();
    },
    get listening() {
      return listening;
    },
    get hangupListeners() {
      return hangups.size;
    },
  };
}

/** Lines given to the terminal, and a wait for one that matches. */
function fakeTerminal() {
  const out: string[] = [];
  const err: string[] = [];
  const terminal: Terminal = {
    out: (line) => out.push(line),
    err: (line) => err.push(line),
  };
  async function waitFor(lines: string[], pattern: RegExp): Promise<string> {
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      const line = lines.find((l) => pattern.test(l));
      if (line !== undefined) return line;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`no line matching ${pattern}: ${JSON.stringify(lines)}`);
  }
  return { terminal, out, err, waitFor };
}

/** A fresh temporary directory with `state` (HSYNC_DIR) and `data` (served) paths; removed by `await using`. */
async function lifecycleDirs() {
  const tmp = await Deno.realPath(
    await Deno.makeTempDir({ prefix: "hsync_lifecycle_" }),
  );
  const data = join(tmp, "data");
  await Deno.mkdir(data, { recursive: true });
  return {
    hsyncDir: join(tmp, "state"),
    data,
    async [Symbol.asyncDispose]() {
      await Deno.remove(tmp, { recursive: true });
    },
  };
}

Deno.test("serve() announces on the terminal, applies new rules on a hangup, keeps them when a reload fails, and stops on the stop signal", async () => {
  await using dirs = await lifecycleDirs();
  const { hsyncDir, data } = dirs;
  await Deno.writeTextFile(join(data, "a.txt"), "alpha");
  const port = freePort();
  const overrides = {
    Host_ip: "127.0.0.1",
    Port: String(port),
    Only_allowed_path: data,
  };
  const settings = await settingsFor(hsyncDir, overrides);
  const pidfile = pidfilePath(hsyncDir);
  const fake = fakeSignals();
  const t = fakeTerminal();
  const logged: string[] = [];
  let reloads = 0;
  const serving = serve({
    settings,
    hsyncDir,
    pidfile,
    warnings: [],
    reload: async () => {
      reloads++;
      if (reloads === 2) throw new ConfigError('Bad value of Port: "x"');
      return {
        settings: await settingsFor(hsyncDir, {
          ...overrides,
          Port: String(port + 1),
          Forbidden_file: "a.txt",
        }),
        warnings: [],
      };
    },
    terminal: t.terminal,
    logStream: new WritableStream({
      write(chunk) {
        logged.push(new TextDecoder().decode(chunk));
      },
    }),
    signals: fake.signals,
  });
  const listening = await t.waitFor(t.out, /listening on/);
  assert.match(
    listening,
    new RegExp(
      `^hsyncd \\S+ listening on http://127\\.0\\.0\\.1:${port}/ \\(pid ${Deno.pid}\\)$`,
    ),
  );
  assert.ok(fake.listening);
  assert.equal((await readPidfile(pidfile) as { port: number }).port, port);
  const url = `http://127.0.0.1:${port}/v1/file?path=${
    encodeURIComponent(join(data, "a.txt"))
  }`;
  assert.equal(await (await fetch(url)).text(), "alpha");

  fake.hangup();
  const reloaded = await t.waitFor(t.out, /^Reloaded the configuration/);
  // The socket is the one it listens on: a new Port waits for a restart.
  assert.equal(
    reloaded,
    "Reloaded the configuration on SIGHUP (changes to Port apply after a restart)",
  );
  // The new rules apply to the next request.
  const now = await fetch(url);
  assert.equal(now.status, 403);
  await now.body?.cancel();
  fake.hangup();
  await new Promise((r) => setTimeout(r, 200));
  // Without a log file, the failure is a warning in the log (standard error).
  assert.ok(
    logged.some((l) =>
      l.includes(
        'Reload on SIGHUP failed, the previous configuration stays: Bad value of Port: "x"',
      )
    ),
    logged.join(""),
  );
  // The reloaded rules stay.
  const refused = await fetch(url);
  assert.equal(refused.status, 403);
  assert.equal((await refused.json()).error, "forbidden_file");

  fake.stop();
  assert.equal(await serving, 0);
  assert.deepEqual(t.out.slice(-1), [`hsyncd stopped (pid ${Deno.pid})`]);
  assert.deepEqual(t.err, []);
  assert.ok(!fake.listening);
  assert.equal(fake.hangupListeners, 0);
  assert.equal(await readPidfile(pidfile), undefined);
  assert.ok(logged.some((l) => l.includes("Received SIGTERM")));
});

Deno.test("serve() listens for a hangup before it says it listens: a reload sent as soon as the line shows never meets the default action (the end of the process)", async () => {
  await using dirs = await lifecycleDirs();
  const { hsyncDir, data } = dirs;
  const overrides = {
    Host_ip: "127.0.0.1",
    Port: String(freePort()),
    Only_allowed_path: data,
  };
  const settings = await settingsFor(hsyncDir, overrides);
  const fake = fakeSignals();
  const t = fakeTerminal();
  // Hangup listeners at the moment the line is printed.
  let atListening: number | undefined;
  const serving = serve({
    settings,
    hsyncDir,
    pidfile: pidfilePath(hsyncDir),
    warnings: [],
    reload: async () => ({
      settings: await settingsFor(hsyncDir, overrides),
      warnings: [],
    }),
    terminal: {
      out: (line) => {
        if (line.includes(" listening on ")) {
          atListening = fake.hangupListeners;
        }
        t.terminal.out(line);
      },
      err: t.terminal.err,
    },
    logStream: new WritableStream(),
    signals: fake.signals,
  });
  await t.waitFor(t.out, /listening on/);
  assert.equal(atListening, 1);
  fake.hangup();
  await t.waitFor(t.out, /^Reloaded the configuration on SIGHUP$/);
  fake.stop();
  assert.equal(await serving, 0);
  assert.equal(fake.hangupListeners, 0);
});

Deno.test("serve() refuses an address in use in one line naming it, and leaves no pidfile", async () => {
  const tmp = await Deno.realPath(
    await Deno.makeTempDir({ prefix: "hsync_lifecycle_" }),
  );
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const hsyncDir = join(tmp, "state");
    const port = (busy.addr as Deno.NetAddr).port;
    const settings = await settingsFor(hsyncDir, {
      Host_ip: "127.0.0.1",
      Port: String(port),
      Only_allowed_path: tmp,
    });
    const fake = fakeSignals();
    const t = fakeTerminal();
    await assert.rejects(
      serve({
        settings,
        hsyncDir,
        pidfile: pidfilePath(hsyncDir),
        warnings: [],
        reload: () => Promise.reject(new Error("not called")),
        terminal: t.terminal,
        logStream: new WritableStream(),
        signals: fake.signals,
      }),
      (e: unknown) =>
        e instanceof ConfigError &&
        e.message ===
          `Cannot listen on 127.0.0.1:${port}: address already in use`,
    );
    assert.ok(!fake.listening);
    assert.equal(await readPidfile(pidfilePath(hsyncDir)), undefined);
    assert.deepEqual(t.out, []);
  } finally {
    busy.close();
    await Deno.remove(tmp, { recursive: true });
  }
});
