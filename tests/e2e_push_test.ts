// deno-lint-ignore-file no-console
/**
 * End to end, the real hsync pushing to the real hsyncd (each under its
 * permission set): a tree byte-identical and signed, a rerun that sends
 * nothing, resume after SIGKILL of either program, a local file changed in
 * between, refusals, two pushes of one file at once, and a full disk.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { startFaultProxy } from "./_fault_proxy.ts";
import { journalCovered } from "./_resume_fixture.ts";
import {
  freePort,
  runClient,
  type RunningServer,
  snapshotTree,
  spawnClient,
  startServer,
  tempDir,
  waitFor,
} from "./_programs.ts";

/** A server accepting pushes below `incoming` from the key made in `clientDir` (hsync keygen). */
async function pushServer(
  dir: string,
  options: { keys?: boolean; port?: number; extra?: string } = {},
): Promise<{ server: RunningServer; incoming: string; clientDir: string }> {
  const incoming = join(dir, "incoming");
  const clientDir = join(dir, "client-home");
  await Deno.mkdir(incoming, { recursive: true });
  await Deno.mkdir(clientDir, { recursive: true });
  let keys = "";
  if (options.keys !== false) {
    const keygen = await runClient(["keygen"], { HSYNC_DIR: clientDir });
    assert.equal(keygen.code, 0, keygen.stderr);
    await Deno.writeTextFile(join(dir, "authorized_keys"), keygen.stdout);
    keys = `Authorized_keys = ${join(dir, "authorized_keys")}\n`;
  }
  const server = await startServer({
    dir,
    port: options.port,
    config: `[hsyncd]\nWritable_path = ${incoming}\n${keys}${
      options.extra ?? ""
    }`,
  });
  return { server, incoming, clientDir };
}

/** The access lines of hsyncd's `log` answered 409 (a lease or a path held by another push). */
function conflicts(log: string): string[] {
  return log.split("\n").filter((line) => / 409 \d+ \d+ms$/.test(line));
}

/** A local tree with nested and empty directories, odd names, a big and small files. */
async function makeTree(root: string): Promise<void> {
  for (const d of ["a/b/c", "empty", "with space", "ünïcödé"]) {
    await Deno.mkdir(join(root, d), { recursive: true });
  }
  await Deno.writeTextFile(join(root, "a/b/c/deep.txt"), "deep");
  await Deno.writeTextFile(join(root, "with space/x y.txt"), "spaces");
  await Deno.writeTextFile(join(root, "ünïcödé/ä.txt"), "umlaut");
  await Deno.writeFile(join(root, "empty.bin"), new Uint8Array());
  const big = new Uint8Array(3 * 1024 * 1024 + 17).map((_, i) =>
    (i * 31 + (i >> 11)) & 255
  );
  await Deno.writeFile(join(root, "a/big.bin"), big);
  for (let i = 0; i < 50; i++) {
    await Deno.writeTextFile(join(root, `a/small-${i}.txt`), `small ${i}\n`);
  }
  await Deno.chmod(join(root, "a/small-1.txt"), 0o755);
}

Deno.test("hsync pushes a tree to hsyncd byte-identical, signed and verified, and a rerun sends nothing", async () => {
  await using tmp = await tempDir("hsync-push-");
  const src = join(tmp.path, "run42");
  await makeTree(src);
  const { server, incoming, clientDir } = await pushServer(tmp.path);
  await using _ = server;
  const env = { HSYNC_DIR: clientDir };
  const first = await runClient(
    [src, `127.0.0.1:${server.port}:${incoming}/`, "--verify", "-P"],
    env,
  );
  assert.equal(first.code, 0, first.stderr);
  const want = await snapshotTree(src);
  const got = await snapshotTree(join(incoming, "run42"));
  assert.deepEqual(got, want);
  // Times and modes came along.
  const local = await Deno.stat(join(src, "a/small-1.txt"));
  const remote = await Deno.stat(join(incoming, "run42/a/small-1.txt"));
  assert.equal(remote.mtime?.getTime(), local.mtime?.getTime());
  assert.equal((remote.mode ?? 0) & 0o777, 0o755);
  // Nothing partial is left behind.
  for (const [rel] of got) {
    assert.ok(!/\.hsync-(part|journal)$|\.hsync-new-/.test(rel), rel);
  }
  const again = await runClient(
    [src, `127.0.0.1:${server.port}:${incoming}/`, "-P"],
    env,
  );
  assert.equal(again.code, 0, again.stderr);
  assert.match(
    again.stderr,
    /hsync: 0 files, 0 B in .*, 5[0-9] skipped, 0 failed/,
  );
});

Deno.test("an unsigned push, a push outside Writable_path and a push to a read-only server are refused with one line and exit 3, and write nothing", async () => {
  await using tmp = await tempDir("hsync-push-refused-");
  const src = join(tmp.path, "f.txt");
  await Deno.writeTextFile(src, "data");
  const { server, incoming, clientDir } = await pushServer(tmp.path);
  await using _ = server;
  const unsigned = await runClient(
    [src, `127.0.0.1:${server.port}:${incoming}/`],
    { HSYNC_DIR: join(tmp.path, "nobody") },
  );
  assert.equal(unsigned.code, 3, unsigned.stderr);
  assert.equal(unsigned.stderr.trim().split("\n").length, 1, unsigned.stderr);
  const outside = await runClient(
    [src, `127.0.0.1:${server.port}:${join(tmp.path, "elsewhere")}/`],
    { HSYNC_DIR: clientDir },
  );
  assert.equal(outside.code, 3, outside.stderr);
  assert.match(outside.stderr, /Writable_path/);
  assert.deepEqual([...Deno.readDirSync(incoming)], []);
  assert.throws(() => Deno.statSync(join(tmp.path, "elsewhere")));
});

Deno.test("hsyncd refuses to start with Writable_path but no Authorized_keys on an address others can reach", async () => {
  await using tmp = await tempDir("hsync-push-nokeys-");
  await Deno.mkdir(join(tmp.path, "incoming"));
  await Deno.writeTextFile(
    join(tmp.path, "s.ini"),
    `[hsyncd]\nWritable_path = ${join(tmp.path, "incoming")}\n`,
  );
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      ...(await import("./_programs.ts")).serverArgv(),
      "-host",
      "0.0.0.0",
      "-p",
      String(freePort()),
      "-c",
      join(tmp.path, "s.ini"),
    ],
    env: { HSYNC_DIR: join(tmp.path, "h"), NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 1);
  assert.match(new TextDecoder().decode(out.stderr), /Authorized_keys/);
});

/** A big local file of `size` bytes. */
async function bigFile(
  path: string,
  size: number,
  salt = 0,
): Promise<Uint8Array> {
  const data = new Uint8Array(size).map((_, i) =>
    (i * 7 + salt + (i >> 13)) & 255
  );
  await Deno.writeFile(path, data);
  return data;
}

Deno.test("a push killed with SIGKILL is resumed by the same command, sending again at most a part of what had arrived", async () => {
  await using tmp = await tempDir("hsync-push-kill-");
  const size = 96 * 1024 * 1024;
  const src = join(tmp.path, "big.bin");
  const data = await bigFile(src, size);
  // Through the proxy the client signs for the proxy's port: the server
  // is told it is one of its names.
  const port = freePort();
  await using proxy = startFaultProxy(port, () => ({ kind: "none" }));
  const { server, incoming, clientDir } = await pushServer(tmp.path, {
    port,
    extra: `Server_name = 127.0.0.1:${proxy.port}\n`,
  });
  await using _ = server;
  const env = { HSYNC_DIR: clientDir };
  const args = [src, `127.0.0.1:${proxy.port}:${incoming}/`, "--quiet"];
  const bg = spawnClient(args, env);
  const journal = join(incoming, "big.bin.hsync-journal");
  await waitFor(
    "a third of the file held by the server",
    async () => await journalCovered(journal) > size / 3,
    60_000,
  );
  await bg.stop("SIGKILL");
  // What had arrived: what the server's journal holds once it flushed what
  // was written (it does within half a second). The part file's size would
  // overstate it: several ranges write at once, far apart in the file.
  await new Promise((done) => setTimeout(done, 1500));
  const arrived = await journalCovered(journal);
  const before = proxy.bytesUpstream;
  const logBefore = server.stderr().length;
  const rerun = await runClient(args, env);
  assert.equal(rerun.code, 0, rerun.stderr);
  assert.deepEqual(await Deno.readFile(join(incoming, "big.bin")), data);
  // The rerun took the killed run's lease back by its token, and wrote as
  // its session: no wait for the lease to lapse (30 s), none for the paths
  // it wrote last (10 s).
  assert.deepEqual(conflicts(server.stderr().slice(logBefore)), []);
  assert.deepEqual([...Deno.readDirSync(join(clientDir, "leases"))], []);
  const sentAgain = proxy.bytesUpstream - before - (size - arrived);
  console.log(
    `push resume: ${(arrived / 2 ** 20).toFixed(1)} MiB had arrived, ${
      (Math.max(0, sentAgain) / 2 ** 20).toFixed(1)
    } MiB of it sent again`,
  );
  // At most the requests that were cut (one PUT of at most 2 MiB per range
  // in flight: 3 ranges of 32 MiB), and requests' headers.
  assert.ok(
    sentAgain < 7 * 1024 * 1024,
    `${sentAgain} bytes of what had arrived were sent again`,
  );
});

Deno.test("a push stopped with Ctrl-C before its lease's answer came gives the lease back by its own token: the rerun waits for nothing", async () => {
  await using tmp = await tempDir("hsync-push-int-");
  const src = join(tmp.path, "f.bin");
  const data = await bigFile(src, 1024 * 1024, 5);
  const port = freePort();
  let stall = true;
  // The first run's lease request reaches hsyncd; its answer never comes back.
  await using proxy = startFaultProxy(
    port,
    (_, request) =>
      stall && request.startsWith("POST /v1/lock")
        ? { kind: "stall", afterBytes: 0 }
        : { kind: "none" },
  );
  const { server, incoming, clientDir } = await pushServer(tmp.path, {
    port,
    keys: false,
    extra: `Server_name = 127.0.0.1:${proxy.port}\n`,
  });
  await using _ = server;
  const env = { HSYNC_DIR: clientDir };
  const args = [src, `127.0.0.1:${proxy.port}:${incoming}/`, "--quiet"];
  const bg = spawnClient(args, env);
  await waitFor(
    "the lease taken at the server",
    () => / POST \/v1\/lock\?\S* 200 /.test(server.stderr()),
  );
  const stopped = await bg.stop("SIGINT");
  assert.equal(stopped.code, 130, stopped.stderr);
  stall = false;
  const logBefore = server.stderr().length;
  const rerun = await runClient(args, env);
  assert.equal(rerun.code, 0, rerun.stderr);
  assert.deepEqual(await Deno.readFile(join(incoming, "f.bin")), data);
  // Without its token the stopped run could not give the lease back: the
  // rerun was answered 409 once a second until the lease lapsed (30 s).
  assert.deepEqual(conflicts(server.stderr().slice(logBefore)), []);
});

Deno.test("hsyncd killed with SIGKILL mid-push and started again: the rerun completes from what its journal holds", async () => {
  await using tmp = await tempDir("hsync-push-server-kill-");
  const size = 64 * 1024 * 1024;
  const src = join(tmp.path, "big.bin");
  const data = await bigFile(src, size, 3);
  const first = await pushServer(tmp.path);
  const { incoming, clientDir } = first;
  const env = { HSYNC_DIR: clientDir };
  const port = first.server.port;
  const bg = spawnClient(
    [src, `127.0.0.1:${port}:${incoming}/`, "--quiet"],
    env,
  );
  await waitFor("part of the file on the server", async () => {
    try {
      return (await Deno.stat(join(incoming, "big.bin.hsync-part"))).size >
        size / 4;
    } catch {
      return false;
    }
  }, 60_000);
  first.server.process.kill("SIGKILL");
  await first.server.stop();
  const cut = await bg.exited;
  assert.notEqual(cut.code, 0);
  assert.throws(() => Deno.statSync(join(incoming, "big.bin")));
  const second = await startServer({
    dir: tmp.path,
    port,
    config: await Deno.readTextFile(join(tmp.path, "server.ini")),
  });
  await using _ = second;
  const rerun = await runClient([src, `127.0.0.1:${port}:${incoming}/`], env);
  assert.equal(rerun.code, 0, rerun.stderr);
  assert.deepEqual(await Deno.readFile(join(incoming, "big.bin")), data);
});

Deno.test("a local file changed since the interrupted push starts over and says so", async () => {
  await using tmp = await tempDir("hsync-push-changed-");
  const size = 48 * 1024 * 1024;
  const src = join(tmp.path, "big.bin");
  await bigFile(src, size);
  const { server, incoming, clientDir } = await pushServer(tmp.path);
  await using _ = server;
  const env = { HSYNC_DIR: clientDir };
  const args = [src, `127.0.0.1:${server.port}:${incoming}/`];
  const bg = spawnClient(args, env);
  await waitFor("part of the file on the server", async () => {
    try {
      return (await Deno.stat(join(incoming, "big.bin.hsync-journal"))).isFile;
    } catch {
      return false;
    }
  }, 60_000);
  await bg.stop("SIGKILL");
  const changed = await bigFile(src, size, 99);
  const rerun = await runClient(args, env);
  assert.equal(rerun.code, 0, rerun.stderr);
  assert.match(rerun.stderr, /changed since the interrupted push/);
  assert.deepEqual(await Deno.readFile(join(incoming, "big.bin")), changed);
});

Deno.test("two pushes of one file at once never mix: the file on the server is one of them, whole", async () => {
  await using tmp = await tempDir("hsync-push-race-");
  const size = 32 * 1024 * 1024;
  const a = join(tmp.path, "a", "f.bin");
  const b = join(tmp.path, "b", "f.bin");
  await Deno.mkdir(join(tmp.path, "a"));
  await Deno.mkdir(join(tmp.path, "b"));
  const dataA = await bigFile(a, size, 1);
  const dataB = await bigFile(b, size, 2);
  const { server, incoming, clientDir } = await pushServer(tmp.path);
  await using _ = server;
  const env = { HSYNC_DIR: clientDir };
  const [ra, rb] = await Promise.all([
    runClient([a, `127.0.0.1:${server.port}:${incoming}/`], env),
    runClient([b, `127.0.0.1:${server.port}:${incoming}/`], env),
  ]);
  assert.ok(ra.code === 0 || rb.code === 0, ra.stderr + rb.stderr);
  const got = await Deno.readFile(join(incoming, "f.bin"));
  const isA = got.length === size && got.every((v, i) => v === dataA[i]);
  const isB = got.length === size && got.every((v, i) => v === dataB[i]);
  assert.ok(isA || isB, "the file is a mix of the two pushes");
  for (const r of [ra, rb]) {
    if (r.code !== 0) assert.match(r.stderr, /another push|in progress/);
  }
});

Deno.test("a push to a full disk fails that file with one line, keeps what was flushed, and names nothing", async () => {
  await using tmp = await tempDir("hsync-push-full-");
  const mnt = join(tmp.path, "small");
  await Deno.mkdir(mnt);
  const mount = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt],
    stdout: "null",
    stderr: "piped",
  }).output().catch(() => undefined);
  if (mount === undefined || !mount.success) {
    console.log(
      `e2e_push: skipping the full-disk case: cannot mount a small tmpfs (${
        mount === undefined
          ? "no mount command"
          : new TextDecoder().decode(mount.stderr).trim()
      })`,
    );
    return;
  }
  try {
    const incoming = join(mnt, "incoming");
    await Deno.mkdir(incoming);
    const clientDir = join(tmp.path, "client-home");
    await Deno.mkdir(clientDir);
    const keygen = await runClient(["keygen"], { HSYNC_DIR: clientDir });
    await Deno.writeTextFile(join(tmp.path, "ak"), keygen.stdout);
    await using server = await startServer({
      dir: tmp.path,
      config: `[hsyncd]\nWritable_path = ${incoming}\nAuthorized_keys = ${
        join(tmp.path, "ak")
      }\n`,
    });
    const src = join(tmp.path, "big.bin");
    await bigFile(src, 4 * 1024 * 1024);
    const r = await runClient(
      [src, `127.0.0.1:${server.port}:${incoming}/`],
      { HSYNC_DIR: clientDir },
    );
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /no space left/);
    assert.throws(() => Deno.statSync(join(incoming, "big.bin")));
  } finally {
    await new Deno.Command("umount", { args: [mnt] }).output().catch(() => {});
  }
});

Deno.test("small files pushed keep their mtime to the millisecond, so a rerun skips every one (nanosecond times that floating seconds would round down)", async () => {
  await using tmp = await tempDir("hsync-push-mtime-");
  const src = join(tmp.path, "small");
  await Deno.mkdir(src);
  const names: string[] = [];
  for (let i = 0; i < 20; i++) {
    const name = `f${i}.txt`;
    names.push(name);
    await Deno.writeTextFile(join(src, name), `file ${i}\n`);
    // As a file written now has them: whole nanoseconds, not milliseconds.
    const touch = await new Deno.Command("touch", {
      args: [
        "-d",
        `@1796578193.${String(554632645 + i * 1_000_017)}`,
        join(src, name),
      ],
    }).output();
    assert.ok(touch.success);
  }
  const { server, incoming } = await pushServer(tmp.path, { keys: false });
  await using _ = server;
  const args = [src, `127.0.0.1:${server.port}:${incoming}/`];
  const first = await runClient(args);
  assert.equal(first.code, 0, first.stderr);
  for (const name of names) {
    assert.equal(
      (await Deno.stat(join(incoming, "small", name))).mtime?.getTime(),
      (await Deno.stat(join(src, name))).mtime?.getTime(),
      name,
    );
  }
  const again = await runClient(args);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /hsync: 0 files, 0 B in .*, 20 skipped, 0 failed/);
});

Deno.test("hsync -a pushed again sends nothing and makes no link again: the same links and names of one file are skipped", async () => {
  await using tmp = await tempDir("hsync-push-a-rerun-");
  const src = join(tmp.path, "t");
  await Deno.mkdir(join(src, "run_0423"), { recursive: true });
  await Deno.writeTextFile(join(src, "run_0423/a.txt"), "a\n");
  await Deno.link(join(src, "run_0423/a.txt"), join(src, "a2.txt"));
  await Deno.symlink("run_0423", join(src, "latest"));
  const { server, incoming } = await pushServer(tmp.path, { keys: false });
  await using _ = server;
  const args = ["-a", src, `127.0.0.1:${server.port}:${incoming}/`];
  const first = await runClient(args);
  assert.equal(first.code, 0, first.stderr);
  const ino = (p: string) => Deno.statSync(join(incoming, "t", p)).ino;
  assert.equal(ino("a2.txt"), ino("run_0423/a.txt"));
  const again = await runClient(args);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /hsync: 0 files, 0 B in .*, 3 skipped, 0 failed/);
  assert.equal(ino("a2.txt"), ino("run_0423/a.txt"));
  assert.equal(Deno.readLinkSync(join(incoming, "t/latest")), "run_0423");
});

Deno.test("a new tree's directories are made by its bundles and, empty ones too, finished in one request: each gets its time and masked mode", async () => {
  await using tmp = await tempDir("hsync-push-dirs-");
  const src = join(tmp.path, "tree");
  const T = 1_600_000_000_000;
  const dirs = ["d0", "d1", "d2", "d3", "e", "e/deeper", "e/deeper/most"];
  for (const d of dirs) await Deno.mkdir(join(src, d), { recursive: true });
  for (const d of ["d0", "d1", "d2", "d3"]) {
    await Deno.writeTextFile(join(src, d, "f.txt"), d);
  }
  await Deno.chmod(join(src, "d3"), 0o700);
  await Deno.chmod(join(src, "e/deeper"), 0o750);
  for (const [i, d] of ["", ...dirs].reverse().entries()) {
    await Deno.utime(join(src, d), new Date(T), new Date(T + i * 1000));
  }
  const { server, incoming } = await pushServer(tmp.path, { keys: false });
  await using _ = server;
  const out = await runClient([src, `127.0.0.1:${server.port}:${incoming}/`], {
    HSYNC_DIR: join(tmp.path, "client-home"),
  });
  assert.equal(out.code, 0, out.stderr);
  await server.stop();
  for (const d of ["", ...dirs]) {
    const local = await Deno.stat(join(src, d));
    const remote = await Deno.stat(join(incoming, "tree", d));
    assert.equal(remote.mtime?.getTime(), local.mtime?.getTime(), d);
    assert.equal(
      remote.mode! & 0o777,
      local.mode! & 0o777 & (0o755 & ~Deno.umask()),
      d,
    );
  }
  assert.equal(await Deno.readTextFile(join(incoming, "tree/d3/f.txt")), "d3");
  // No mkdir of one directory (each a round trip before its files); one
  // array for all at the end.
  const log = server.stderr();
  assert.doesNotMatch(log, /POST \/v1\/mkdir\?path=/);
  assert.equal(
    log.match(/POST \/v1\/mkdir(\?after=\d+)? 200/g)?.length,
    1,
    log,
  );
});

Deno.test("files sent in ranges into a new directory, unchanged for 2 s, are committed by their last PUT: no mkdir, no upload status, no commit request", async () => {
  await using tmp = await tempDir("hsync-push-settled-");
  const src = join(tmp.path, "tree");
  await Deno.mkdir(join(src, "sub"), { recursive: true });
  const T = 1_600_000_000_000;
  for (const [rel, size] of [["one.bin", 3 << 20], ["sub/two.bin", 700_000]]) {
    const data = new Uint8Array(size as number).map((_, i) => (i * 7) & 255);
    await Deno.writeFile(join(src, rel as string), data);
    await Deno.utime(join(src, rel as string), new Date(T), new Date(T));
    await Deno.chmod(join(src, rel as string), 0o640);
  }
  const { server, incoming } = await pushServer(tmp.path, { keys: false });
  await using _ = server;
  // Changed (ctime) 2 s ago or more: settled, not being written.
  await new Promise((done) => setTimeout(done, 2100));
  const out = await runClient([src, `127.0.0.1:${server.port}:${incoming}/`], {
    HSYNC_DIR: join(tmp.path, "client-home"),
  });
  assert.equal(out.code, 0, out.stderr);
  await server.stop();
  assert.deepEqual(
    await snapshotTree(join(incoming, "tree")),
    await snapshotTree(src),
  );
  for (const rel of ["one.bin", "sub/two.bin"]) {
    const remote = await Deno.stat(join(incoming, "tree", rel));
    assert.equal(remote.mtime?.getTime(), T, rel);
    assert.equal(remote.mode! & 0o777, 0o640 & ~Deno.umask(), rel);
  }
  const log = server.stderr();
  assert.match(log, /PUT \/v1\/upload\?\S*commit=1\S* 200/);
  assert.doesNotMatch(
    log,
    /POST \/v1\/upload\/commit|GET \/v1\/upload|POST \/v1\/mkdir\?path=/,
  );
  assert.deepEqual(
    [...Deno.readDirSync(join(incoming, "tree"))].map((e) => e.name).sort(),
    ["one.bin", "sub"],
  );
});

Deno.test("a tree pushed to hsyncd goes in PUTs of 8 MiB (hsyncd writes each as it arrives), byte-identical", async () => {
  await using tmp = await tempDir("hsync-push-puts-");
  const src = join(tmp.path, "tree");
  await Deno.mkdir(src);
  const size = 12 << 20;
  for (const name of ["one.bin", "two.bin"]) {
    const data = new Uint8Array(size).map((_, i) =>
      (i * 13 + name.length) & 255
    );
    await Deno.writeFile(join(src, name), data);
  }
  const { server, incoming } = await pushServer(tmp.path, { keys: false });
  await using _ = server;
  const out = await runClient(
    [src, `127.0.0.1:${server.port}:${incoming}/`, "-P"],
    { HSYNC_DIR: join(tmp.path, "client-home") },
  );
  assert.equal(out.code, 0, out.stderr);
  assert.deepEqual(
    await snapshotTree(join(incoming, "tree")),
    await snapshotTree(src),
  );
  // The access line is written as the answer starts: all are in by now.
  const ranges = (server.stderr().match(/PUT \/v1\/upload\?\S* 20\d/g) ?? [])
    .length;
  // 12 MiB a file: 8 MiB, then 4.
  assert.equal(ranges, 4, server.stderr());
});
