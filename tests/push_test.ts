/** Tests of lib/client/push.ts against a fake server that implements the push protocol over a real directory (tests/_push_server.ts). */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import defaults from "../hsync.ini" with { type: "text" };
import {
  type ClientSettings,
  clientSettings,
  loadConfig,
} from "../lib/shared/config.ts";
import { ConnectError } from "../lib/shared/errors.ts";
import { RangeSet } from "../lib/shared/range_set.ts";
import { push, type PushOptions } from "../lib/client/push.ts";
import { sourceIdOf } from "../lib/client/push_context.ts";
import { mostFilesPerBundle } from "../lib/client/send_bundle.ts";
import type { PullEvent } from "../lib/client/transfer.ts";
import { type DirRequest, MKDIR_MAX_DIRS } from "../lib/shared/wire.ts";
import { handleStats, tempDir, unixSocketsOf } from "./_programs.ts";
import {
  type PushServer,
  pushServer,
  type PushServerOptions,
} from "./_push_server.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const T0 = 1_600_000_000_000;

async function settingsWith(
  overrides: Record<string, string> = {},
): Promise<ClientSettings> {
  const config = await loadConfig({ defaults, hsyncDir: "/nonexistent-hsync" });
  return clientSettings(config, "hscp", {
    Data_timeout: "5",
    Max_timeout_retry: "2",
    Max_part_num: "4",
    Min_part_size: "256K",
    ...overrides,
  });
}

/** Deterministic bytes that differ per seed and per position. */
function bytes(size: number, seed: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

function sha(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Every entry below `root`: type, size, mtime and SHA-256 (files), mtime (directories). */
async function snapshot(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  async function walk(dir: string, rel: string) {
    for await (const e of Deno.readDir(dir)) {
      const r = rel === "" ? e.name : `${rel}/${e.name}`;
      const path = join(dir, e.name);
      const info = await Deno.lstat(path);
      if (info.isDirectory) {
        await walk(path, r);
        out[r + "/"] = `dir ${info.mtime?.getTime()}`;
      } else {
        out[r] = `file ${info.size} ${info.mtime?.getTime()} ${
          sha(await Deno.readFile(path))
        }`;
      }
    }
  }
  await walk(root, "");
  return out;
}

interface Fixture {
  dir: string;
  /** Local sources live here. */
  src: string;
  /** The server's writable directory. */
  dst: string;
}

async function fixture(dir: string): Promise<Fixture> {
  const src = join(dir, "src");
  const dst = join(dir, "dst");
  await Deno.mkdir(src);
  await Deno.mkdir(dst);
  return { dir, src, dst };
}

/** A tree with nested and empty directories, odd names, empty, small and big files; fixed times. */
async function makeTree(root: string): Promise<number> {
  const files: Array<[string, number]> = [
    ["a.txt", 10],
    ["empty", 0],
    ["sp ace é.txt", 2000],
    ["-dash", 5],
    ["q?&#%=+ ;.bin", 777],
    ["medium.bin", 300 * KiB],
    ["big.bin", 1536 * KiB + 3],
    ["sub/b.txt", 100],
    ["sub/deep/er/c.bin", 270 * KiB],
    ["sub/deep/d", 1],
  ];
  await Deno.mkdir(join(root, "sub/deep/er"), { recursive: true });
  await Deno.mkdir(join(root, "empty dir/nested empty"), { recursive: true });
  let seed = 1;
  for (const [rel, size] of files) {
    const path = join(root, rel);
    await Deno.writeFile(path, bytes(size, seed++));
    await Deno.utime(path, new Date(T0), new Date(T0 + seed * 1000));
  }
  for (
    const d of [
      "sub/deep/er",
      "sub/deep",
      "sub",
      "empty dir/nested empty",
      "empty dir",
    ]
  ) {
    await Deno.utime(join(root, d), new Date(T0), new Date(T0 - 7000));
  }
  return files.length;
}

async function run(
  server: PushServer,
  sources: string[],
  remotePath: string,
  more: Partial<PushOptions> = {},
  settings: Record<string, string> = {},
): Promise<{ summary: Awaited<ReturnType<typeof push>>; events: PullEvent[] }> {
  const events: PullEvent[] = [];
  const summary = await push({
    baseUrl: server.baseUrl,
    sources,
    remotePath,
    settings: await settingsWith(settings),
    parallelFiles: 4,
    retryBaseMs: 1,
    session: "test-session",
    onEvent: (e) => events.push(e),
    ...more,
  });
  return { summary, events };
}

function warnings(events: PullEvent[]): string[] {
  return events.flatMap((e) => e.type === "warning" ? [e.message] : []);
}

function writes(server: PushServer): string[] {
  // A destination's lease (404 from this server) changes no file.
  return server.log.filter((l) =>
    !l.startsWith("GET ") && !l.startsWith("POST /v1/lock?")
  );
}

function serve(
  f: Fixture,
  more: Partial<PushServerOptions> = {},
): PushServer {
  return pushServer({ writable: f.dst, ...more });
}

/** Leaves what the server would hold after an interrupted push of `local` to `remote`: bytes `held` of `content`, for `source`. */
async function plantUpload(
  server: PushServer,
  remote: string,
  content: Uint8Array,
  held: [number, number],
  source: string,
): Promise<void> {
  const part = new Uint8Array(held[1]);
  part.set(content.subarray(held[0], held[1]), held[0]);
  await Deno.writeFile(remote + ".hsync-part", part);
  server.uploads.set(remote, {
    size: content.length,
    source,
    held: new RangeSet([{ start: held[0], end: held[1] }]),
    session: "earlier",
  });
}

// ------------------------------------------------------------------ trees

Deno.test("push() copies a tree byte-identical: nested and empty directories, odd names, empty, small and big files, times", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  const count = await makeTree(join(f.src, "run42"));
  await using server = serve(f);

  const { summary, events } = await run(
    server,
    [join(f.src, "run42")],
    f.dst + "/",
  );
  assert.deepEqual(summary.failures, []);
  assert.equal(summary.files, count);
  assert.deepEqual(
    await snapshot(join(f.dst, "run42")),
    await snapshot(join(f.src, "run42")),
  );
  assert.deepEqual(warnings(events), []);
  // Big files went in several ranges, small ones in bundles.
  const bigPuts = server.puts.filter((p) => p.path.endsWith("/big.bin"));
  assert.equal(bigPuts.length, 4);
  assert.ok(server.bundled.includes("run42/a.txt"));
  assert.ok(server.bundled.includes("run42/empty"));
  assert.ok(!server.bundled.includes("run42/big.bin"));
});

Deno.test("a push's walk and its reading ahead turn the event loop through socket pairs, and leave none open", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  // Enough files that both take turns (the reading ahead every 1 ms of
  // work, the walk every 4).
  const root = join(f.src, "many");
  for (let d = 0; d < 10; d++) {
    await Deno.mkdir(join(root, `d${d}`), { recursive: true });
    for (let i = 0; i < 200; i++) {
      Deno.writeFileSync(join(root, `d${d}`, `f${i}`), bytes(64, d * 1000 + i));
    }
  }
  await using server = serve(f);
  const before = await unixSocketsOf(Deno.pid);
  const { summary } = await run(server, [root], f.dst + "/");
  assert.deepEqual(summary.failures, []);
  assert.equal(summary.files, 2000);
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(await unixSocketsOf(Deno.pid), before);
});

Deno.test("a new tree's directories are made by its bundles, not before them, and the empty ones with every time in one request at the end", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  const root = join(f.src, "many");
  for (let i = 0; i < 12; i++) {
    await Deno.mkdir(join(root, `d${i}`, "inner"), { recursive: true });
    await Deno.writeTextFile(join(root, `d${i}`, "inner", "x.txt"), `${i}`);
  }
  await Deno.mkdir(join(root, "empty", "deeper"), { recursive: true });
  await Deno.utime(join(root, "empty"), new Date(T0), new Date(T0 + 7000));
  // Without -P a directory made gets its own bits, masked by the server's
  // umask, as cp does: the tree's own too.
  await Deno.chmod(join(root, "d3"), 0o700);
  await Deno.chmod(join(root, "empty", "deeper"), 0o705);
  await Deno.chmod(root, 0o750);
  const arrays: DirRequest[][] = [];
  await using server = serve(f, {
    hook: async (url, request) => {
      if (request.method !== "POST" || url.pathname !== "/v1/mkdir") return;
      if (!url.searchParams.has("path")) {
        arrays.push(await request.clone().json());
      }
    },
  });
  const { summary } = await run(server, [root], f.dst + "/");
  assert.deepEqual(summary.failures, []);
  assert.deepEqual(
    await snapshot(join(f.dst, "many")),
    await snapshot(root),
  );
  // Nothing waits for a mkdir: the bundle makes its files' directories.
  assert.deepEqual(
    server.log.filter((l) => l.startsWith("POST /v1/mkdir?")),
    [],
  );
  assert.ok(
    server.log.findIndex((l) => l.startsWith("POST /v1/upload/bundle?")) <
      server.log.findIndex((l) => l.startsWith("POST /v1/mkdir")),
  );
  // Every directory, the tree's own, the empty ones: one request.
  assert.equal(arrays.length, 1);
  assert.equal(arrays[0].length, 1 + 12 * 2 + 2);
  assert.ok(arrays[0].every((d) => d.narrow === true && d.mtime !== undefined));
  assert.equal((await Deno.stat(join(f.dst, "many"))).mode! & 0o777, 0o750);
  assert.equal((await Deno.stat(join(f.dst, "many/d3"))).mode! & 0o777, 0o700);
  assert.equal(
    (await Deno.stat(join(f.dst, "many/d4"))).mode! & 0o777,
    0o755,
  );
  assert.equal(
    (await Deno.stat(join(f.dst, "many/empty/deeper"))).mode! & 0o777,
    0o705,
  );
  // The times hold: the empty directory's was set after its child was made.
  assert.equal(
    (await Deno.stat(join(f.dst, "many/empty"))).mtime?.getTime(),
    T0 + 7000,
  );
});

Deno.test("more directories than one mkdir array holds are all made before any gets its time (one array at a time, the last first, when making them first failed)", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  const root = join(f.src, "wide");
  const count = MKDIR_MAX_DIRS + 5;
  for (let i = 0; i < count; i++) {
    await Deno.mkdir(join(root, `d${String(i).padStart(4, "0")}`), {
      recursive: true,
    });
  }
  // The last one holds one more level: in the second array, while the
  // tree's own directory is in the first.
  const last = `d${String(count - 1).padStart(4, "0")}`;
  await Deno.mkdir(join(root, last, "inner"));
  await Deno.utime(join(root, last), new Date(T0), new Date(T0 + 3000));
  await Deno.utime(root, new Date(T0), new Date(T0 + 4000));
  for (const failFirst of [false, true]) {
    const dst = join(f.dst, String(failFirst));
    await Deno.mkdir(dst);
    const arrays: DirRequest[][] = [];
    await using server = serve(f, {
      hook: async (url, request) => {
        if (url.pathname !== "/v1/mkdir" || url.searchParams.has("path")) {
          return;
        }
        const asked = await request.clone().json() as DirRequest[];
        arrays.push(asked);
        if (failFirst && asked.every((d) => d.mtime === undefined)) {
          return new Response("no", { status: 400 });
        }
      },
    });
    const { summary } = await run(server, [root], dst + "/");
    assert.deepEqual(summary.failures, []);
    assert.equal([...Deno.readDirSync(join(dst, "wide"))].length, count);
    assert.equal(
      (await Deno.stat(join(dst, "wide", last))).mtime?.getTime(),
      T0 + 3000,
    );
    assert.equal(
      (await Deno.stat(join(dst, "wide"))).mtime?.getTime(),
      T0 + 4000,
      `failFirst=${failFirst}`,
    );
    const makeOnly = arrays.filter((a) =>
      a.every((d) => d.mtime === undefined)
    );
    assert.ok(makeOnly.length >= 2, `${makeOnly.length}`);
    const timed = arrays.filter((a) => a.every((d) => d.mtime !== undefined));
    const sizes = timed.map((a) => a.length);
    const expected = [MKDIR_MAX_DIRS, count + 2 - MKDIR_MAX_DIRS];
    if (failFirst) assert.deepEqual(sizes, expected.reverse());
    else assert.deepEqual(sizes.sort((a, b) => b - a), expected);
  }
});

Deno.test("a small file of a bundle is read through a node descriptor: no Deno handle's fstat (six readlinks each) per file", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  /** Pushes a tree of `files` small files in 4 directories; the handle fstats it took. */
  const pushTree = async (name: string, files: number): Promise<number> => {
    const root = join(f.src, name);
    for (let i = 0; i < files; i++) {
      await Deno.mkdir(join(root, `d${i % 4}`), { recursive: true });
      await Deno.writeFile(join(root, `d${i % 4}`, `f${i}`), bytes(900 + i, i));
    }
    await using server = serve(f);
    const stats = await handleStats(async () => {
      const { summary } = await run(server, [root], f.dst + "/");
      assert.deepEqual(summary.failures, []);
      assert.equal(summary.files, files);
    });
    assert.deepEqual(
      await snapshot(join(f.dst, name)),
      await snapshot(root),
    );
    return stats;
  };
  const few = await pushTree("few", 40);
  const more = await pushTree("more", 80);
  // Three per file once, then two (the open's proof, the check after the
  // read): none now (one node fstat after the read), whatever the number
  // of files.
  assert.equal(more - few, 0, `handle fstats: ${few} for 40, ${more} for 80`);
});

/** A hook making every small request of a push (all but PUTs and bundles) take `delayMs`: a round trip that long. */
function roundTrip(delayMs: number) {
  return async (url: URL, request: Request) => {
    if (request.method !== "PUT" && url.pathname !== "/v1/upload/bundle") {
      await new Promise((done) => setTimeout(done, delayMs));
    }
    return undefined;
  };
}

Deno.test("bundles carry at most 256 files near, so the last one (written after the walk has ended) stays short; far away they grow with the round trip", async () => {
  assert.deepEqual(
    [undefined, 0, 10, 64, 100, 200, 300, 5000].map(mostFilesPerBundle),
    [256, 256, 256, 256, 400, 800, 1000, 1000],
  );
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  const files = 1000;
  const root = join(f.src, "many");
  await Deno.mkdir(join(root, "d"), { recursive: true });
  for (let i = 0; i < files; i++) {
    await Deno.writeFile(join(root, "d", `f${i}`), bytes(20, i));
  }
  for (const [delayMs, most] of [[0, 256], [200, 1000]] as const) {
    await using server = serve(f, { hook: roundTrip(delayMs) });
    const dest = join(f.dst, `d${delayMs}`);
    const { summary } = await run(server, [root], dest + "/");
    assert.deepEqual(summary.failures, []);
    assert.equal(summary.files, files);
    const sizes = server.bundleSizes;
    assert.equal(sizes.reduce((a, b) => a + b, 0), files);
    const largest = Math.max(...sizes);
    assert.ok(largest <= most, `${delayMs} ms: bundles of ${sizes}`);
    // Near, 64, 128, then 256 at most (512 before); far, past 256.
    if (delayMs > 0) assert.ok(largest > 256, `far: bundles of ${sizes}`);
    else assert.equal(largest, 256, `near: bundles of ${sizes}`);
    assert.deepEqual(
      await snapshot(join(dest, "many")),
      await snapshot(root),
    );
  }
});

Deno.test("a PUT carries 8 MiB, near as far (hsyncd writes a range as it arrives)", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  const content = bytes(20 * 1024 * 1024, 11);
  await Deno.writeFile(join(f.src, "big.bin"), content);
  for (const delayMs of [0, 20]) {
    await using server = serve(f, { hook: roundTrip(delayMs) });
    const dest = join(f.dst, `d${delayMs}`);
    await Deno.mkdir(dest);
    // One range: the PUTs are as long as they may be.
    const { summary } = await run(
      server,
      [join(f.src, "big.bin")],
      dest + "/",
      {},
      { Max_part_num: "1" },
    );
    assert.deepEqual(summary.failures, []);
    const largest = Math.max(...server.puts.map((p) => p.end - p.start));
    assert.equal(largest, 8 * 1024 * 1024, `status delayed ${delayMs} ms`);
    assert.ok(
      sha(await Deno.readFile(join(dest, "big.bin"))) === sha(content),
    );
  }
});

Deno.test("sixteen ranges of 12 MiB pushed through a slow server go in PUTs of 8 MiB, at most 8 at once, each answered 200", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  const content = bytes(192 * MiB, 12);
  await Deno.writeFile(join(f.src, "big.bin"), content);
  await using server = serve(f, {
    hook: async () => {
      await new Promise((done) => setTimeout(done, 20));
      return undefined;
    },
  });
  const { summary } = await run(
    server,
    [join(f.src, "big.bin")],
    f.dst + "/",
    {},
    { Max_part_num: "16", Max_runing: "16", Max_tcp_conn: "16" },
  );
  assert.deepEqual(summary.failures, []);
  // Each range: 8 MiB, then 4; eight at once (64 MiB read into memory).
  const sizes = server.puts.map((p) => (p.end - p.start) / MiB);
  assert.deepEqual([...new Set(sizes)].sort(), [4, 8], String(sizes));
  assert.equal(server.mostPutsAtOnce(), 8);
  assert.deepEqual(server.puts.filter((p) => p.status !== 200), []);
  assert.equal(sha(await Deno.readFile(join(f.dst, "big.bin"))), sha(content));
});

Deno.test("pushing the same tree again skips every file and writes nothing", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  const count = await makeTree(join(f.src, "run42"));
  await using server = serve(f);
  await run(server, [join(f.src, "run42")], f.dst + "/");
  const before = server.log.length;

  const { summary } = await run(server, [join(f.src, "run42")], f.dst + "/");
  assert.deepEqual(
    [summary.files, summary.skipped, summary.failed],
    [0, count, 0],
  );
  assert.deepEqual(writes({ ...server, log: server.log.slice(before) }), []);
});

Deno.test("--push -o copies a directory to the path itself (merged into on a rerun); scp-style puts it inside an existing directory", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  await makeTree(join(f.src, "run42"));
  await using server = serve(f);
  const copy = join(f.dst, "copy");
  let r = await run(server, [join(f.src, "run42")], copy);
  assert.deepEqual(r.summary.failures, []);
  assert.deepEqual(await snapshot(copy), await snapshot(join(f.src, "run42")));
  r = await run(server, [join(f.src, "run42")], copy);
  assert.equal(r.summary.files, 0);
  assert.deepEqual(
    (await Array.fromAsync(Deno.readDir(copy))).some((e) => e.name === "run42"),
    false,
  );

  r = await run(server, [join(f.src, "run42")], copy, { scpPlacement: true });
  assert.deepEqual(r.summary.failures, []);
  assert.deepEqual(
    await snapshot(join(copy, "run42")),
    await snapshot(join(f.src, "run42")),
  );
});

Deno.test("one file goes to a new name, inside an existing directory, and several sources go inside the remote directory", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  const small = join(f.src, "small.txt");
  const big = join(f.src, "big.bin");
  await Deno.writeFile(small, bytes(1000, 1));
  await Deno.writeFile(big, bytes(600 * KiB, 2));
  await using server = serve(f);

  let r = await run(server, [big], join(f.dst, "new/dir/renamed.bin"));
  assert.deepEqual(r.summary.failures, []);
  assert.equal(
    sha(await Deno.readFile(join(f.dst, "new/dir/renamed.bin"))),
    sha(await Deno.readFile(big)),
  );
  r = await run(server, [small], join(f.dst, "new"));
  assert.deepEqual(r.summary.failures, []);
  assert.equal(
    await Deno.readTextFile(join(f.dst, "new/small.txt")),
    await Deno.readTextFile(small),
  );
  r = await run(server, [small, big], join(f.dst, "several"));
  assert.deepEqual(r.summary.failures, []);
  assert.deepEqual(
    (await Array.fromAsync(Deno.readDir(join(f.dst, "several")))).map((e) =>
      e.name
    ).sort(),
    ["big.bin", "small.txt"],
  );
});

Deno.test("--include and --exclude choose the files of a pushed tree; links are followed, hsync's partial files are skipped with a warning", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  const root = join(f.src, "t");
  await Deno.mkdir(join(root, "keep/tmp"), { recursive: true });
  await Deno.writeTextFile(join(root, "keep/a.fq"), "a");
  await Deno.writeTextFile(join(root, "keep/b.log"), "b");
  await Deno.writeTextFile(join(root, "keep/tmp/c.fq"), "c");
  await Deno.writeTextFile(join(root, "x.fq.hsync-part"), "partial");
  await Deno.writeTextFile(join(f.dir, "outside.txt"), "out");
  await Deno.symlink(join(f.dir, "outside.txt"), join(root, "link.fq"));
  await Deno.symlink(join(f.dir, "outside.txt"), join(root, "link.log"));
  await using server = serve(f);
  const { summary, events } = await run(server, [root], f.dst + "/", {
    include: ["*.fq"],
    exclude: ["tmp"],
  });
  assert.deepEqual(summary.failures, []);
  assert.deepEqual(summary.omissions, []);
  assert.equal(summary.files, 2);
  assert.equal(await Deno.readTextFile(join(f.dst, "t/keep/a.fq")), "a");
  await assert.rejects(Deno.lstat(join(f.dst, "t/keep/b.log")));
  await assert.rejects(Deno.lstat(join(f.dst, "t/keep/tmp")));
  await assert.rejects(Deno.lstat(join(f.dst, "t/link.log")));
  const link = await Deno.lstat(join(f.dst, "t/link.fq"));
  assert.ok(link.isFile);
  assert.equal(await Deno.readTextFile(join(f.dst, "t/link.fq")), "out");
  assert.deepEqual(warnings(events).sort(), [
    `Skipped "t/x.fq.hsync-part": hsync's partial files (.hsync-part, .hsync-journal) are not pushed`,
  ]);
});

Deno.test("-P sends permission bits marked preserve; directories get their times (and modes) last, once every entry is in place", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  const root = join(f.src, "t");
  await Deno.mkdir(join(root, "inner"), { recursive: true });
  await Deno.writeTextFile(join(root, "inner/small.sh"), "#!/bin/sh\n");
  await Deno.writeFile(join(root, "inner/big.bin"), bytes(300 * KiB, 3));
  await Deno.chmod(join(root, "inner/small.sh"), 0o751);
  await Deno.chmod(join(root, "inner/big.bin"), 0o640);
  await Deno.utime(join(root, "inner"), new Date(T0), new Date(T0 + 5000));
  await Deno.chmod(join(root, "inner"), 0o750);
  const bodies: string[] = [];
  await using server = serve(f, {
    hook: async (_url, request) => {
      if (request.method === "POST") {
        bodies.push(
          new TextDecoder().decode(await request.clone().arrayBuffer()),
        );
      }
      return undefined;
    },
  });
  const { summary } = await run(server, [root], f.dst + "/", {
    preserve: true,
  });
  assert.deepEqual(summary.failures, []);
  const inner = join(f.dst, "t/inner");
  assert.equal((await Deno.stat(join(inner, "small.sh"))).mode! & 0o777, 0o751);
  assert.equal((await Deno.stat(join(inner, "big.bin"))).mode! & 0o777, 0o640);
  assert.equal((await Deno.stat(inner)).mode! & 0o777, 0o750);
  assert.equal((await Deno.stat(inner)).mtime?.getTime(), T0 + 5000);
  assert.equal(bodies.filter((b) => b.includes('"preserve":true')).length, 2);
  const times = server.log.filter((l) => l === "POST /v1/mkdir");
  // t/inner (with its mode) and the tree's own directory t, together (a
  // directory's time set does not touch its parent's).
  assert.deepEqual(times.length, 1);
  const asked = JSON.parse(bodies.find((b) => b.startsWith("[{")) ?? "[]");
  assert.deepEqual(
    asked.map((d: DirRequest) => [d.path, d.mode]).sort(),
    [[join(f.dst, "t"), (await Deno.stat(root)).mode! & 0o7777], [
      inner,
      0o750,
    ]],
  );
  const lastCommit = server.log.findLastIndex((l) =>
    l.startsWith("POST /v1/upload/commit") ||
    l.startsWith("POST /v1/upload/bundle")
  );
  assert.ok(server.log.indexOf(times[0]) > lastCommit);
  // The times hold: the parent's was not changed by the child's.
  assert.equal(
    (await Deno.stat(join(f.dst, "t"))).mtime?.getTime(),
    (await Deno.stat(root)).mtime?.getTime(),
  );
});

// ------------------------------------------------------------------ skipping

Deno.test("--checksum sends a file with the same size and mtime but other bytes, and skips the same bytes with another mtime", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  const root = join(f.src, "t");
  await Deno.mkdir(root);
  await Deno.writeFile(join(root, "same-time.bin"), bytes(5000, 1));
  await Deno.writeFile(join(root, "other-time.bin"), bytes(400 * KiB, 2));
  await using server = serve(f);
  await run(server, [root], f.dst + "/");
  const sameTime = join(f.dst, "t/same-time.bin");
  const info = await Deno.stat(sameTime);
  await Deno.writeFile(sameTime, bytes(5000, 9));
  await Deno.utime(sameTime, new Date(), info.mtime!);
  await Deno.utime(join(f.dst, "t/other-time.bin"), new Date(), new Date(T0));

  let r = await run(server, [root], f.dst + "/");
  assert.equal(r.summary.skipped, 1, "size + mtime: same-time.bin is skipped");
  assert.notEqual(sha(await Deno.readFile(sameTime)), sha(bytes(5000, 1)));

  await Deno.utime(join(f.dst, "t/other-time.bin"), new Date(), new Date(T0));
  const before = server.puts.length;
  r = await run(server, [root], f.dst + "/", { checksum: true });
  assert.deepEqual(r.summary.failures, []);
  assert.deepEqual([r.summary.files, r.summary.skipped], [1, 1]);
  assert.equal(sha(await Deno.readFile(sameTime)), sha(bytes(5000, 1)));
  assert.equal(server.puts.length, before, "other-time.bin was not sent");
});

// ------------------------------------------------------------------ resume

Deno.test("an interrupted push is resumed: only the gaps the server's status reports are sent", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  const local = join(f.src, "big.bin");
  const content = bytes(2 * MiB + 17, 3);
  await Deno.writeFile(local, content);
  await using server = serve(f);
  const remote = join(f.dst, "big.bin");
  await plantUpload(
    server,
    remote,
    content,
    [0, MiB + 5],
    sourceIdOf(await Deno.lstat(local)),
  );

  const { summary, events } = await run(server, [local], f.dst + "/");
  assert.deepEqual(summary.failures, []);
  assert.equal(server.bytesPut(), content.length - (MiB + 5));
  assert.ok(server.puts.every((p) => p.start >= MiB + 5 && !p.restart));
  assert.equal(summary.resumed, MiB + 5);
  assert.equal(sha(await Deno.readFile(remote)), sha(content));
  assert.deepEqual(warnings(events), []);
});

Deno.test("a local file that changed since the interrupted push starts over with restart=1 and says so once", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  const local = join(f.src, "big.bin");
  const content = bytes(MiB + 100, 4);
  await Deno.writeFile(local, content);
  await using server = serve(f);
  const remote = join(f.dst, "big.bin");
  await plantUpload(
    server,
    remote,
    bytes(MiB + 100, 5),
    [0, MiB],
    "an-older-source",
  );

  const { summary, events } = await run(server, [local], f.dst + "/");
  assert.deepEqual(summary.failures, []);
  assert.deepEqual(warnings(events), [
    `"big.bin" changed since the interrupted push: starting over`,
  ]);
  assert.equal(server.bytesPut(), content.length);
  assert.equal(server.puts.filter((p) => p.restart).length, 1);
  assert.equal(server.puts[0].restart, true);
  assert.equal(sha(await Deno.readFile(remote)), sha(content));
});

Deno.test("files sent in ranges into a tree this push made ask nothing first: no upload status (nothing can be held there), no mkdir (their PUTs make it)", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  await makeTree(join(f.src, "run42"));
  await using server = serve(f);
  const { summary } = await run(
    server,
    [join(f.src, "run42")],
    join(f.dst, "new-name"),
  );
  assert.deepEqual(summary.failures, []);
  // big.bin, medium.bin and c.bin went in ranges.
  assert.ok(server.puts.length >= 3);
  assert.deepEqual(
    server.log.filter((l) => l.startsWith("GET /v1/upload")),
    [],
  );
  // Only the array at the end (sub/deep/er/c.bin's PUTs made its directory).
  assert.deepEqual(
    server.log.filter((l) => l.startsWith("POST /v1/mkdir?")),
    [],
  );
  assert.deepEqual(
    await snapshot(join(f.dst, "new-name")),
    await snapshot(join(f.src, "run42")),
  );
});

Deno.test("a part of another source in a tree thought new refuses the first PUT: the file starts over with restart=1 and arrives whole", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  await makeTree(join(f.src, "run42"));
  const dest = join(f.dst, "new-name");
  await Deno.mkdir(dest);
  const stale = bytes(1536 * KiB + 3, 99);
  await using server = serve(f, {
    hook: (url) =>
      url.pathname === "/v1/lock"
        // Nothing there, says the lease (another push's part came after it).
        ? leaseAnswer(url.searchParams.has("release") ? undefined : null)
        : undefined,
  });
  await plantUpload(server, join(dest, "big.bin"), stale, [0, MiB], "other");
  const { summary } = await run(server, [join(f.src, "run42")], dest);
  assert.deepEqual(summary.failures, []);
  const big = server.puts.filter((p) => p.path === join(dest, "big.bin"));
  assert.equal(big[0].status, 409);
  assert.equal(big.filter((p) => p.restart).length, 1);
  assert.deepEqual(await snapshot(dest), await snapshot(join(f.src, "run42")));
});

Deno.test("a file whose lease tells what the server holds of it is resumed from that, without asking", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  const local = join(f.src, "big.bin");
  const content = bytes(2 * MiB + 17, 3);
  await Deno.writeFile(local, content);
  const remote = join(f.dst, "big.bin");
  const source = sourceIdOf(await Deno.lstat(local));
  let told: unknown;
  await using server = serve(f, {
    hook: (url) => {
      if (url.pathname !== "/v1/lock") return undefined;
      if (url.searchParams.has("release")) return leaseAnswer();
      told = { size: content.length, source, held: [[0, MiB + 5]] };
      return Response.json({
        token: LEASE_TOKEN,
        expires_ms: 30_000,
        entry: null,
        upload: told,
      });
    },
  });
  await plantUpload(server, remote, content, [0, MiB + 5], source);
  const { summary } = await run(server, [local], f.dst + "/");
  assert.deepEqual(summary.failures, []);
  assert.ok(told !== undefined);
  assert.deepEqual(
    server.log.filter((l) => l.startsWith("GET /v1/upload")),
    [],
  );
  assert.equal(server.bytesPut(), content.length - (MiB + 5));
  assert.equal(summary.resumed, MiB + 5);
  assert.equal(sha(await Deno.readFile(remote)), sha(content));
});

Deno.test("an empty file sent alone (its time before 1970) into a new directory makes that directory first: it has no PUT to make it", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  const root = join(f.src, "t");
  await Deno.mkdir(join(root, "sub"), { recursive: true });
  await Deno.writeFile(join(root, "sub/empty"), new Uint8Array());
  await Deno.utime(join(root, "sub/empty"), new Date(), new Date(-1500));
  await using server = serve(f);
  const { summary } = await run(server, [root], join(f.dst, "new"));
  assert.deepEqual(summary.failures, []);
  const info = await Deno.stat(join(f.dst, "new/sub/empty"));
  assert.equal(info.size, 0);
  assert.equal(info.mtime?.getTime(), -1500);
});

Deno.test("to an hsyncd that makes no directory for a PUT (an older one), a file sent in ranges makes it first and is sent again", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  const root = join(f.src, "t");
  await Deno.mkdir(join(root, "only-big"), { recursive: true });
  const content = bytes(700 * KiB, 31);
  await Deno.writeFile(join(root, "only-big/big.bin"), content);
  await using server = serve(f, {
    hook: async (url, request) => {
      const path = url.searchParams.get("path") ?? "";
      if (request.method !== "PUT") return undefined;
      try {
        await Deno.stat(join(path, ".."));
        return undefined;
      } catch {
        return Response.json({
          error: "not_found",
          message: `No directory for "${path}"`,
        }, { status: 404 });
      }
    },
  });
  const { summary } = await run(server, [root], join(f.dst, "new"));
  assert.deepEqual(summary.failures, []);
  assert.equal(
    server.log.filter((l) => l.startsWith("POST /v1/mkdir?")).length,
    1,
  );
  assert.equal(
    sha(await Deno.readFile(join(f.dst, "new/only-big/big.bin"))),
    sha(content),
  );
});

Deno.test("a file last changed long enough ago is committed by the PUT that completes it (no commit request); one changed just now gets its own after a last look", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  await makeTree(join(f.src, "run42"));
  await using server = serve(f);
  const { summary } = await run(
    server,
    [join(f.src, "run42")],
    join(f.dst, "settled"),
    { settledMs: 0, putMaxBytes: 128 * KiB },
  );
  assert.deepEqual(summary.failures, []);
  assert.ok(server.puts.length >= 3);
  assert.deepEqual(
    server.log.filter((l) => l.startsWith("POST /v1/upload/commit")),
    [],
  );
  assert.deepEqual(
    await snapshot(join(f.dst, "settled")),
    await snapshot(join(f.src, "run42")),
  );
  // Written a moment ago (the default): a commit request each.
  await run(server, [join(f.src, "run42")], join(f.dst, "fresh"));
  assert.equal(
    server.log.filter((l) => l.startsWith("POST /v1/upload/commit")).length,
    3,
  );
  assert.deepEqual(
    await snapshot(join(f.dst, "fresh")),
    await snapshot(join(f.src, "run42")),
  );
});

Deno.test("a PUT that committed its file but whose answer was lost is recognised: nothing is sent again", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  const local = join(f.src, "big.bin");
  const content = bytes(MiB + 333, 21);
  await Deno.writeFile(local, content);
  let lost = false;
  await using server = serve(f, {
    hook: async (url, request) => {
      if (
        request.method !== "PUT" || lost || request.headers.has("x-passed-on")
      ) return undefined;
      // Done by the server; the answer of the PUT that completed the file
      // (whichever range it was) is lost on the way back.
      const headers = new Headers(request.headers);
      headers.set("x-passed-on", "1");
      const done = await fetch(url, {
        method: "PUT",
        headers,
        body: await request.arrayBuffer(),
      });
      const answer = await done.json();
      if (!("committed" in answer)) {
        return Response.json(answer, { status: done.status });
      }
      lost = true;
      return Response.json({ error: "busy", message: "Lost" }, { status: 503 });
    },
  });
  const { summary } = await run(server, [local], f.dst + "/", {
    settledMs: 0,
    putMaxBytes: 256 * KiB,
  });
  assert.deepEqual(summary.failures, []);
  assert.ok(lost);
  assert.equal(server.bytesPut(), content.length);
  assert.deepEqual(
    server.log.filter((l) => l.startsWith("POST /v1/upload/commit")),
    [],
  );
  assert.equal(sha(await Deno.readFile(join(f.dst, "big.bin"))), sha(content));
});

Deno.test("a PUT cut short is retried from the server's status: the prefix it kept is not sent again", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  const local = join(f.src, "one.bin");
  const content = bytes(200 * KiB + 300 * KiB, 6);
  await Deno.writeFile(local, content);
  await using server = serve(f, {
    cutPut: (_put, n) => n === 1 ? 100_000 : undefined,
  });
  const { summary } = await run(server, [local], f.dst + "/", {}, {
    Max_part_num: "1",
  });
  assert.deepEqual(summary.failures, []);
  assert.equal(server.puts.length, 2);
  assert.deepEqual(
    [server.puts[1].start, server.puts[1].end],
    [100_000, content.length],
  );
  assert.equal(sha(await Deno.readFile(join(f.dst, "one.bin"))), sha(content));
});

Deno.test("a range goes in several PUTs of at most putMaxBytes, each with the SHA-256 of exactly its bytes", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  const local = join(f.src, "chunked.bin");
  const content = bytes(MiB + 1, 12);
  await Deno.writeFile(local, content);
  await using server = serve(f, {
    cutPut: (_put, n) => n === 3 ? 5000 : undefined,
  });
  const { summary } = await run(server, [local], f.dst + "/", {
    putMaxBytes: 100 * KiB,
    // A signing client declares each body's digest (this fake checks it).
    sign: () => {},
  }, { Max_part_num: "2", Min_part_size: "256K" });
  assert.deepEqual(summary.failures, []);
  assert.ok(server.puts.every((p) => p.end - p.start <= 100 * KiB));
  assert.ok(
    server.puts.every((p) =>
      p.declared !== null && /^[0-9a-f]{64}$/.test(p.declared)
    ),
    "every PUT of a signing client declares its body's SHA-256",
  );
  const cut = server.puts.filter((p) => p.kept < p.received);
  assert.equal(cut.length, 1);
  assert.ok(
    server.puts.some((p) => p.start === cut[0].start + 5000),
    "the cut PUT's range went on from the byte after what the server kept",
  );
  assert.equal(
    server.puts.reduce((n, p) => n + p.kept, 0),
    content.length,
    "no byte kept twice",
  );
  assert.equal(
    sha(await Deno.readFile(join(f.dst, "chunked.bin"))),
    sha(content),
  );
});

// ------------------------------------------------------------------ conflicts

Deno.test("409 upload_in_progress is waited for and retried, then reported in one line when it lasts", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  const local = join(f.src, "big.bin");
  await Deno.writeFile(local, bytes(400 * KiB, 7));
  let busy = 2;
  const refused: number[] = [];
  await using server = serve(f, {
    hook: (url, request) => {
      if (request.method !== "PUT" || busy-- <= 0) return undefined;
      const m = /^bytes (\d+)-(\d+)\//.exec(
        request.headers.get("content-range") ?? "",
      );
      refused.push(Number(m![2]) + 1 - Number(m![1]));
      return Response.json({
        error: "upload_in_progress",
        message: `"${
          url.searchParams.get("path")
        }" is being written by another session`,
      }, { status: 409 });
    },
  });
  let r = await run(server, [local], f.dst + "/", { busyWaitMs: 800 });
  assert.deepEqual(r.summary.failures, []);
  assert.deepEqual(warnings(r.events), [
    `"big.bin" is being written by another push to 127.0.0.1:${server.port}: waiting`,
  ]);
  // Once the path is known to be held, only small PUTs ask again.
  assert.deepEqual(refused, [400 * KiB, 64 * KiB]);

  busy = Infinity;
  await Deno.writeFile(local, bytes(400 * KiB, 8));
  r = await run(server, [local], f.dst + "/", { busyWaitMs: 200 });
  assert.equal(r.summary.failed, 1);
  assert.deepEqual(r.summary.failures[0], {
    path: "big.bin",
    message:
      `"big.bin" is being written by another push to 127.0.0.1:${server.port}: "${
        join(f.dst, "big.bin")
      }" is being written by another session`,
  });
  assert.equal(
    sha(await Deno.readFile(join(f.dst, "big.bin"))),
    sha(bytes(400 * KiB, 7)),
  );
});

Deno.test("--verify: a file the server hashes differently is sent once more, then fails without a final name", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  const local = join(f.src, "v.bin");
  const content = bytes(300 * KiB, 9);
  await Deno.writeFile(local, content);
  let failures = 1;
  await using server = serve(f, { failVerify: () => failures-- > 0 });
  let r = await run(server, [local], f.dst + "/", { verify: true });
  assert.deepEqual(r.summary.failures, []);
  assert.equal(server.bytesPut(), 2 * content.length);
  assert.deepEqual(warnings(r.events), [
    `SHA-256 of "v.bin" on the server differs from the local file: sending it again`,
  ]);
  assert.equal(sha(await Deno.readFile(join(f.dst, "v.bin"))), sha(content));

  failures = Infinity;
  const small = join(f.src, "small.txt");
  await Deno.writeTextFile(small, "small files go through commit too");
  r = await run(server, [small], f.dst + "/", { verify: true });
  assert.deepEqual(r.summary.failures, [{
    path: "small.txt",
    message:
      `SHA-256 of "small.txt" on the server still differs from the local file after sending it again: not committed`,
  }]);
  await assert.rejects(Deno.lstat(join(f.dst, "small.txt")));
});

Deno.test("a local file written while it is sent is started over, never committed as it was: changed just now (a look before its commit), or settled (a look before each PUT that may commit it)", async () => {
  const ways: Array<[string, Partial<PushOptions>]> = [
    ["fresh", {}],
    ["settled", { settledMs: 0, putMaxBytes: 128 * KiB }],
  ];
  for (const [name, more] of ways) {
    await using dir = await tempDir();
    const f = await fixture(dir.path);
    const local = join(f.src, "growing.bin");
    await Deno.writeFile(local, bytes(500 * KiB, 10));
    let grown = false;
    await using server = serve(f, {
      hook: async (_url, request) => {
        if (request.method === "PUT" && !grown) {
          grown = true;
          await Deno.writeFile(local, bytes(50 * KiB, 11), { append: true });
        }
        return undefined;
      },
    });
    const { summary, events } = await run(server, [local], f.dst + "/", more);
    assert.deepEqual(summary.failures, [], name);
    assert.deepEqual(warnings(events), [
      `"growing.bin" changed while it was sent: starting over`,
    ], name);
    assert.equal(
      sha(await Deno.readFile(join(f.dst, "growing.bin"))),
      sha(await Deno.readFile(local)),
      name,
    );
  }
});

Deno.test("a local file that keeps changing while it is sent fails after three restarts, never committed", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  const local = join(f.src, "busy.log");
  await Deno.writeFile(local, bytes(400 * KiB, 14));
  await using server = serve(f, {
    hook: async (_url, request) => {
      if (request.method === "PUT") {
        await Deno.writeFile(local, bytes(KiB, 15), { append: true });
      }
      return undefined;
    },
  });
  const { summary, events } = await run(server, [local], f.dst + "/");
  assert.deepEqual(summary.failures, [{
    path: "busy.log",
    message: `"busy.log" changed while it was sent (4 times): not committed`,
  }]);
  assert.deepEqual(
    warnings(events),
    Array(3).fill(`"busy.log" changed while it was sent: starting over`),
  );
  await assert.rejects(Deno.lstat(join(f.dst, "busy.log")));
});

Deno.test("a local file cut short while its body streams fails that PUT and starts over as it is now", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  const local = join(f.src, "shrink.bin");
  await Deno.writeFile(local, bytes(8 * MiB, 13));
  let cut = false;
  await using server = serve(f, {
    hook: async (_url, request) => {
      if (request.method === "PUT" && !cut) {
        cut = true;
        await Deno.truncate(local, 100 * KiB);
      }
      return undefined;
    },
  });
  const { summary, events } = await run(server, [local], f.dst + "/", {}, {
    Max_part_num: "1",
  });
  assert.deepEqual(summary.failures, []);
  // Told by the failed body, or by the file's new identity when the server
  // answered first.
  assert.equal(warnings(events).length, 1);
  assert.match(
    warnings(events)[0],
    /^"shrink\.bin" (shrank|changed) while it was sent: starting over$/,
  );
  assert.equal(
    sha(await Deno.readFile(join(f.dst, "shrink.bin"))),
    sha(bytes(100 * KiB, 13)),
  );
});

/** A lease token as hsyncd makes them. */
const LEASE_TOKEN = "0123456789abcdef0123456789abcdef";

/** hsyncd's answer granting the lease `LEASE_TOKEN` (a fake server's hook sends it). */
/** A lease granted; with `entry` (null: nothing there), the destination's stat asked for with it. */
function leaseAnswer(entry?: null): Response {
  return Response.json({
    token: LEASE_TOKEN,
    expires_ms: 30_000,
    ...(entry === undefined ? {} : { entry }),
  });
}

Deno.test("into a path ending in /, the lease is asked for while the destination is stat'ed (one round trip for both)", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  await makeTree(join(f.src, "run42"));
  let statAnswered = false;
  let lockedBeforeStat: boolean | undefined;
  await using server = serve(f, {
    hook: async (url, request) => {
      if (request.method === "GET" && url.pathname === "/v1/stat") {
        // A far server: the stat takes its time.
        await new Promise((done) => setTimeout(done, 300));
        statAnswered = true;
      }
      if (url.pathname === "/v1/lock") {
        lockedBeforeStat ??= !statAnswered;
        return leaseAnswer();
      }
    },
  });
  const { summary } = await run(server, [join(f.src, "run42")], f.dst + "/");
  assert.deepEqual(summary.failures, []);
  assert.equal(lockedBeforeStat, true);
  assert.deepEqual(
    await snapshot(join(f.dst, "run42")),
    await snapshot(join(f.src, "run42")),
  );
});

Deno.test("the tree is read while the lease is out: once it is answered, the walk looks at no local entry again", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  const root = join(f.src, "run42");
  for (let i = 0; i < 60; i++) {
    await Deno.mkdir(join(root, `d${i % 3}`), { recursive: true });
    await Deno.writeFile(join(root, `d${i % 3}`, `f${i}`), bytes(700 + i, i));
  }
  let leased = false;
  await using server = serve(f, {
    hook: async (url) => {
      if (url.pathname !== "/v1/lock" || leased) return;
      // A far server: the lease takes its time.
      await new Promise((done) => setTimeout(done, 200));
      leased = true;
    },
  });
  // Looks at the tree's entries after that.
  let looks = 0;
  const lstat = Deno.lstatSync;
  Deno.lstatSync = (path) => {
    if (leased && String(path).startsWith(root)) looks++;
    return lstat(path);
  };
  let summary;
  try {
    ({ summary } = await run(server, [root], f.dst + "/"));
  } finally {
    Deno.lstatSync = lstat;
  }
  assert.deepEqual(summary.failures, []);
  assert.equal(summary.files, 60);
  assert.equal(looks, 0);
  assert.deepEqual(
    await snapshot(join(f.dst, "run42")),
    await snapshot(root),
  );
});

Deno.test("a tree pushed to a path without / asks for its lease first, the destination's stat in its answer: no stat before it", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  await makeTree(join(f.src, "run42"));
  const asked: string[] = [];
  await using server = serve(f, {
    hook: (url, request) => {
      asked.push(`${request.method} ${url.pathname}`);
      if (url.pathname === "/v1/lock") {
        // Nothing there yet (a stat would say 404).
        return Promise.resolve(
          leaseAnswer(url.searchParams.has("release") ? undefined : null),
        );
      }
      return Promise.resolve(undefined);
    },
  });
  const { summary } = await run(
    server,
    [join(f.src, "run42")],
    join(f.dst, "new-name"),
  );
  assert.deepEqual(summary.failures, []);
  assert.equal(
    asked.find((a) => a !== "GET /v1/health"),
    "POST /v1/lock",
  );
  assert.ok(!asked.includes("GET /v1/stat"), asked.join(", "));
  assert.deepEqual(
    await snapshot(join(f.dst, "new-name")),
    await snapshot(join(f.src, "run42")),
  );
});

Deno.test("the directories' times and the lease's release at the end go on connections already open (no handshake after the last file)", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  // Small files only: every write before the end is a bundle.
  for (let i = 0; i < 30; i++) {
    await Deno.mkdir(join(f.src, "run42", `d${i % 3}`), { recursive: true });
    await Deno.writeTextFile(join(f.src, "run42", `d${i % 3}`, `f${i}`), "x");
  }
  await using server = serve(f, {
    hook: (url) =>
      Promise.resolve(
        url.pathname === "/v1/lock" ? leaseAnswer(null) : undefined,
      ),
  });
  // To a path without `/`: the lease is the one request before the files.
  const { summary } = await run(
    server,
    [join(f.src, "run42")],
    join(f.dst, "run42"),
  );
  assert.deepEqual(summary.failures, []);
  const at = (line: RegExp) => server.log.findLastIndex((l) => line.test(l));
  for (const last of [/^POST \/v1\/mkdir$/, /release=1/]) {
    const i = at(last);
    assert.ok(i > 0, String(last));
    assert.ok(
      server.ports.slice(0, i).includes(server.ports[i]),
      `${server.log[i]} came on a new connection`,
    );
  }
});

Deno.test("the lease goes back once, while the directories get their times (not a round trip after them)", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  await makeTree(join(f.src, "run42"));
  let times = 0;
  let timesAnswered = 0;
  const releases: number[] = [];
  await using server = serve(f, {
    hook: async (url, request) => {
      if (url.pathname === "/v1/lock") {
        if (url.searchParams.get("release") === "1") {
          releases.push(timesAnswered);
        }
        return leaseAnswer();
      }
      if (request.method === "POST" && url.pathname === "/v1/mkdir") {
        times++;
        await new Promise((done) => setTimeout(done, 300));
        timesAnswered++;
      }
    },
  });
  const { summary } = await run(server, [join(f.src, "run42")], f.dst + "/");
  assert.deepEqual(summary.failures, []);
  assert.equal(releases.length, 1);
  assert.ok(times > 0);
  // Sent with the directories' times: it arrives before they are all set.
  assert.ok(releases[0] < times, `released after ${releases[0]} of ${times}`);
  assert.deepEqual(
    await snapshot(join(f.dst, "run42")),
    await snapshot(join(f.src, "run42")),
  );
});

Deno.test("a destination that cannot be stat'ed stops the push with one line, and the lease taken meanwhile goes back", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  await makeTree(join(f.src, "run42"));
  const locks: string[] = [];
  await using server = serve(f, {
    hook: async (url, request) => {
      if (request.method === "GET" && url.pathname === "/v1/stat") {
        await new Promise((done) => setTimeout(done, 100));
        return Response.json({
          error: "forbidden",
          message: "Access to this path is forbidden",
        }, { status: 403 });
      }
      if (url.pathname === "/v1/lock") {
        locks.push(url.search);
        return leaseAnswer();
      }
    },
  });
  await assert.rejects(
    () => run(server, [join(f.src, "run42")], f.dst + "/"),
    ConnectError,
  );
  assert.equal(locks.length, 2, locks.join("\n"));
  assert.match(locks[1], new RegExp(`token=${LEASE_TOKEN}&release=1`));
  assert.deepEqual(server.writes().filter((l) => !l.includes("/v1/lock")), []);
});

// ------------------------------------------------------------------ refusals

Deno.test("a server that takes no writes, a path outside Writable_path and a refused key stop the run with one line (ConnectError)", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  await makeTree(join(f.src, "run42"));
  const cases: Array<[Partial<PushServerOptions>, string, RegExp]> = [
    [
      { readOnly: true },
      f.dst + "/",
      /^Refused by 127\.0\.0\.1:\d+: Cannot write ".*": this server accepts no writes \(no Writable_path\)$/,
    ],
    [
      {},
      dir.path + "/",
      /^Refused by 127\.0\.0\.1:\d+: Cannot write ".*": it is not below a Writable_path$/,
    ],
    [
      {
        hook: (_url, request) =>
          request.method === "GET" ? undefined : Response.json({
            error: "unauthorized",
            message: "Authentication required",
          }, { status: 401 }),
      },
      f.dst + "/",
      /^Not authenticated by 127\.0\.0\.1:\d+ for writing: Authentication required$/,
    ],
  ];
  for (const [options, remotePath, message] of cases) {
    await using server = serve(f, options);
    await assert.rejects(
      run(server, [join(f.src, "run42")], remotePath),
      (e: Error) => e instanceof ConnectError && message.test(e.message),
    );
    // A PUT may have gone beside the first request refused: refused too.
    assert.deepEqual(server.puts.filter((p) => p.status < 400), []);
    assert.deepEqual(server.bundled, []);
  }
  assert.deepEqual([...Deno.readDirSync(f.dst)], []);
});

Deno.test("a full disk on the server (507) fails the file at once with the server's reason; the other files go on", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  const root = join(f.src, "t");
  await Deno.mkdir(root);
  await Deno.writeFile(join(root, "big.bin"), bytes(400 * KiB, 1));
  await Deno.writeTextFile(join(root, "small.txt"), "fits");
  await using server = serve(f, {
    hook: (url, request) =>
      request.method === "PUT"
        ? Response.json({
          error: "disk_full",
          message: `Cannot write "${
            url.searchParams.get("path")
          }.hsync-part": no space left on device`,
        }, { status: 507 })
        : undefined,
  });
  const { summary } = await run(server, [root], f.dst + "/");
  assert.deepEqual(summary.failures, [{
    path: "t/big.bin",
    message: `Cannot write "${
      join(f.dst, "t/big.bin")
    }.hsync-part": no space left on device`,
  }]);
  assert.equal(summary.files, 1);
  assert.equal(server.log.filter((l) => l.startsWith("PUT")).length, 1);
});

Deno.test("a file the server refuses in a bundle fails on its own; the others arrive", async () => {
  await using dir = await tempDir();
  const f = await fixture(dir.path);
  const root = join(f.src, "t");
  await Deno.mkdir(root);
  await Deno.writeTextFile(join(root, "refuse-me.txt"), "no");
  await Deno.writeTextFile(join(root, "fine.txt"), "yes");
  await using server = serve(f);
  const { summary } = await run(server, [root], f.dst + "/");
  assert.equal(summary.files, 1);
  assert.deepEqual(summary.failures, [{
    path: "t/refuse-me.txt",
    message: `Cannot write "${
      join(f.dst, "t/refuse-me.txt")
    }": the rules refuse it`,
  }]);
  assert.equal(await Deno.readTextFile(join(f.dst, "t/fine.txt")), "yes");
});

Deno.test("to a server that waits (after: true with its lease), the end goes with the last bundles, after=N counting the requests made as the lease's token; never as another session, never to a server that does not say it", async () => {
  for (
    const [session, after] of [
      [undefined, true],
      ["test-session", true],
      [undefined, false],
    ] as const
  ) {
    await using dir = await tempDir();
    const f = await fixture(dir.path);
    for (let i = 0; i < 30; i++) {
      await Deno.mkdir(join(f.src, "run42", `d${i % 3}`), { recursive: true });
      await Deno.writeTextFile(join(f.src, "run42", `d${i % 3}`, `f${i}`), "x");
    }
    const runs = new Set<string>();
    let counted = 0;
    await using server = serve(f, {
      hook: (url, request) => {
        const run = request.headers.get("x-hsync-push-run");
        if (
          request.headers.get("x-hsync-upload-session") === LEASE_TOKEN &&
          run !== null && !url.searchParams.has("after")
        ) {
          runs.add(run);
          counted++;
        }
        return Promise.resolve(
          url.pathname === "/v1/lock"
            ? Response.json({
              token: LEASE_TOKEN,
              expires_ms: 30_000,
              entry: null,
              ...(after ? { after: true } : {}),
            })
            : undefined,
        );
      },
    });
    const { summary } = await run(
      server,
      [join(f.src, "run42")],
      join(f.dst, "run42"),
      { session },
    );
    assert.deepEqual(summary.failures, []);
    const ends = server.log.filter((l) => /after=/.test(l));
    if (session !== undefined || !after) {
      assert.deepEqual(ends, []);
      continue;
    }
    // (This fake server does not wait as it says: the directories' times
    // it sets may move with the bundles after them; e2e_push_end_test.ts
    // runs hsyncd.)
    assert.equal(runs.size, 1);
    const [theRun] = runs;
    assert.ok(counted > 0);
    assert.deepEqual(ends.sort(), [
      `POST /v1/lock?path=${
        encodeURIComponent(join(f.dst, "run42"))
      }&token=${LEASE_TOKEN}&release=1&after=${counted + 1}&run=${theRun}`,
      `POST /v1/mkdir?after=${counted}`,
    ]);
  }
});
