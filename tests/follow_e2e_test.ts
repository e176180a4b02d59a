/** End-to-end tests of `hsync --sync` against the real hsyncd: every scenario ends with the local copy byte-identical to the server's. */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type RunningClient,
  type RunningServer,
  snapshotTree,
  spawnClient,
  startServer,
  tempDir,
  waitFor,
} from "./_programs.ts";

/** Both trees hold the same names, types and bytes. */
async function sameTree(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([snapshotTree(a), snapshotTree(b)]);
  if (x.size !== y.size) return false;
  for (const [k, v] of x) {
    const w = y.get(k);
    if (w === undefined) return false;
    if (typeof v === "string" || typeof w === "string") {
      if (v !== w) return false;
    } else if (v.length !== w.length || !v.every((byte, i) => byte === w[i])) {
      return false;
    }
  }
  return true;
}

async function sameFile(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([Deno.readFile(a), Deno.readFile(b)]);
  return x.length === y.length && x.every((byte, i) => byte === y[i]);
}

/** Waits until the trees match, then asserts it (the assertion shows the difference). */
async function converged(
  what: string,
  data: string,
  out: string,
  client: RunningClient,
): Promise<void> {
  try {
    await waitFor(what, () => sameTree(data, out));
  } catch (error) {
    throw new Error(
      `${(error as Error).message}\nhsync said:\n${client.stderr()}`,
    );
  }
  assert.deepEqual(await snapshotTree(out), await snapshotTree(data));
}

interface Fixture {
  root: string;
  data: string;
  out: string;
  clientIni: string;
  clientEnv: Record<string, string>;
  server: RunningServer;
  serverConfig: string;
}

/** A temporary tree, hsyncd serving `data`, and a client configuration with quick timeouts. */
async function fixture(
  root: string,
  hsync: Record<string, string> = {},
): Promise<Fixture> {
  const data = join(root, "data");
  await Deno.mkdir(data);
  const serverConfig = `[hsyncd]\nOnly_allowed_path = ${data}\n`;
  const server = await startServer({ config: serverConfig, dir: root });
  const clientIni = join(root, "client.ini");
  const keys = { Data_timeout: "6", Max_timeout_retry: "20", ...hsync };
  await Deno.writeTextFile(
    clientIni,
    `[hsync]\n${
      Object.entries(keys).map(([k, v]) => `${k} = ${v}`).join("\n")
    }\n`,
  );
  await Deno.mkdir(join(root, "client-dir"));
  return {
    root,
    data,
    out: join(root, "out"),
    clientIni,
    clientEnv: { HSYNC_DIR: join(root, "client-dir") },
    server,
    serverConfig,
  };
}

function follow(f: Fixture, remote: string, local: string, ...extra: string[]) {
  return spawnClient(
    [
      "--sync",
      "-p",
      String(f.server.port),
      "-c",
      f.clientIni,
      "-i",
      remote,
      "-o",
      local,
      ...extra,
    ],
    f.clientEnv,
  );
}

async function append(path: string, text: string): Promise<void> {
  await Deno.writeTextFile(path, text, { append: true });
}

Deno.test("hsync --sync keeps a directory of many files identical through appends, a new file and directory, a rotation and a truncation", async (t) => {
  await using tmp = await tempDir();
  const f = await fixture(tmp.path);
  await using _server = f.server;
  for (let d = 0; d < 4; d++) {
    await Deno.mkdir(join(f.data, `d${d}`));
    for (let i = 0; i < 50; i++) {
      await Deno.writeTextFile(
        join(f.data, `d${d}`, `f${i}.log`),
        `start ${i}\n`,
      );
    }
  }
  await using client = follow(f, f.data, f.out);
  await converged("the first pull", f.data, f.out, client);

  await t.step("appends to many files while following", async () => {
    for (let round = 0; round < 5; round++) {
      for (let d = 0; d < 4; d++) {
        for (let i = round; i < 50; i += 3) {
          await append(join(f.data, `d${d}`, `f${i}.log`), `line ${round}\n`);
        }
      }
    }
    await converged("the appends", f.data, f.out, client);
  });

  await t.step("a new file and a new directory with files appear", async () => {
    await Deno.writeTextFile(join(f.data, "new.txt"), "fresh\n");
    await Deno.mkdir(join(f.data, "later/deeper"), { recursive: true });
    await Deno.writeTextFile(join(f.data, "later/deeper/x.log"), "x\n");
    await append(join(f.data, "later/deeper/x.log"), "more x\n");
    await converged("the new entries", f.data, f.out, client);
  });

  await t.step(
    "a rotated file (renamed away, created again) is fetched again",
    async () => {
      const log = join(f.data, "d1/f7.log");
      await Deno.rename(log, join(f.data, "d1/f7.log.1"));
      await Deno.writeTextFile(log, "after rotation\n");
      await converged("the rotation", f.data, f.out, client);
      await waitFor(
        "the notice",
        () => client.stderr().includes("d1/f7.log was"),
      );
    },
  );

  await t.step(
    "a truncated file, and one rewritten longer in place, are fetched again",
    async () => {
      await Deno.truncate(join(f.data, "d2/f3.log"), 0);
      await append(join(f.data, "d2/f3.log"), "short\n");
      const same = join(f.data, "d3/f4.log");
      const before = (await Deno.readTextFile(same)).length;
      await Deno.writeTextFile(same, "X".repeat(before * 3));
      await converged("the truncations", f.data, f.out, client);
    },
  );

  const result = await client.stop();
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /stopped following/);
});

Deno.test("hsync --sync follows one file's appends (small and large) and its rotation", async () => {
  await using tmp = await tempDir();
  const f = await fixture(tmp.path);
  await using _server = f.server;
  const log = join(f.data, "run.log");
  await Deno.writeTextFile(log, "header\n");
  await Deno.mkdir(f.out);
  await using client = follow(f, log, `${f.out}/`);
  const local = join(f.out, "run.log");
  await waitFor("the first pull", () => sameFile(log, local));
  for (let i = 0; i < 50; i++) await append(log, `line ${i}\n`);
  await waitFor("small appends", () => sameFile(log, local));
  const big = new Uint8Array(3 * 1024 * 1024).map((_, i) => (i * 7) & 0xff);
  await Deno.writeFile(log, big, { append: true });
  await waitFor("a large append", () => sameFile(log, local));
  await Deno.rename(log, `${log}.1`);
  await Deno.writeTextFile(log, "new run\n");
  await waitFor("the rotation", () => sameFile(log, local));
  await append(log, "after rotation\n");
  await waitFor("appends after the rotation", () => sameFile(log, local));
  assert.deepEqual(await Deno.readFile(local), await Deno.readFile(log));
  const result = await client.stop();
  assert.equal(result.code, 0, result.stderr);
});

Deno.test("hsync --sync reconnects after a server restart and catches up on what was written meanwhile; hsyncd stops without waiting for the long-poll", async () => {
  await using tmp = await tempDir();
  const f = await fixture(tmp.path);
  const log = join(f.data, "a.log");
  await Deno.writeTextFile(log, "one\n");
  await using client = follow(f, f.data, f.out);
  try {
    await converged("the first pull", f.data, f.out, client);
    // A graceful stop ends the follower's long-poll at once (the hub closes first).
    assert.equal(await f.server.stop(), 0);
    assert.doesNotMatch(f.server.stderr(), /still in flight/);
    await append(log, "written while the server was down\n");
    await Deno.writeTextFile(join(f.data, "b.log"), "new while down\n");
    await waitFor(
      "the client to notice",
      () => /cannot reach/.test(client.stderr()),
    );
    await using again = await startServer({
      config: f.serverConfig,
      dir: f.root,
      port: f.server.port,
    });
    await converged("the catch-up", f.data, f.out, client);
    await append(log, "after the restart\n");
    await converged("appends after the restart", f.data, f.out, client);
    assert.match(client.stderr(), /reconnected/);
    const result = await client.stop();
    assert.equal(result.code, 0, result.stderr);
    void again;
  } finally {
    await f.server.stop();
  }
});

Deno.test("a restarted follower continues each file from its last byte instead of fetching it again", async () => {
  await using tmp = await tempDir();
  const f = await fixture(tmp.path);
  await using _server = f.server;
  const log = join(f.data, "big.log");
  await Deno.writeFile(log, new Uint8Array(2 * 1024 * 1024).fill(65));
  const first = follow(f, f.data, f.out);
  await converged("the first run", f.data, f.out, first);
  const stopped = await first.stop("SIGINT");
  assert.equal(stopped.code, 0, stopped.stderr);
  const local = join(f.out, "big.log");
  const inode = (await Deno.stat(local)).ino;

  await append(log, "appended while no follower ran\n");
  await using second = follow(f, f.data, f.out);
  await converged("the second run", f.data, f.out, second);
  await append(log, "and while the second one runs\n");
  await converged("the second run's appends", f.data, f.out, second);
  const result = await second.stop();
  assert.equal(result.code, 0, result.stderr);
  // Appended in place: the same file, and nothing fetched whole.
  assert.equal((await Deno.stat(local)).ino, inode);
  assert.match(result.stderr, /continuing where the last run stopped/);
  assert.match(result.stderr, /0 file\(s\) fetched whole/);
  assert.match(result.stderr, / 61 B appended/);
});

Deno.test("hsync --sync exits 4 with one line after Max_timeout_retry failed reconnections", async () => {
  await using tmp = await tempDir();
  const f = await fixture(tmp.path, { Max_timeout_retry: "2" });
  await Deno.writeTextFile(join(f.data, "a.log"), "a\n");
  await using client = follow(f, f.data, f.out);
  await converged("the first pull", f.data, f.out, client);
  await waitFor("following", () => client.stderr().includes("following into"));
  f.server.process.kill("SIGKILL");
  await f.server.stop();
  const result = await client.exited;
  assert.equal(result.code, 4, result.stderr);
  assert.match(
    result.stderr,
    /hsync: Cannot reach 127\.0\.0\.1:\d+ after 3 attempts: connection refused; stopped following\n/,
  );
  assert.doesNotMatch(result.stderr, /\n\s+at /);
});
