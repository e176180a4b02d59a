/** Faithful copies on the pulling side (issue 19): modes by default, omissions, symlinks (-l), hard links (-H) and holes (-S), against a fake server. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { UNSAFE_LINK_MESSAGE } from "../lib/client/plan.ts";
import { PathFilter } from "../lib/client/filters.ts";
import type { FollowEvent } from "../lib/client/follow_events.ts";
import { FollowTree } from "../lib/client/follow_tree.ts";
import { Remote } from "../lib/client/remote.ts";
import { runClient, tempDir } from "./_programs.ts";
import {
  bytesContent,
  type FakeLine,
  listServer,
  ROOT,
  run,
  sparseContent,
  text,
} from "./_list_server.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function modeOf(path: string): number {
  return (Deno.lstatSync(path).mode ?? 0) & 0o7777;
}

Deno.test("without -P new files and directories get the server's mode masked by the umask; existing directories keep theirs; -P keeps modes exactly", async () => {
  await using dir = await tempDir();
  const umask = Deno.umask();
  const lines: FakeLine[] = [
    { path: "private", type: "dir", mode: 0o700 },
    {
      path: "private/key",
      type: "file",
      mode: 0o600,
      content: bytesContent(text("k")),
    },
    { path: "keep", type: "dir", mode: 0o700 },
    {
      path: "run.sh",
      type: "file",
      mode: 0o755,
      content: bytesContent(text("#!")),
    },
    {
      path: "suid",
      type: "file",
      mode: 0o4777,
      content: bytesContent(text("s")),
    },
    {
      path: "big",
      type: "file",
      mode: 0o640,
      content: bytesContent(new Uint8Array(300_000).fill(7)),
    },
  ];
  await using server = listServer({ root: ROOT, lines });
  const dest = join(dir.path, "copy");
  await Deno.mkdir(join(dest, "keep"), { recursive: true });
  await Deno.chmod(join(dest, "keep"), 0o751);
  const { summary } = await run(server.baseUrl, dest);
  assert.equal(summary.failed, 0);
  assert.equal(modeOf(join(dest, "private")), 0o700 & ~umask);
  assert.equal(modeOf(join(dest, "private/key")), 0o600 & ~umask);
  assert.equal(modeOf(join(dest, "run.sh")), 0o755 & ~umask);
  assert.equal(modeOf(join(dest, "suid")), 0o775 & ~umask);
  assert.equal(modeOf(join(dest, "big")), 0o640 & ~umask);
  assert.equal(modeOf(join(dest, "keep")), 0o751);

  const exact = join(dir.path, "exact");
  await run(server.baseUrl, exact, { preserve: true });
  assert.equal(modeOf(join(exact, "private/key")), 0o600);
  assert.equal(modeOf(join(exact, "suid")), 0o775);
  assert.equal(modeOf(join(exact, "keep")), 0o700);
});

Deno.test("omission lines are named once in the summary (even when a cut listing repeats them), withheld ones counted, excluded ones not counted", async () => {
  await using dir = await tempDir();
  const lines: FakeLine[] = [
    { path: "a.txt", type: "file", content: bytesContent(text("a")) },
    { omitted: "unreadable", path: "locked", message: "Cannot read directory" },
    { omitted: "withheld", message: "Withheld by the server's rules" },
    { path: "b.txt", type: "file", content: bytesContent(text("b")) },
    { omitted: "special", path: "fifo", message: "Not a regular file (FIFO)" },
    { omitted: "name", path: "caf\uFFFD.txt", message: "Name is not UTF-8" },
    { omitted: "link", path: "build/out", message: "Link leads outside" },
  ];
  // Cut after the withheld line: the listing resumes after "a.txt" and sends those two again.
  await using server = listServer({ root: ROOT, lines, cutAfter: 3 });
  const dest = join(dir.path, "copy");
  const { summary, events } = await run(server.baseUrl, dest, {
    exclude: ["build"],
  });
  assert.equal(summary.failed, 0);
  assert.equal(summary.files, 2);
  assert.deepEqual(summary.omissions, [
    { path: "locked", message: "Cannot read directory" },
    { path: "fifo", message: "Not a regular file (FIFO)" },
    { path: "caf\uFFFD.txt", message: "Name is not UTF-8" },
  ]);
  assert.equal(summary.withheld, 1);
  assert.equal(events.filter((e) => e.type === "omitted").length, 4);
  assert.equal(
    server.log.filter((l) => l.startsWith("GET /v1/list")).length,
    2,
  );
});

/** A listed link's own modification time (ms). */
const LINK_TIME = Date.UTC(2019, 4, 5, 6, 7, 8, 9);

Deno.test("-l creates links as links, refuses unsafe targets unless --unsafe-links, replaces files, never a directory, and never writes through a link it made", async () => {
  await using dir = await tempDir();
  const lines: FakeLine[] = [
    { path: "run_0423", type: "dir" },
    {
      path: "run_0423/data.txt",
      type: "file",
      content: bytesContent(text("data")),
    },
    { path: "latest", type: "symlink", target: "run_0423" },
    // A hostile (or confused) server: an entry under the link just made.
    {
      path: "latest/evil.txt",
      type: "file",
      content: bytesContent(text("evil")),
    },
    { path: "up", type: "symlink", target: "../../etc/passwd" },
    { path: "abs", type: "symlink", target: "/etc/passwd" },
    {
      path: "same",
      type: "symlink",
      target: "run_0423/data.txt",
      mtime: LINK_TIME,
    },
    {
      path: "repl",
      type: "symlink",
      target: "run_0423/data.txt",
      mtime: LINK_TIME,
    },
    { path: "dirthere", type: "symlink", target: "run_0423" },
  ];
  await using server = listServer({ root: ROOT, lines });
  const dest = join(dir.path, "copy");
  await Deno.mkdir(join(dest, "dirthere"), { recursive: true });
  await Deno.symlink("run_0423/data.txt", join(dest, "same"));
  await Deno.writeTextFile(join(dest, "repl"), "old");
  const { summary } = await run(server.baseUrl, dest, { links: true });
  assert.equal(Deno.readLinkSync(join(dest, "latest")), "run_0423");
  assert.equal(Deno.readLinkSync(join(dest, "repl")), "run_0423/data.txt");
  assert.equal(Deno.readLinkSync(join(dest, "same")), "run_0423/data.txt");
  // A link's own time is the listed one, made or already there (then skipped).
  for (const name of ["same", "repl"]) {
    assert.equal(Deno.lstatSync(join(dest, name)).mtime?.getTime(), LINK_TIME);
  }
  assert.ok(Deno.lstatSync(join(dest, "dirthere")).isDirectory);
  assert.throws(() => Deno.lstatSync(join(dest, "run_0423/evil.txt")));
  assert.throws(() => Deno.lstatSync(join(dest, "up")));
  assert.throws(() => Deno.lstatSync(join(dest, "abs")));
  assert.equal(
    await Deno.readTextFile(join(dest, "run_0423/data.txt")),
    "data",
  );
  assert.deepEqual(summary.omissions, [
    { path: "up", message: UNSAFE_LINK_MESSAGE },
    { path: "abs", message: UNSAFE_LINK_MESSAGE },
  ]);
  assert.deepEqual(summary.failures.map((f) => f.path).sort(), [
    "dirthere",
    "latest/evil.txt",
  ]);
  assert.match(
    summary.failures.find((f) => f.path === "latest/evil.txt")!.message,
    /symbolic link/,
  );
  assert.equal(summary.skipped, 1);
  assert.equal(
    Deno.readDirSync(dest).toArray().some((e) =>
      e.name.endsWith(".hsync-part")
    ),
    false,
  );

  const unsafe = join(dir.path, "unsafe");
  const second = await run(server.baseUrl, unsafe, {
    links: true,
    unsafeLinks: true,
  });
  assert.equal(Deno.readLinkSync(join(unsafe, "up")), "../../etc/passwd");
  assert.equal(Deno.readLinkSync(join(unsafe, "abs")), "/etc/passwd");
  assert.equal(second.summary.omissions, undefined);
});

Deno.test("-H links names of one file instead of fetching them twice; a rerun skips them; without -H each is a file", async () => {
  await using dir = await tempDir();
  const big = new Uint8Array(600_000).map((_, i) => i % 251);
  const lines: FakeLine[] = [
    { path: "a", type: "file", inode: "1", content: bytesContent(text("one")) },
    { path: "sub", type: "dir" },
    {
      path: "sub/b",
      type: "file",
      inode: "1",
      content: bytesContent(text("one")),
    },
    { path: "c", type: "file", inode: "1", content: bytesContent(text("one")) },
    { path: "e1", type: "file", inode: "3", content: bytesContent(big) },
    { path: "e2", type: "file", inode: "3", content: bytesContent(big) },
    {
      path: "z1",
      type: "file",
      inode: "4",
      content: bytesContent(new Uint8Array(0)),
    },
    {
      path: "z2",
      type: "file",
      inode: "4",
      content: bytesContent(new Uint8Array(0)),
    },
  ];
  await using server = listServer({ root: ROOT, lines });
  const dest = join(dir.path, "copy");
  const { summary } = await run(server.baseUrl, dest, { hardLinks: true });
  assert.equal(summary.failed, 0);
  const ino = (p: string) => Deno.lstatSync(join(dest, p)).ino;
  assert.equal(ino("sub/b"), ino("a"));
  assert.equal(ino("c"), ino("a"));
  assert.equal(ino("e2"), ino("e1"));
  assert.equal(ino("z2"), ino("z1"));
  assert.equal(Deno.lstatSync(join(dest, "a")).nlink, 3);
  assert.equal(await Deno.readTextFile(join(dest, "c")), "one");
  assert.equal(server.sent, 3 + big.length);
  assert.ok(server.log.some((l) => l.includes("hardlinks=1")));

  const again = await run(server.baseUrl, dest, { hardLinks: true });
  assert.equal(again.summary.files, 0);
  assert.equal(again.summary.skipped, 7);
  assert.equal(server.sent, 3 + big.length);

  const plain = join(dir.path, "plain");
  await run(server.baseUrl, plain);
  assert.notEqual(
    Deno.lstatSync(join(plain, "a")).ino,
    Deno.lstatSync(join(plain, "c")).ino,
  );
});

Deno.test("-H fetches the other names on their own when the first name fails", async () => {
  await using dir = await tempDir();
  const lines: FakeLine[] = [
    {
      path: "blocked",
      type: "file",
      inode: "1",
      content: bytesContent(text("x")),
    },
    { path: "ok", type: "file", inode: "1", content: bytesContent(text("x")) },
  ];
  await using server = listServer({ root: ROOT, lines });
  const dest = join(dir.path, "copy");
  // A directory where the first name goes: it cannot be placed.
  await Deno.mkdir(join(dest, "blocked", "inside"), { recursive: true });
  const { summary } = await run(server.baseUrl, dest, { hardLinks: true });
  assert.deepEqual(summary.failures.map((f) => f.path), ["blocked"]);
  assert.equal(await Deno.readTextFile(join(dest, "ok")), "x");
  assert.ok(server.log.some((l) => l.includes("hardlinks=1")));
});

Deno.test("-S fetches a sparse file of 1 GiB by its extents: a few KiB cross, and it lands sparse with its bytes in place", async () => {
  await using dir = await tempDir();
  const tail = 700 * MiB + 123;
  const lines: FakeLine[] = [
    {
      path: "disk.img",
      type: "file",
      sparse: true,
      content: sparseContent(GiB, [[0, text("head")], [tail, text("tail")]]),
    },
  ];
  await using server = listServer({ root: ROOT, lines });
  const dest = join(dir.path, "copy");
  const { summary } = await run(server.baseUrl, dest, { sparse: true });
  assert.equal(summary.failed, 0);
  assert.equal(summary.files, 1);
  const path = join(dest, "disk.img");
  const info = Deno.statSync(path);
  assert.equal(info.size, GiB);
  assert.ok(server.sent < GiB / 100, `sent ${server.sent} bytes`);
  assert.ok(info.blocks! * 512 < MiB, `${info.blocks} blocks`);
  using file = await Deno.open(path);
  const got = new Uint8Array(4);
  await file.seek(tail, Deno.SeekMode.Start);
  await file.read(got);
  assert.equal(new TextDecoder().decode(got), "tail");
  await file.seek(0, Deno.SeekMode.Start);
  await file.read(got);
  assert.equal(new TextDecoder().decode(got), "head");
  assert.ok(server.log.some((l) => l.startsWith("GET /v1/extents")));
});

Deno.test("-S leaves long zero runs of any ranged body unwritten (holes); without -S they are written", async () => {
  await using dir = await tempDir();
  const data = new Uint8Array(8 * MiB);
  data.fill(1, 0, 1000);
  data.fill(2, 8 * MiB - 1000);
  const lines: FakeLine[] = [
    { path: "zeros.bin", type: "file", content: bytesContent(data) },
  ];
  await using server = listServer({ root: ROOT, lines });
  const sparse = join(dir.path, "sparse");
  await run(server.baseUrl, sparse, { sparse: true });
  const got = await Deno.readFile(join(sparse, "zeros.bin"));
  assert.ok(got.length === data.length && got.every((b, i) => b === data[i]));
  assert.ok(Deno.statSync(join(sparse, "zeros.bin")).blocks! * 512 < MiB);

  const dense = join(dir.path, "dense");
  await run(server.baseUrl, dense);
  assert.ok(Deno.statSync(join(dense, "zeros.bin")).blocks! * 512 >= 8 * MiB);
});

Deno.test("hsync exits 2 with a 'not transferred' line for an omission, and -a gives links, hard links, holes and modes", async () => {
  await using dir = await tempDir();
  const lines: FakeLine[] = [
    { path: "run", type: "dir", mode: 0o750 },
    {
      path: "run/a",
      type: "file",
      mode: 0o600,
      inode: "7",
      content: bytesContent(text("a")),
    },
    {
      path: "run/b",
      type: "file",
      mode: 0o600,
      inode: "7",
      content: bytesContent(text("a")),
    },
    { path: "latest", type: "symlink", target: "run" },
    {
      path: "img",
      type: "file",
      sparse: true,
      content: sparseContent(64 * MiB, [[5 * MiB, text("x")]]),
    },
    { omitted: "special", path: "fifo", message: "Not a regular file (FIFO)" },
  ];
  await using server = listServer({ root: ROOT, lines });
  const hsyncDir = join(dir.path, "hsync-dir");
  await Deno.mkdir(hsyncDir);
  const dest = join(dir.path, "copy");
  const r = await runClient(
    [`127.0.0.1:${server.port}:${ROOT}`, dest, "-a"],
    { HSYNC_DIR: hsyncDir },
  );
  assert.equal(r.code, 2, r.stderr);
  const errLines = r.stderr.split("\n").filter((l) => l !== "");
  assert.ok(
    errLines.includes(
      "hsync: not transferred: fifo: Not a regular file (FIFO)",
    ),
    r.stderr,
  );
  assert.match(errLines.at(-1)!, /, 0 failed, 1 not transferred$/);
  assert.equal(Deno.readLinkSync(join(dest, "latest")), "run");
  assert.equal(
    Deno.lstatSync(join(dest, "run/a")).ino,
    Deno.lstatSync(join(dest, "run/b")).ino,
  );
  assert.equal(modeOf(join(dest, "run/a")), 0o600);
  assert.equal(modeOf(join(dest, "run")), 0o750);
  const img = Deno.statSync(join(dest, "img"));
  assert.equal(img.size, 64 * MiB);
  assert.ok(img.blocks! * 512 < MiB);
  assert.ok(server.sent < 64 * MiB / 100);
});

Deno.test("--sync's tree scan warns once per named omission instead of failing on the line", async () => {
  await using dir = await tempDir();
  const lines: FakeLine[] = [
    { path: "a.txt", type: "file", content: bytesContent(text("a")) },
    { omitted: "special", path: "fifo", message: "Not a regular file (FIFO)" },
    { omitted: "withheld", message: "Withheld by the server's rules" },
  ];
  await using server = listServer({ root: ROOT, lines });
  const events: FollowEvent[] = [];
  const stop = new AbortController();
  const tree = new FollowTree({
    remote: new Remote({ baseUrl: server.baseUrl }),
    remotePath: ROOT,
    isDir: true,
    dest: dir.path,
    filter: new PathFilter(),
    fromNow: true,
    maxEntries: 100,
    stop: stop.signal,
    hard: stop.signal,
    summary: {
      appendedBytes: 0,
      fetchedFiles: 0,
      fetchedBytes: 0,
      seconds: 0,
    },
    emit: (e) => events.push(e),
    stopRun: (error) => {
      throw error;
    },
  });
  await tree.rescan(true);
  await tree.drain();
  assert.deepEqual(events, [{
    type: "warning",
    path: "fifo",
    message: `"fifo" is not followed: Not a regular file (FIFO)`,
  }]);
  assert.equal(tree.files, 1);
});

Deno.test("a listing line is checked: a symlink only when links were asked, a malformed omission refused", async () => {
  const lines: FakeLine[] = [
    { path: "l", type: "symlink", target: "x" },
  ];
  await using server = listServer({ root: ROOT, lines });
  const remote = new Remote({ baseUrl: server.baseUrl });
  const got = [];
  for await (const l of remote.list(ROOT, undefined, { links: true })) {
    got.push(l);
  }
  assert.equal(got.length, 1);
  await using broken = listServer({ root: ROOT, lines, linksUnasked: true });
  await assert.rejects(async () => {
    for await (const _ of new Remote({ baseUrl: broken.baseUrl }).list(ROOT)) {
      // draining
    }
  }, /malformed entry/);
  await using hostile = listServer({
    root: ROOT,
    lines: [{ omitted: "special", message: "no path" } as never],
  });
  await assert.rejects(async () => {
    for await (const _ of new Remote({ baseUrl: hostile.baseUrl }).list(ROOT)) {
      // draining
    }
  }, /malformed omission/);
});
