/** End-to-end: one push at a time writes into a server destination (issue 21: two cron pushes into one directory). */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { LockLease } from "../lib/shared/wire.ts";
import {
  busyTree,
  hsyncLeftovers,
  runClient,
  snapshotTree,
  spawnClient,
  startServer,
  tempDir,
  waitFor,
} from "./_programs.ts";
import { writableHandler } from "./_server_fixture.ts";

/** Asserts `got` holds exactly the files and directories of `want`, byte for byte. */
function assertSameTree(
  got: Map<string, string | Uint8Array>,
  want: Map<string, string | Uint8Array>,
): void {
  assert.deepEqual(hsyncLeftovers(got), []);
  assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
  for (const [path, bytes] of want) {
    assert.deepEqual(got.get(path), bytes, path);
  }
}

/** hsyncd on loopback (no keys: loopback takes unsigned writes) accepting pushes below `incoming`. */
async function lockServer(dir: string) {
  const incoming = join(dir, "incoming");
  await Deno.mkdir(incoming, { recursive: true });
  const server = await startServer({
    dir,
    config: `[hsyncd]\nWritable_path = ${incoming}\n`,
  });
  return { server, incoming };
}

/** A busy tree below `dir`, a server to push it to, and the command line pushing it into its incoming directory. */
async function treePush(dir: string) {
  const src = join(dir, "tree");
  await busyTree(src);
  const { server, incoming } = await lockServer(dir);
  const args = [src, `127.0.0.1:${server.port}:${incoming}/`];
  return { src, server, incoming, args };
}

/** `POST /v1/lock` as another push would send it. */
async function lockRequest(
  base: string,
  query: Record<string, string>,
): Promise<Response> {
  return await fetch(
    `${base}/v1/lock?${new URLSearchParams(query)}`,
    { method: "POST" },
  );
}

Deno.test("two hsync pushes of one tree into one server directory at once: both exit 0, the copy is whole, nothing is sent twice", async () => {
  await using dir = await tempDir("hsync-push-lock-");
  const { src, server, incoming, args } = await treePush(dir.path);
  await using _ = server;
  await using first = spawnClient(args);
  await using second = spawnClient(args);
  const [a, b] = await Promise.all([first.exited, second.exited]);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(b.code, 0, b.stderr);
  assertSameTree(
    await snapshotTree(join(incoming, "tree")),
    await snapshotTree(src),
  );
  assert.deepEqual(hsyncLeftovers(await snapshotTree(incoming)), []);
  // One of them sent everything; the other waited, then found every file there.
  const sent = [a, b].filter((r) => /hsync: 151 files, /.test(r.stderr));
  const skipped = [a, b].filter((r) =>
    /hsync: 0 files, 0 B in .*, 151 skipped, 0 failed/.test(r.stderr)
  );
  assert.equal(sent.length, 1, `${a.stderr}\n---\n${b.stderr}`);
  assert.equal(skipped.length, 1, `${a.stderr}\n---\n${b.stderr}`);
});

Deno.test("a push learns what is at its destination with the lease: no /v1/stat of it, new or there already", async () => {
  await using dir = await tempDir("hsync-push-lock-");
  const { src, server, incoming, args } = await treePush(dir.path);
  await using _ = server;
  const first = await runClient(args);
  assert.equal(first.code, 0, first.stderr);
  const again = await runClient(args);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /hsync: 0 files, .* 151 skipped, 0 failed/);
  assertSameTree(
    await snapshotTree(join(incoming, "tree")),
    await snapshotTree(src),
  );
  await server.stop();
  const log = server.stderr();
  const dest = encodeURIComponent(join(incoming, "tree"));
  const locks = log.split("\n").filter((l) =>
    new RegExp(`POST /v1/lock\\?path=${dest}&token=[0-9a-f]{32}&stat=1 200`)
      .test(l)
  );
  assert.equal(locks.length, 2, log);
  assert.doesNotMatch(log, new RegExp(`GET /v1/stat\\?path=${dest} `));
});

Deno.test("a push into a destination another push holds waits with one line, then sends", async () => {
  await using dir = await tempDir("hsync-push-lock-");
  const src = join(dir.path, "tree");
  await Deno.mkdir(src);
  await Deno.writeTextFile(join(src, "a.txt"), "alpha\n");
  const { server, incoming } = await lockServer(dir.path);
  await using _ = server;
  const held = await lockRequest(server.url, { path: join(incoming, "tree") });
  assert.equal(held.status, 200);
  const lease = await held.json() as LockLease;
  await using client = spawnClient([
    src,
    `127.0.0.1:${server.port}:${incoming}/`,
  ]);
  await waitFor(
    "the waiting line",
    () => /waiting for another/.test(client.stderr()),
  );
  // Nothing is written while the other holds the destination.
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual([...(await snapshotTree(incoming)).keys()], []);
  const released = await lockRequest(server.url, {
    path: join(incoming, "tree"),
    token: lease.token,
    release: "1",
  });
  assert.equal(released.status, 200);
  await released.body?.cancel();
  const r = await client.exited;
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stderr.split("\n").filter((l) => /waiting/.test(l)), [
    `hsync: waiting for another hsync writing into "127.0.0.1:${server.port}:${incoming}/tree"`,
  ]);
  assert.equal(
    await Deno.readTextFile(join(incoming, "tree/a.txt")),
    "alpha\n",
  );
  // The push gave its lease back: another takes it at once.
  const after = await lockRequest(server.url, { path: join(incoming, "tree") });
  assert.equal(after.status, 200);
  await after.body?.cancel();
});

Deno.test("--no-wait: a push into a destination another push holds stops at once with one line and exit code 1", async () => {
  await using dir = await tempDir("hsync-push-lock-");
  const src = join(dir.path, "tree");
  await Deno.mkdir(src);
  await Deno.writeTextFile(join(src, "a.txt"), "alpha\n");
  const { server, incoming } = await lockServer(dir.path);
  await using _ = server;
  // The whole directory is held: a push into a directory inside it waits for it too.
  const held = await lockRequest(server.url, { path: incoming });
  assert.equal(held.status, 200);
  await held.body?.cancel();
  const r = await runClient([
    src,
    `127.0.0.1:${server.port}:${incoming}/`,
    "--no-wait",
  ]);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(
    r.stderr.trim(),
    `hsync: Another hsync is writing into "127.0.0.1:${server.port}:${incoming}/tree"; not waiting (--no-wait)`,
  );
  assert.deepEqual([...(await snapshotTree(incoming)).keys()], []);
});

/**
 * hsyncd in process (for a short lease) on loopback, accepting pushes below
 * `DIR/incoming`; while `hang` is set every upload request hangs (until
 * `unhang`), so a push surely holds its lease when it is stopped.
 */
async function hangingServer(dir: string, pushLeaseMs: number) {
  const { handler, incoming } = await writableHandler(dir, { pushLeaseMs });
  const state = { hang: true };
  let writing!: () => void;
  const firstWrite = new Promise<void>((r) => writing = r);
  let unhang!: () => void;
  const hung = new Promise<void>((r) => unhang = r);
  const served = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request, info) => {
      const url = new URL(request.url);
      if (state.hang && url.pathname.startsWith("/v1/upload")) {
        writing();
        // The stopped client never reads this.
        await hung;
        return new Response(null, { status: 503 });
      }
      return await handler(request, info);
    },
  );
  return {
    incoming,
    url: `http://127.0.0.1:${served.addr.port}`,
    dest: `127.0.0.1:${served.addr.port}:${incoming}/`,
    firstWrite,
    unhang() {
      state.hang = false;
      unhang();
    },
    async [Symbol.asyncDispose]() {
      unhang();
      await served.shutdown();
    },
  };
}

Deno.test("the lease of a SIGKILLed push is taken back at once by the same push run again (its token was kept in HSYNC_DIR)", async () => {
  await using dir = await tempDir("hsync-push-lock-");
  const src = join(dir.path, "tree");
  await busyTree(src);
  const env = { HSYNC_DIR: join(dir.path, "client-home") };
  // A lease that outlasts the test when all is well: only its token takes
  // it back sooner (lost, the rerun waits a minute, and says so).
  await using server = await hangingServer(dir.path, 60_000);
  const killed = spawnClient([src, server.dest], env);
  await server.firstWrite;
  const k = await killed.stop("SIGKILL");
  assert.equal(k.code, 137, k.stderr);
  server.unhang();
  const r = await runClient([src, server.dest], env);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /waiting for another hsync/);
  assert.match(r.stderr, /hsync: 151 files, /);
  assertSameTree(
    await snapshotTree(join(server.incoming, "tree")),
    await snapshotTree(src),
  );
  // Given back at the end: the record is gone.
  assert.deepEqual([...Deno.readDirSync(join(env.HSYNC_DIR, "leases"))], []);
});

Deno.test("the lease of a SIGKILLed push lapses for any other push: it waits for it, then sends everything", async () => {
  await using dir = await tempDir("hsync-push-lock-");
  const src = join(dir.path, "tree");
  await busyTree(src);
  await using server = await hangingServer(dir.path, 5000);
  const killed = spawnClient([src, server.dest], {
    HSYNC_DIR: join(dir.path, "one-home"),
  });
  await server.firstWrite;
  const k = await killed.stop("SIGKILL");
  assert.equal(k.code, 137, k.stderr);
  server.unhang();
  const started = performance.now();
  // Another user, or another machine: the killed push's token is not its.
  const r = await runClient([src, server.dest], {
    HSYNC_DIR: join(dir.path, "other-home"),
  });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /waiting for another hsync writing into/);
  assert.match(r.stderr, /hsync: 151 files, /);
  assert.ok(performance.now() - started < 20_000);
  assertSameTree(
    await snapshotTree(join(server.incoming, "tree")),
    await snapshotTree(src),
  );
});

Deno.test("an interrupted push (Ctrl-C) gives its lease back: the next one takes it at once", async () => {
  await using dir = await tempDir("hsync-push-lock-");
  const src = join(dir.path, "tree");
  await busyTree(src);
  // A lease that would outlast the test: only a release frees it.
  await using server = await hangingServer(dir.path, 600_000);
  const stopped = spawnClient([src, server.dest], {
    HSYNC_DIR: join(dir.path, "client-home"),
  });
  await server.firstWrite;
  const r = await stopped.stop("SIGINT");
  assert.equal(r.code, 130, r.stderr);
  const again = await lockRequest(server.url, {
    path: join(server.incoming, "tree"),
  });
  assert.equal(again.status, 200, await again.clone().text());
  await again.body?.cancel();
});

Deno.test("one file pushed into a server directory (no / at the end) asks the lease of DIR/NAME with its first requests: two such pushes of other files into one directory run at once", async () => {
  await using dir = await tempDir("hsync-push-lock-");
  const { server, incoming } = await lockServer(dir.path);
  await using _ = server;
  const files = ["one.bin", "two.bin"];
  for (const [i, name] of files.entries()) {
    await Deno.writeFile(join(dir.path, name), new Uint8Array(300_000 + i));
  }
  const runs = files.map((name) =>
    spawnClient([join(dir.path, name), `127.0.0.1:${server.port}:${incoming}`])
  );
  const results = await Promise.all(runs.map((r) => r.exited));
  for (const r of results) {
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /waiting for another hsync/);
  }
  for (const [i, name] of files.entries()) {
    assert.equal((await Deno.stat(join(incoming, name))).size, 300_000 + i);
  }
  await server.stop();
  const log = server.stderr();
  for (const name of files) {
    // Asked once, with the name, and given back as DIR/NAME.
    const asked = log.match(
      new RegExp(
        `POST /v1/lock\\?path=${
          encodeURIComponent(incoming)
        }&token=\\w+&stat=1&name=${name} 200`,
        "g",
      ),
    );
    assert.equal(asked?.length, 1, log);
    assert.match(
      log,
      new RegExp(
        `POST /v1/lock\\?path=${
          encodeURIComponent(join(incoming, name))
        }&token=\\w+&release=1`,
      ),
    );
  }
});
