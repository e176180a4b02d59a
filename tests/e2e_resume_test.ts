/** End-to-end resume: the real hsync killed (SIGKILL, SIGTERM, SIGINT) at several points, files replaced, hsyncd restarted, a full and a read-only destination; every rerun byte-identical with the refetched bytes counted. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { startFaultProxy } from "./_fault_proxy.ts";
import {
  clientArgv,
  freePort,
  ROOT,
  runClient,
  type RunResult,
  startServer,
  tempDir,
  waitFor,
} from "./_programs.ts";
import {
  bytes,
  type ControlledServer,
  journalCovered,
  leftovers,
  sameBytes,
  startControlledServer,
} from "./_resume_fixture.ts";
import { journalTempPathFor } from "../lib/shared/part_file.ts";

const MiB = 1024 * 1024;

/** hsync running in the background. */
interface Background {
  child: Deno.ChildProcess;
  /** Exit code and output, once it has exited. */
  result: Promise<RunResult>;
}

function spawnClient(args: string[], hsyncDir: string): Background {
  const child = new Deno.Command(Deno.execPath(), {
    args: [...clientArgv(), ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", HSYNC_DIR: hsyncDir },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const result = child.output().then((out) => ({
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  }));
  return { child, result };
}

/** hsync pulling `remote` into `out` from a server on `port`; its ini and HSYNC_DIR made in `dir`. */
async function spawnPull(
  dir: string,
  remote: string,
  out: string,
  port: number,
  ini: string,
): Promise<Background> {
  const hsyncDir = join(dir, "client-dir");
  await Deno.mkdir(hsyncDir);
  const iniPath = join(dir, "client.ini");
  await Deno.writeTextFile(iniPath, ini);
  const where = ["-host", "127.0.0.1", "-p", String(port), "-c", iniPath];
  return spawnClient(["-i", remote, "-o", out, ...where], hsyncDir);
}

/** A data directory, a controlled server over it, the client's ini and arguments. */
async function setup(
  root: string,
  files: Record<string, Uint8Array>,
  ini = "",
) {
  const data = join(root, "data");
  await Deno.mkdir(data, { recursive: true });
  for (const [name, content] of Object.entries(files)) {
    await Deno.writeFile(join(data, name), content);
  }
  const server = await startControlledServer(data);
  const hsyncDir = join(root, "client-dir");
  await Deno.mkdir(hsyncDir, { recursive: true });
  const clientIni = join(root, "client.ini");
  // 4 parallel ranges for a file of 4 MiB or more.
  await Deno.writeTextFile(
    clientIni,
    `[hscp]\nMin_part_size = 1M\nMax_part_num = 4\n${ini}`,
  );
  const args = (remote: string, out: string, ...more: string[]) => [
    "-i",
    remote,
    "-o",
    out,
    "-host",
    "127.0.0.1",
    "-p",
    String(server.port),
    "-c",
    clientIni,
    ...more,
  ];
  return { data, server, hsyncDir, args };
}

/** Reruns to completion with no faults; returns the result and the file bytes the server sent. */
async function rerun(
  server: ControlledServer,
  args: string[],
  hsyncDir: string,
): Promise<{ r: RunResult; served: number }> {
  server.onFile = undefined;
  server.releaseStalls();
  server.resetCounts();
  const r = await runClient(args, { HSYNC_DIR: hsyncDir });
  return { r, served: server.served };
}

async function killed(bg: Background, signal: Deno.Signal): Promise<RunResult> {
  bg.child.kill(signal);
  return await bg.result;
}

Deno.test("hsync killed with SIGKILL before the first byte: the rerun fetches the whole file, byte-identical", async () => {
  await using dir = await tempDir();
  const content = bytes(4 * MiB + 3, 1);
  const s = await setup(dir.path, { "f.bin": content });
  await using _ = s.server;
  const out = join(dir.path, "f.bin");
  s.server.onFile = () => ({ stallAfter: 0 });
  const bg = spawnClient(s.args(join(s.data, "f.bin"), out), s.hsyncDir);
  await waitFor("the journal made before the first byte", async () => {
    try {
      await Deno.stat(out + ".hsync-journal");
      return s.server.fileRequests.length === 4;
    } catch {
      return false;
    }
  });
  const k = await killed(bg, "SIGKILL");
  assert.equal(k.code, 137);
  await assert.rejects(() => Deno.stat(out), "no final file");
  assert.equal(await journalCovered(out + ".hsync-journal"), 0);

  const { r, served } = await rerun(
    s.server,
    s.args(join(s.data, "f.bin"), out),
    s.hsyncDir,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(served, content.length);
  assert.ok(sameBytes(await Deno.readFile(out), content));
  assert.deepEqual(await leftovers(dir.path), []);
});

Deno.test("hsync killed with SIGKILL mid-range: the rerun fetches exactly what the journal lacks, with If-Range", async () => {
  await using dir = await tempDir();
  const content = bytes(8 * MiB, 2);
  const s = await setup(dir.path, { "f.bin": content });
  await using _ = s.server;
  const out = join(dir.path, "f.bin");
  s.server.onFile = () => ({ stallAfter: 300_000 });
  const bg = spawnClient(s.args(join(s.data, "f.bin"), out), s.hsyncDir);
  // Saved while the pull runs (no exit, no signal handler involved).
  await waitFor(
    "the journal claims every byte that arrived",
    async () => await journalCovered(out + ".hsync-journal") === 4 * 300_000,
  );
  await killed(bg, "SIGKILL");
  await assert.rejects(() => Deno.stat(out));

  const { r, served } = await rerun(
    s.server,
    s.args(join(s.data, "f.bin"), out),
    s.hsyncDir,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(served, content.length - 4 * 300_000);
  assert.ok(s.server.fileRequests.length >= 4);
  for (const req of s.server.fileRequests) {
    assert.match(req.ifRange ?? "", /^".+"$/);
    assert.equal(req.status, 206);
  }
  assert.ok(sameBytes(await Deno.readFile(out), content));
  assert.deepEqual(await leftovers(dir.path), []);
});

Deno.test("hsync killed with SIGKILL between files: the finished file stays, the rerun fetches only the others", async () => {
  await using dir = await tempDir();
  const files = {
    "a.bin": bytes(1 * MiB + 1, 3),
    "b.bin": bytes(1 * MiB + 2, 4),
    "c.bin": bytes(1 * MiB + 3, 5),
  };
  const s = await setup(dir.path, files);
  await using _ = s.server;
  const out = join(dir.path, "out");
  // The first file requested goes through; the next one gets no byte.
  let first: string | undefined;
  s.server.onFile = (r) => {
    first ??= r.path;
    return r.path === first ? undefined : { stallAfter: 0 };
  };
  const bg = spawnClient(s.args(s.data, out, "-n", "1"), s.hsyncDir);
  let second: string | undefined;
  await waitFor("one file placed, the next one started", async () => {
    second = s.server.fileRequests.find((r) => r.path !== first)?.path;
    if (first === undefined || second === undefined) return false;
    const name = (p: string) => p.slice(s.data.length + 1);
    try {
      await Deno.stat(join(out, name(first)));
      await Deno.stat(join(out, name(second) + ".hsync-journal"));
      return true;
    } catch {
      return false;
    }
  });
  await killed(bg, "SIGKILL");
  const done = first!.slice(s.data.length + 1) as keyof typeof files;
  const placedBefore = await Deno.stat(join(out, done));

  const { r, served } = await rerun(s.server, s.args(s.data, out), s.hsyncDir);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /2 files, .* 1 skipped, 0 failed/);
  const others = Object.entries(files).filter(([n]) => n !== done);
  assert.equal(served, others.reduce((n, [, c]) => n + c.length, 0));
  assert.equal((await Deno.stat(join(out, done))).ino, placedBefore.ino);
  for (const [name, content] of Object.entries(files)) {
    assert.ok(sameBytes(await Deno.readFile(join(out, name)), content), name);
  }
  assert.deepEqual(await leftovers(dir.path), []);
});

Deno.test("hsync killed with SIGKILL during a journal save: the rerun trusts only a whole journal and gets a byte-identical file", async (t) => {
  await using dir = await tempDir();
  const content = bytes(8 * MiB, 6);
  const s = await setup(dir.path, { "f.bin": content });
  await using _ = s.server;
  const out = join(dir.path, "f.bin");
  const journal = out + ".hsync-journal";
  const temp = journalTempPathFor(journal);

  await t.step("killed the moment a journal save starts", async () => {
    s.server.onFile = () => ({ stallAfter: 250_000 });
    using watcher = Deno.watchFs(dir.path, { recursive: false });
    const bg = spawnClient(s.args(join(s.data, "f.bin"), out), s.hsyncDir);
    let saves = 0;
    for await (const event of watcher) {
      // The second save is the first one that claims bytes.
      if (event.kind === "create" && event.paths.includes(temp)) saves++;
      if (saves === 2) break;
    }
    await killed(bg, "SIGKILL");
    const claimed = await journalCovered(journal);
    // Whatever the journal read back claims (nothing, or what the streams
    // had when a later save began: 4 x 250,000 bytes when each stalled in
    // time, other amounts on a busy machine: 1,024,153 and 1,500,000 seen),
    // the rerun fetches exactly the rest and the file is byte-identical.
    assert.ok(claimed >= 0 && claimed <= content.length, String(claimed));
    const { r, served } = await rerun(
      s.server,
      s.args(join(s.data, "f.bin"), out),
      s.hsyncDir,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(served, content.length - claimed);
    assert.ok(sameBytes(await Deno.readFile(out), content));
    assert.deepEqual(await leftovers(dir.path), []);
  });

  await t.step(
    "a torn temporary journal beside the last whole one",
    async () => {
      await Deno.remove(out);
      s.server.onFile = () => ({ stallAfter: 250_000 });
      const bg = spawnClient(s.args(join(s.data, "f.bin"), out), s.hsyncDir);
      await waitFor(
        "bytes claimed",
        async () => await journalCovered(journal) === 4 * 250_000,
      );
      await killed(bg, "SIGKILL");
      // What a kill in the middle of writing the next journal leaves.
      await Deno.writeTextFile(temp, '{"version":1,"remote":{"size":');
      const { r, served } = await rerun(
        s.server,
        s.args(join(s.data, "f.bin"), out),
        s.hsyncDir,
      );
      assert.equal(r.code, 0, r.stderr);
      assert.equal(served, content.length - 4 * 250_000);
      assert.ok(sameBytes(await Deno.readFile(out), content));
      assert.deepEqual(await leftovers(dir.path), []);
    },
  );
});

Deno.test("hsync stopped by SIGTERM or SIGINT saves its journal and exits 130; the rerun fetches only the rest", async (t) => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    await t.step(signal, async () => {
      await using dir = await tempDir();
      const content = bytes(4 * MiB, 7);
      const s = await setup(dir.path, { "f.bin": content });
      await using _ = s.server;
      const out = join(dir.path, "f.bin");
      s.server.onFile = () => ({ stallAfter: 200_000 });
      const bg = spawnClient(s.args(join(s.data, "f.bin"), out), s.hsyncDir);
      await waitFor(
        "bytes claimed",
        async () =>
          await journalCovered(out + ".hsync-journal") === 4 * 200_000,
      );
      const k = await killed(bg, signal);
      assert.equal(k.code, 130, k.stderr);
      assert.match(
        k.stderr,
        /interrupted, stopping \(partial files are kept\)/,
      );
      assert.equal(await journalCovered(out + ".hsync-journal"), 4 * 200_000);
      const { r, served } = await rerun(
        s.server,
        s.args(join(s.data, "f.bin"), out),
        s.hsyncDir,
      );
      assert.equal(r.code, 0, r.stderr);
      assert.equal(served, content.length - 4 * 200_000);
      assert.ok(sameBytes(await Deno.readFile(out), content));
    });
  }
});

Deno.test("a remote file replaced while hsync was killed is started over, and the user is told in one line", async () => {
  await using dir = await tempDir();
  const s = await setup(dir.path, { "f.bin": bytes(4 * MiB, 8) });
  await using _ = s.server;
  const out = join(dir.path, "f.bin");
  s.server.onFile = () => ({ stallAfter: 100_000 });
  const bg = spawnClient(s.args(join(s.data, "f.bin"), out), s.hsyncDir);
  await waitFor(
    "bytes claimed",
    async () => await journalCovered(out + ".hsync-journal") === 4 * 100_000,
  );
  await killed(bg, "SIGKILL");
  const replaced = bytes(4 * MiB, 9);
  await Deno.writeFile(join(s.data, "f.new"), replaced);
  await Deno.rename(join(s.data, "f.new"), join(s.data, "f.bin"));

  const { r, served } = await rerun(
    s.server,
    s.args(join(s.data, "f.bin"), out),
    s.hsyncDir,
  );
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stderr.split("\n").filter((l) => /warning/.test(l));
  assert.deepEqual(lines, [
    'hsync: warning: File "f.bin" changed on the server since the interrupted pull, starting over',
  ]);
  assert.equal(served, replaced.length);
  assert.ok(sameBytes(await Deno.readFile(out), replaced));
  assert.deepEqual(await leftovers(dir.path), []);
});

Deno.test("a remote file replaced while hsync runs is started over (If-Range answered 200), and the user is told in one line", async () => {
  await using dir = await tempDir();
  const s = await setup(
    dir.path,
    { "f.bin": bytes(4 * MiB, 10) },
    "Data_timeout = 1\n",
  );
  await using _ = s.server;
  const out = join(dir.path, "f.bin");
  s.server.onFile = () => ({ stallAfter: 100_000 });
  const bg = spawnClient(s.args(join(s.data, "f.bin"), out), s.hsyncDir);
  await waitFor("ranges stalled", () => s.server.served === 4 * 100_000);
  const replaced = bytes(4 * MiB, 11);
  await Deno.writeFile(join(s.data, "f.new"), replaced);
  await Deno.rename(join(s.data, "f.new"), join(s.data, "f.bin"));
  s.server.onFile = undefined;
  // The stalled bodies time out; their retries carry the old ETag in If-Range.
  const r = await bg.result;
  assert.equal(r.code, 0, r.stderr);
  assert.ok(s.server.fileRequests.some((q) => q.status === 200));
  const lines = r.stderr.split("\n").filter((l) => /warning/.test(l));
  assert.deepEqual(lines, [
    'hsync: warning: File "f.bin" changed on the server, starting over',
  ]);
  assert.ok(sameBytes(await Deno.readFile(out), replaced));
  assert.deepEqual(await leftovers(dir.path), []);
});

Deno.test("a listing cut in the middle costs a warning: hsync asks for the rest and completes, fetching nothing twice", async () => {
  await using dir = await tempDir();
  const files: Record<string, Uint8Array> = {};
  for (let i = 0; i < 1500; i++) {
    files[`f${String(i).padStart(4, "0")}`] = bytes(64 + (i % 200), i);
  }
  const s = await setup(dir.path, files);
  await using _ = s.server;
  // The listing's connection dies after 700 entries.
  s.server.onList = (n) => n === 0 ? 700 : undefined;
  const out = join(dir.path, "out");
  const r = await runClient(s.args(s.data, out), { HSYNC_DIR: s.hsyncDir });
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stderr,
    /hsync: warning: Listing from 127\.0\.0\.1:\d+ was cut \(.+\); asking for the rest\n/,
  );
  assert.match(r.stderr, /1500 files, .* 0 skipped, 0 failed/);
  assert.deepEqual(s.server.listAfters, [null, "f0699"]);
  assert.equal(s.server.bundlePaths.length, 1500);
  assert.equal(new Set(s.server.bundlePaths).size, 1500);
  for (const [name, content] of Object.entries(files)) {
    assert.ok(sameBytes(await Deno.readFile(join(out, name)), content), name);
  }
  assert.deepEqual(await leftovers(dir.path), []);
});

Deno.test("hsyncd killed and restarted in the middle of a pull costs a pause, not the pull", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  const content = bytes(8 * MiB, 12);
  await Deno.writeFile(join(data, "f.bin"), content);
  const port = freePort();
  const serverIni = `[hsyncd]\nOnly_allowed_path = ${data}\n`;
  let server = await startServer({ dir: dir.path, config: serverIni, port });
  // Every connection of the first run stalls after 1 MiB of response.
  let phase = 0;
  await using proxy = startFaultProxy(
    port,
    () => phase === 0 ? { kind: "stall", afterBytes: MiB } : { kind: "none" },
  );
  try {
    const out = join(dir.path, "f.bin");
    const bg = await spawnPull(
      dir.path,
      join(data, "f.bin"),
      out,
      proxy.port,
      "[hscp]\nMin_part_size = 1M\nMax_part_num = 4\nData_timeout = 1\n",
    );
    // The journal claims what arrived a little after it arrived: wait until
    // the stalled ranges have all been claimed and nothing more comes.
    let claimed = -1;
    await waitFor(
      "about 1 MiB per range claimed, and no more arriving",
      async () => {
        const now = await journalCovered(out + ".hsync-journal");
        const settled = now === claimed && now > 4 * MiB - 8192;
        claimed = now;
        if (!settled) await new Promise((r) => setTimeout(r, 150));
        return settled;
      },
    );
    server.process.kill("SIGKILL");
    await server.stop();
    phase = 1;
    const before = proxy.bytesForwarded;
    server = await startServer({ dir: dir.path, config: serverIni, port });
    const r = await bg.result;
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /failed: /);
    assert.ok(sameBytes(await Deno.readFile(out), content));
    // Headers and the stat aside, only what the journal lacked came again.
    // The journal may still claim a few KiB that had arrived before the kill
    // (it is saved every second): the lower bound allows for them.
    const again = proxy.bytesForwarded - before;
    assert.ok(again >= content.length - claimed - 64 * 1024, String(again));
    assert.ok(again < content.length - claimed + 64 * 1024, String(again));
    assert.deepEqual(await leftovers(dir.path), []);
  } finally {
    await server.stop();
  }
});

Deno.test("hsyncd killed and restarted in the middle of a listing: hsync asks the new hsyncd for the rest and completes", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  const files: Record<string, Uint8Array> = {};
  for (const d of ["a", "b", "c"]) {
    await Deno.mkdir(join(data, d), { recursive: true });
    for (let i = 0; i < 500; i++) {
      files[`${d}/f${String(i).padStart(3, "0")}`] = bytes(100 + i, i);
    }
  }
  for (const [name, content] of Object.entries(files)) {
    await Deno.writeFile(join(data, name), content);
  }
  const port = freePort();
  const serverIni = `[hsyncd]\nOnly_allowed_path = ${data}\n`;
  let server = await startServer({ dir: dir.path, config: serverIni, port });
  // The first listing's connection stalls after 20 KB.
  let stalled = false;
  await using proxy = startFaultProxy(port, (_, request) => {
    if (stalled || !request.startsWith("GET /v1/list?")) {
      return { kind: "none" };
    }
    stalled = true;
    return { kind: "stall", afterBytes: 20_000 };
  });
  try {
    const out = join(dir.path, "out");
    const bg = await spawnPull(
      dir.path,
      data,
      out,
      proxy.port,
      "[hscp]\nData_timeout = 1\n",
    );
    await waitFor("the first files placed", async () => {
      try {
        await Deno.stat(join(out, "a/f000"));
        return true;
      } catch {
        return false;
      }
    });
    server.process.kill("SIGKILL");
    await server.stop();
    server = await startServer({ dir: dir.path, config: serverIni, port });
    const r = await bg.result;
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      /hsync: warning: Listing from 127\.0\.0\.1:\d+ was cut \(No data from .+\); asking for the rest\n/,
    );
    assert.match(r.stderr, /1500 files, .* 0 skipped, 0 failed/);
    for (const [name, content] of Object.entries(files)) {
      assert.ok(sameBytes(await Deno.readFile(join(out, name)), content), name);
    }
    assert.deepEqual(await leftovers(dir.path), []);
  } finally {
    await server.stop();
  }
});

/** Mounts a tmpfs of `size` at `path`; a reason string when this machine does not allow it. */
async function mountTmpfs(
  path: string,
  options: string,
): Promise<string | undefined> {
  await Deno.mkdir(path, { recursive: true });
  try {
    const out = await new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", options, "tmpfs", path],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (out.success) return undefined;
    return new TextDecoder().decode(out.stderr).trim() || `exit ${out.code}`;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

async function mountCommand(...args: string[]): Promise<void> {
  const out = await new Deno.Command(args[0], {
    args: args.slice(1),
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(
      `${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
}

Deno.test("a full disk fails the file in one line naming the part file, keeps partial file and journal, and the rerun resumes", async () => {
  await using dir = await tempDir();
  const content = bytes(8 * MiB, 13);
  const s = await setup(dir.path, { "f.bin": content });
  await using _ = s.server;
  const small = join(dir.path, "small");
  const why = await mountTmpfs(small, "size=2m");
  if (why !== undefined) {
    // deno-lint-ignore no-console
    console.log(`skipped: cannot mount a small tmpfs here (${why})`);
    return;
  }
  try {
    const out = join(small, "f.bin");
    const r = await runClient(s.args(join(s.data, "f.bin"), out), {
      HSYNC_DIR: s.hsyncDir,
    });
    assert.equal(r.code, 2, r.stderr);
    const failed = r.stderr.split("\n").filter((l) => l.includes("failed:"));
    assert.deepEqual(failed, [
      `hsync: failed: f.bin: Cannot write "${out}.hsync-part": no space left on device`,
    ]);
    await assert.rejects(() => Deno.stat(out));
    assert.ok((await Deno.stat(out + ".hsync-part")).isFile);
    assert.ok((await Deno.stat(out + ".hsync-journal")).isFile);
    const claimed = await journalCovered(out + ".hsync-journal");

    await mountCommand("mount", "-o", "remount,size=32m", small);
    const again = await rerun(
      s.server,
      s.args(join(s.data, "f.bin"), out),
      s.hsyncDir,
    );
    assert.equal(again.r.code, 0, again.r.stderr);
    assert.equal(again.served, content.length - claimed);
    assert.ok(sameBytes(await Deno.readFile(out), content));
    assert.deepEqual(await leftovers(small), []);
  } finally {
    await mountCommand("umount", small);
  }
});

Deno.test("a read-only destination fails the file in one line, leaves partial file and journal untouched, and the rerun resumes", async () => {
  await using dir = await tempDir();
  const content = bytes(4 * MiB, 14);
  const s = await setup(dir.path, { "f.bin": content });
  await using _ = s.server;
  const dest = join(dir.path, "dest");
  const why = await mountTmpfs(dest, "size=32m");
  if (why !== undefined) {
    // deno-lint-ignore no-console
    console.log(`skipped: cannot mount a tmpfs here (${why})`);
    return;
  }
  try {
    const out = join(dest, "f.bin");
    s.server.onFile = () => ({ stallAfter: 100_000 });
    const bg = spawnClient(s.args(join(s.data, "f.bin"), out), s.hsyncDir);
    await waitFor(
      "bytes claimed",
      async () => await journalCovered(out + ".hsync-journal") === 4 * 100_000,
    );
    await killed(bg, "SIGKILL");
    const part = await Deno.readFile(out + ".hsync-part");
    const journal = await Deno.readTextFile(out + ".hsync-journal");

    await mountCommand("mount", "-o", "remount,ro", dest);
    const { r } = await rerun(
      s.server,
      s.args(join(s.data, "f.bin"), out),
      s.hsyncDir,
    );
    assert.equal(r.code, 2, r.stderr);
    const failed = r.stderr.split("\n").filter((l) => l.includes("failed:"));
    assert.deepEqual(failed, [
      `hsync: failed: f.bin: Cannot write "${out}.hsync-part": read-only file system`,
    ]);
    assert.ok(sameBytes(await Deno.readFile(out + ".hsync-part"), part));
    assert.equal(await Deno.readTextFile(out + ".hsync-journal"), journal);

    await mountCommand("mount", "-o", "remount,rw", dest);
    const again = await rerun(
      s.server,
      s.args(join(s.data, "f.bin"), out),
      s.hsyncDir,
    );
    assert.equal(again.r.code, 0, again.r.stderr);
    assert.equal(again.served, content.length - 4 * 100_000);
    assert.ok(sameBytes(await Deno.readFile(out), content));
    assert.deepEqual(await leftovers(dest), []);
  } finally {
    await mountCommand("umount", dest);
  }
});
