// deno-lint-ignore-file no-console
/**
 * End to end, the real programs against `rsync -aHS` of the same tree:
 * `hsync -a` pulls and pushes links, hard links, holes, modes and times as
 * rsync copies them, names (or counts) every entry it leaves out, and exits
 * 2 then. Where hsync and rsync differ, they differ on purpose (listed in
 * ON_PURPOSE and in the README).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { lutimesSync } from "node:fs";
import { join } from "node:path";
import { startFaultProxy } from "./_fault_proxy.ts";
import { runClient, startServer, tempDir } from "./_programs.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const SPARSE_SIZE = 256 * MiB;
const T0 = 1_600_000_000_000;

/**
 * As root, the programs run without the capabilities that let root read
 * any directory, so an unreadable directory is one for them too.
 */
const WRAP = Deno.uid() === 0
  ? ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
  : [];

async function sh(script: string): Promise<void> {
  const out = await new Deno.Command("sh", {
    args: ["-c", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
}

function haveRsync(): boolean {
  try {
    return new Deno.Command("rsync", { args: ["--version"], stdout: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

/**
 * The tree: a run with a directory link, a file link, links that lead
 * outside or nowhere or round, a hard-linked pair, a sparse file, private
 * and executable modes, a FIFO, a socket, a name the rules refuse, an
 * unreadable directory and a name that is not UTF-8.
 */
async function makeTree(
  root: string,
  outside: string,
): Promise<Deno.Listener> {
  await Deno.mkdir(join(root, "run_0423/sub"), { recursive: true });
  await Deno.writeTextFile(join(root, "run_0423/a.txt"), "a\n");
  await Deno.writeFile(
    join(root, "run_0423/sub/b.bin"),
    new Uint8Array(300 * KiB).map((_, i) => (i * 7) & 255),
  );
  await Deno.symlink("run_0423", join(root, "latest"));
  await Deno.symlink("run_0423/a.txt", join(root, "a_link"));
  // Links have times of their own, which rsync -a keeps.
  for (const [name, date] of [["latest", "2020-02-03"], ["a_link", "2019"]]) {
    lutimesSync(join(root, name), new Date(date), new Date(date));
  }
  await Deno.symlink(join(root, "run_0423/a.txt"), join(root, "abs_link"));
  await Deno.mkdir(outside, { recursive: true });
  await Deno.writeTextFile(join(outside, "secret.txt"), "secret\n");
  await Deno.symlink(join(outside, "secret.txt"), join(root, "outside"));
  await Deno.symlink("nowhere.txt", join(root, "dangling"));
  await Deno.symlink("loop", join(root, "loop"));
  await Deno.writeFile(
    join(root, "h1.bin"),
    new Uint8Array(100 * KiB).map((_, i) => (i * 13) & 255),
  );
  await Deno.link(join(root, "h1.bin"), join(root, "h2.bin"));
  const sparse = await Deno.open(join(root, "sparse.bin"), {
    create: true,
    write: true,
  });
  await sparse.truncate(SPARSE_SIZE);
  await sparse.seek(100 * MiB + 5, Deno.SeekMode.Start);
  await sparse.write(new TextEncoder().encode("a few bytes"));
  sparse.close();
  await Deno.writeTextFile(join(root, "private.txt"), "mine\n");
  await Deno.chmod(join(root, "private.txt"), 0o600);
  await Deno.writeTextFile(join(root, "script.sh"), "#!/bin/sh\necho hi\n");
  await Deno.chmod(join(root, "script.sh"), 0o755);
  await sh(`mkfifo '${join(root, "fifo")}'`);
  await Deno.writeTextFile(join(root, "id_rsa"), "not for anyone\n");
  await Deno.mkdir(join(root, "locked"));
  await Deno.writeTextFile(join(root, "locked/inside.txt"), "hidden\n");
  await Deno.chmod(join(root, "locked"), 0o000);
  await sh(`printf 'x' > '${root}/caf'"$(printf '\\351')"'.txt'`);
  // The socket exists while its listener is open (closing it removes it).
  const sock = Deno.listen({ transport: "unix", path: join(root, "sock") });
  for (const p of ["run_0423/sub", "run_0423", "locked", ""]) {
    await Deno.utime(join(root, p), new Date(T0), new Date(T0 - 3000));
  }
  return sock;
}

/** `rsync -aHS TREE/ COPY/` under the same capabilities as hsync; its exit code. */
async function rsync(tree: string, copy: string): Promise<number> {
  const [program, ...before] = [...WRAP, "rsync"];
  const out = await new Deno.Command(program, {
    args: [...before, "-aHS", `${tree}/`, `${copy}/`],
    stdout: "null",
    stderr: "null",
  }).output();
  return out.code;
}

/** One entry as compared: type, link text, permission bits, size, content and times. */
interface Seen {
  type: "file" | "dir" | "symlink" | "other";
  target?: string;
  mode: number;
  size: number;
  sha256?: string;
  mtimeS?: number;
  ino: number;
  allocated: number;
}

/** Every entry below `root` by relative path (names that are not UTF-8 come back with U+FFFD). */
async function scan(root: string): Promise<Map<string, Seen>> {
  const out = new Map<string, Seen>();
  async function walk(dir: string, rel: string): Promise<void> {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(dir));
    } catch {
      return;
    }
    for (const e of entries) {
      const r = rel === "" ? e.name : `${rel}/${e.name}`;
      const path = join(dir, e.name);
      let info: Deno.FileInfo;
      try {
        info = await Deno.lstat(path);
      } catch {
        out.set(r, { type: "other", mode: 0, size: 0, ino: 0, allocated: 0 });
        continue;
      }
      const seen: Seen = {
        type: info.isFile
          ? "file"
          : info.isDirectory
          ? "dir"
          : info.isSymlink
          ? "symlink"
          : "other",
        mode: (info.mode ?? 0) & 0o7777,
        size: info.isFile ? info.size : 0,
        ino: info.ino ?? 0,
        allocated: (info.blocks ?? 0) * 512,
      };
      if (info.isSymlink) {
        seen.target = await Deno.readLink(path);
        seen.mtimeS = Math.floor((info.mtime?.getTime() ?? 0) / 1000);
      }
      if (info.isFile) {
        seen.sha256 = createHash("sha256").update(await Deno.readFile(path))
          .digest("hex");
        seen.mtimeS = Math.floor((info.mtime?.getTime() ?? 0) / 1000);
      }
      if (info.isDirectory) {
        seen.mtimeS = Math.floor((info.mtime?.getTime() ?? 0) / 1000);
        await walk(path, r);
      }
      out.set(r, seen);
    }
  }
  await walk(root, "");
  return out;
}

/**
 * Compares hsync's copy with rsync's: every entry hsync made is in rsync's
 * copy with the same type, link text, bits, bytes and time; the only
 * entries of rsync's copy that hsync lacks are `onPurpose`; hard links are
 * one inode and the sparse file is sparse in both.
 */
function compare(
  hsync: Map<string, Seen>,
  rsync: Map<string, Seen>,
  onPurpose: string[],
): void {
  for (const [path, h] of hsync) {
    const r = rsync.get(path);
    assert.ok(r !== undefined, `hsync made "${path}", rsync did not`);
    const { ino: _a, allocated: _b, ...hs } = h;
    const { ino: _c, allocated: _d, ...rs } = r;
    assert.deepEqual(hs, rs, `"${path}" differs from rsync's copy`);
  }
  const missing = [...rsync.keys()].filter((p) => !hsync.has(p)).sort();
  assert.deepEqual(missing, [...onPurpose].sort());
  assert.equal(hsync.get("h1.bin")!.ino, hsync.get("h2.bin")!.ino);
  assert.equal(rsync.get("h1.bin")!.ino, rsync.get("h2.bin")!.ino);
  assert.ok(
    hsync.get("sparse.bin")!.allocated < SPARSE_SIZE / 100,
    `sparse.bin takes ${hsync.get("sparse.bin")!.allocated} bytes on disk`,
  );
}

/** hsyncd serving `tmp` and taking pushes into `tmp/incoming`, and the client's environment. */
async function servePushes(tmp: string) {
  const incoming = join(tmp, "incoming");
  await Deno.mkdir(incoming);
  const server = await startServer({
    dir: tmp,
    config:
      `[hsyncd]\nOnly_allowed_path = ${tmp}\nWritable_path = ${incoming}\n`,
  });
  return { server, incoming, env: { HSYNC_DIR: join(tmp, "client") } };
}

/** What a run says it did not transfer, one path (or count) per line. */
function notTransferred(stderr: string): string[] {
  return stderr.split("\n").filter((l) =>
    l.startsWith("hsync: not transferred: ")
  ).map((l) => l.slice("hsync: not transferred: ".length).replace(/: .*$/, ""))
    .sort();
}

const NON_UTF8 = "caf\uFFFD.txt";

Deno.test("hsync -a pulls the tree as rsync -aHS copies it, names every entry it leaves out and exits 2", async () => {
  if (!haveRsync()) {
    console.log("skipped: rsync is not installed (apt-get install rsync)");
    return;
  }
  await using tmp = await tempDir("hsync-faithful-");
  const data = join(tmp.path, "data");
  const tree = join(data, "tree");
  using _sock = await makeTree(tree, join(tmp.path, "elsewhere"));
  await using server = await startServer({
    dir: tmp.path,
    config: `[hsyncd]\nOnly_allowed_path = ${data}\n`,
    wrap: WRAP,
  });
  await using proxy = startFaultProxy(server.port, () => ({ kind: "none" }));
  const copy = join(tmp.path, "hsync-copy");
  const r = await runClient(
    ["-a", `127.0.0.1:${proxy.port}:${tree}`, copy, "--quiet"],
    { HSYNC_DIR: join(tmp.path, "client") },
    WRAP,
  );
  assert.equal(r.code, 2, r.stderr);
  assert.deepEqual(
    notTransferred(r.stderr),
    [
      "1 entry withheld by the server's rules",
      "abs_link",
      NON_UTF8,
      "dangling",
      "fifo",
      "locked",
      "loop",
      "outside",
      "sock",
    ].sort(),
  );
  assert.ok(
    !r.stderr.includes(join(tmp.path, "elsewhere")),
    "where a withheld link leads is never said",
  );
  assert.ok(
    proxy.bytesForwarded < SPARSE_SIZE / 100,
    `${proxy.bytesForwarded} bytes crossed for a tree holding a 256 MiB sparse file`,
  );

  const theirs = join(tmp.path, "rsync-copy");
  assert.equal(await rsync(tree, theirs), 23, "rsync cannot read all either");
  compare(await scan(copy), await scan(theirs), [
    // Never created by hsync: not a regular file, directory or link.
    "fifo",
    "sock",
    // Withheld by the server: they lead outside the served paths or nowhere.
    "outside",
    "dangling",
    "loop",
    // An absolute target leaves the copy (--unsafe-links creates it).
    "abs_link",
    // Forbidden_file on the server.
    "id_rsa",
    // Deno cannot open a name that is not UTF-8.
    NON_UTF8,
  ]);
});

Deno.test("hsync -a pushes the tree as rsync -aHS copies it, names every entry it leaves out and exits 2", async () => {
  if (!haveRsync()) {
    console.log("skipped: rsync is not installed (apt-get install rsync)");
    return;
  }
  await using tmp = await tempDir("hsync-faithful-push-");
  const tree = join(tmp.path, "src/tree");
  using _sock = await makeTree(tree, join(tmp.path, "elsewhere"));
  const incoming = join(tmp.path, "incoming");
  await Deno.mkdir(incoming);
  await using server = await startServer({
    dir: tmp.path,
    config: `[hsyncd]\nWritable_path = ${incoming}\n`,
  });
  await using proxy = startFaultProxy(server.port, () => ({ kind: "none" }));
  const r = await runClient(
    ["-a", tree, `127.0.0.1:${proxy.port}:${incoming}/`, "--quiet"],
    { HSYNC_DIR: join(tmp.path, "client") },
    WRAP,
  );
  assert.equal(r.code, 2, r.stderr);
  const failed = r.stderr.split("\n").filter((l) =>
    l.startsWith("hsync: failed: ")
  );
  // The server refuses to write a name its rules forbid.
  assert.deepEqual(failed.map((l) => l.split(": ")[2]), ["tree/id_rsa"]);
  assert.deepEqual(
    notTransferred(r.stderr),
    [
      "abs_link",
      NON_UTF8,
      "fifo",
      "locked",
      "outside",
      "sock",
    ].map((p) => `tree/${p}`).sort(),
  );
  assert.ok(
    proxy.bytesUpstream < SPARSE_SIZE / 100,
    `${proxy.bytesUpstream} bytes crossed for a tree holding a 256 MiB sparse file`,
  );
  const theirs = join(tmp.path, "rsync-copy");
  assert.equal(await rsync(tree, theirs), 23, "rsync cannot read all either");
  // A push copies links as their text, as rsync does, dangling or round in
  // a loop included, when the text stays inside the copy.
  compare(await scan(join(incoming, "tree")), await scan(theirs), [
    "fifo",
    "sock",
    // Absolute targets leave the copy: refused before they are sent.
    "abs_link",
    "outside",
    "id_rsa",
    NON_UTF8,
  ]);
});

Deno.test("without -P a pull and a push keep a private file private and a script executable (masked by the umask)", async () => {
  await using tmp = await tempDir("hsync-modes-");
  const data = join(tmp.path, "data");
  const tree = join(data, "tree");
  await Deno.mkdir(tree, { recursive: true });
  await Deno.writeTextFile(join(tree, "private.txt"), "mine\n");
  await Deno.chmod(join(tree, "private.txt"), 0o600);
  await Deno.writeTextFile(join(tree, "script.sh"), "#!/bin/sh\n");
  await Deno.chmod(join(tree, "script.sh"), 0o775);
  const served = await servePushes(tmp.path);
  await using server = served.server;
  const { incoming, env } = served;
  const copy = join(tmp.path, "copy");
  const pulled = await runClient(
    [`127.0.0.1:${server.port}:${tree}`, copy, "--quiet"],
    env,
  );
  assert.equal(pulled.code, 0, pulled.stderr);
  const umask = Deno.umask();
  const bits = async (p: string) => ((await Deno.stat(p)).mode ?? 0) & 0o7777;
  assert.equal(await bits(join(copy, "private.txt")), 0o600 & ~umask);
  assert.equal(await bits(join(copy, "script.sh")), 0o775 & ~umask);
  const pushed = await runClient(
    [tree, `127.0.0.1:${server.port}:${incoming}/`, "--quiet"],
    env,
  );
  assert.equal(pushed.code, 0, pushed.stderr);
  assert.equal(await bits(join(incoming, "tree/private.txt")), 0o600 & ~umask);
  assert.equal(await bits(join(incoming, "tree/script.sh")), 0o775 & ~umask);
});

Deno.test("times before 1970 survive a push and a pull, small, empty and big files and a directory, and a rerun skips them all", async () => {
  await using tmp = await tempDir("hsync-before1970-");
  const data = join(tmp.path, "data");
  const tree = join(data, "tree");
  await Deno.mkdir(join(tree, "old"), { recursive: true });
  await Deno.writeTextFile(join(tree, "small.txt"), "small\n");
  await Deno.writeTextFile(join(tree, "old/inner.txt"), "inner\n");
  // Past the size pushed and pulled in bundles: ranges and a commit.
  await Deno.writeFile(
    join(tree, "big.bin"),
    new Uint8Array(600 * 1024).map((_, i) => i * 7),
  );
  await Deno.writeTextFile(join(tree, "now.txt"), "now\n");
  await Deno.writeFile(join(tree, "empty"), new Uint8Array());
  // 1969-06-01 (a whole second) and 1969-12-31T23:59:58.500 (not).
  const times: Record<string, number> = {
    "small.txt": -18489600000,
    "old/inner.txt": -1500,
    "big.bin": -18489600000,
    "empty": -18489600000,
    "old": -18489600000,
  };
  for (const [rel, ms] of Object.entries(times)) {
    await Deno.utime(join(tree, rel), new Date(), new Date(ms));
  }
  const served = await servePushes(tmp.path);
  await using server = served.server;
  const { incoming, env } = served;
  const mtime = async (p: string) => (await Deno.lstat(p)).mtime?.getTime();
  const expectTimes = async (root: string) => {
    for (const [rel, ms] of Object.entries(times)) {
      assert.equal(await mtime(join(root, rel)), ms, `${root}/${rel}`);
    }
    assert.equal(
      await mtime(join(root, "now.txt")),
      await mtime(join(tree, "now.txt")),
    );
  };
  const push = [tree, `127.0.0.1:${server.port}:${incoming}/`];
  const pushed = await runClient(push, env);
  assert.equal(pushed.code, 0, pushed.stderr);
  await expectTimes(join(incoming, "tree"));
  const again = await runClient(push, env);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /0 files, .* 5 skipped, 0 failed/);

  const copies = join(tmp.path, "copies");
  await Deno.mkdir(copies);
  const copy = join(copies, "tree");
  const pull = [`127.0.0.1:${server.port}:${tree}`, `${copies}/`];
  const pulled = await runClient(pull, env);
  assert.equal(pulled.code, 0, pulled.stderr);
  await expectTimes(copy);
  assert.deepEqual(
    await Deno.readFile(join(copy, "big.bin")),
    await Deno.readFile(join(tree, "big.bin")),
  );
  const pulledAgain = await runClient(pull, env);
  assert.equal(pulledAgain.code, 0, pulledAgain.stderr);
  assert.match(pulledAgain.stderr, /0 files, .* 5 skipped, 0 failed/);
});

Deno.test("names of 250 bytes and more are pushed and pulled, small and big: the part file is not named past the 255-byte limit", async () => {
  await using tmp = await tempDir("hsync-longnames-");
  const tree = join(tmp.path, "data/tree");
  await Deno.mkdir(tree, { recursive: true });
  const long = "n".repeat(250);
  const accented = "\u00e9".repeat(125); // 250 bytes
  await Deno.writeTextFile(join(tree, long), "small\n");
  await Deno.writeFile(
    join(tree, accented),
    new Uint8Array(700 * 1024).map((_, i) => i * 13),
  );
  const served = await servePushes(tmp.path);
  await using server = served.server;
  const { incoming, env } = served;
  const pushed = await runClient(
    [tree, `127.0.0.1:${server.port}:${incoming}/`],
    env,
  );
  assert.equal(pushed.code, 0, pushed.stderr);
  const copies = join(tmp.path, "copies");
  await Deno.mkdir(copies);
  const pulled = await runClient(
    [`127.0.0.1:${server.port}:${tree}`, `${copies}/`],
    env,
  );
  assert.equal(pulled.code, 0, pulled.stderr);
  for (const root of [join(incoming, "tree"), join(copies, "tree")]) {
    for (const name of [long, accented]) {
      assert.deepEqual(
        await Deno.readFile(join(root, name)),
        await Deno.readFile(join(tree, name)),
        `${root}/${name}`,
      );
    }
    assert.deepEqual(
      [...Deno.readDirSync(root)].map((e) => e.name).sort(),
      [long, accented].sort(),
      "nothing else is left there",
    );
  }
});
