/** Integration tests of lib/client/pull.ts against the real hsyncd handler and against fake (broken or hostile) servers on loopback. */
import assert from "node:assert/strict";
import { join } from "node:path";
import defaults from "../hsync.ini" with { type: "text" };
import { encodeFrame } from "../lib/shared/bundle_codec.ts";
import {
  type ClientSettings,
  clientSettings,
  loadConfig,
} from "../lib/shared/config.ts";
import { ConnectError } from "../lib/shared/errors.ts";
import { LocalPathError } from "../lib/shared/errors.ts";
import { pull, type PullEvent, type PullOptions } from "../lib/client/pull.ts";
import { handleStats, tempDir } from "./_programs.ts";
import { type RealServer, realServer } from "./_real_server.ts";
import type {
  BundleRequest,
  ListEntry,
  StatEntry,
} from "../lib/shared/wire.ts";

const MiB = 1024 * 1024;

async function settingsWith(
  overrides: Record<string, string> = {},
): Promise<ClientSettings> {
  const config = await loadConfig({ defaults, hsyncDir: "/nonexistent-hsync" });
  return clientSettings(config, "hscp", {
    Data_timeout: "5",
    Max_timeout_retry: "2",
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

function copy(data: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(data);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a).equals(Buffer.from(b));
}

/** Every path under `root` (relative, sorted), directories marked with a trailing `/`. */
async function tree(root: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(dir: string, rel: string) {
    for await (const e of Deno.readDir(dir)) {
      const r = rel === "" ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory) {
        out.push(r + "/");
        await walk(join(dir, e.name), r);
      } else out.push(r);
    }
  }
  await walk(root, "");
  return out.sort();
}

async function basePull(
  overrides: Partial<PullOptions> & {
    baseUrl: string;
    remotePath: string;
    localPath: string;
  },
  settings: Record<string, string> = {},
): Promise<{ summary: Awaited<ReturnType<typeof pull>>; events: PullEvent[] }> {
  const events: PullEvent[] = [];
  const summary = await pull({
    settings: await settingsWith(settings),
    parallelFiles: 4,
    retryBaseMs: 1,
    onEvent: (e) => events.push(e),
    ...overrides,
  });
  return { summary, events };
}

// ------------------------------------------------------------------ real server

Deno.test("pull() copies a single file to a new name and into an existing directory", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  const content = bytes(300 * 1024, 1);
  await Deno.writeFile(join(data, "report é.bin"), content);
  await using server = await realServer(data);
  const remotePath = join(data, "report é.bin");

  const renamed = join(dir.path, "new", "name.bin");
  let r = await basePull({
    baseUrl: server.baseUrl,
    remotePath,
    localPath: renamed,
  });
  assert.deepEqual(r.summary.failures, []);
  assert.equal(r.summary.files, 1);
  assert.ok(sameBytes(await Deno.readFile(renamed), content));

  const into = join(dir.path, "into");
  await Deno.mkdir(into);
  r = await basePull({ baseUrl: server.baseUrl, remotePath, localPath: into });
  assert.equal(r.summary.files, 1);
  assert.ok(
    sameBytes(await Deno.readFile(join(into, "report é.bin")), content),
  );
  const a = await Deno.stat(remotePath);
  const b = await Deno.stat(join(into, "report é.bin"));
  assert.equal(b.mtime?.getTime(), a.mtime?.getTime());
});

Deno.test("pull() copies a tree byte-identical, then a rerun skips every file", async (t) => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  const files: Record<string, Uint8Array> = {
    "top.txt": bytes(100, 1),
    "empty.bin": new Uint8Array(0),
    "name with spaces.log": bytes(5000, 2),
    "ünïcødé/日本語.txt": bytes(777, 3),
    "a/b/c/deep.bin": bytes(200 * 1024, 4),
    "a/b/empty-in-deep.txt": new Uint8Array(0),
    "mid/medium.bin": bytes(3 * MiB + 17, 5),
  };
  for (let i = 0; i < 150; i++) {
    files[`many/f${i}.txt`] = bytes(i * 13, 100 + i);
  }
  for (const [rel, content] of Object.entries(files)) {
    await Deno.mkdir(join(data, rel, ".."), { recursive: true });
    await Deno.writeFile(join(data, rel), content);
  }
  await Deno.mkdir(join(data, "empty-dir/nested-empty"), { recursive: true });
  await using server = await realServer(data);
  const out = join(dir.path, "out");
  const opts = { baseUrl: server.baseUrl, remotePath: data, localPath: out };
  const settings = { Min_part_size: "1M", Max_part_num: "4" };

  await t.step("the first pull copies everything", async () => {
    const { summary } = await basePull(opts, settings);
    assert.deepEqual(summary.failures, []);
    assert.equal(summary.files, Object.keys(files).length);
    assert.equal(summary.skipped, 0);
    assert.deepEqual(await tree(out), await tree(data));
    for (const [rel, content] of Object.entries(files)) {
      assert.ok(sameBytes(await Deno.readFile(join(out, rel)), content), rel);
      const a = await Deno.stat(join(data, rel));
      const b = await Deno.stat(join(out, rel));
      assert.equal(b.mtime?.getTime(), a.mtime?.getTime(), rel);
    }
  });

  await t.step("a rerun skips every file and writes nothing", async () => {
    const before = new Map<string, number>();
    for (const rel of Object.keys(files)) {
      before.set(rel, (await Deno.stat(join(out, rel))).ino!);
    }
    const { summary, events } = await basePull(opts, settings);
    assert.equal(summary.files, 0);
    assert.equal(summary.skipped, Object.keys(files).length);
    assert.equal(summary.failed, 0);
    assert.ok(!events.some((e) => e.type === "progress"));
    for (const [rel, ino] of before) {
      assert.equal((await Deno.stat(join(out, rel))).ino, ino, rel);
    }
  });

  await t.step(
    "a file changed at the source is fetched again, alone",
    async () => {
      await Deno.writeFile(join(data, "top.txt"), bytes(101, 9));
      const { summary } = await basePull(opts, settings);
      assert.equal(summary.files, 1);
      assert.equal(summary.skipped, Object.keys(files).length - 1);
      assert.ok(
        sameBytes(await Deno.readFile(join(out, "top.txt")), bytes(101, 9)),
      );
    },
  );

  await t.step("no temporary files are left", async () => {
    assert.deepEqual(
      (await tree(out)).filter((p) => p.includes(".hsync-")),
      [],
    );
  });
});

Deno.test("pull() fetches a big file in parallel ranges, byte-identical", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  const content = bytes(20 * MiB + 3, 7);
  await Deno.writeFile(join(data, "big.bin"), content);
  await using server = await realServer(data);
  const ranges: string[] = [];
  const out = join(dir.path, "out.bin");
  const { summary, events } = await basePull({
    baseUrl: server.baseUrl,
    remotePath: join(data, "big.bin"),
    localPath: out,
    // The signing hook sees every request.
    sign: (request) => {
      const range = request.headers.get("range");
      if (range !== null) ranges.push(range);
    },
  }, { Min_part_size: "1M", Max_part_num: "8" });
  assert.deepEqual(summary.failures, []);
  assert.equal(summary.bytes, content.length);
  assert.equal(ranges.length, 8);
  assert.equal(new Set(ranges).size, 8);
  assert.ok(sameBytes(await Deno.readFile(out), content));
  const progressed = events.reduce(
    (n, e) => e.type === "progress" ? n + e.bytes : n,
    0,
  );
  assert.equal(progressed, content.length);
});

/** A pull with `earlyRange` (as the command line asks), every request seen: path, query and range. */
async function earlyPull(
  baseUrl: string,
  remotePath: string,
  localPath: string,
  settings: Record<string, string> = { Min_part_size: "1M" },
) {
  const seen: Array<{ path: string; iffile: boolean; range: string | null }> =
    [];
  const result = await basePull({
    baseUrl,
    remotePath,
    localPath,
    earlyRange: true,
    // The signing hook sees every request as it goes.
    sign: (request) => {
      const url = new URL(request.url);
      seen.push({
        path: url.pathname,
        iffile: url.searchParams.get("iffile") === "1",
        range: request.headers.get("range"),
      });
    },
  }, settings);
  return { ...result, seen, files: seen.filter((r) => r.path === "/v1/file") };
}

/** The bytes a `Range: bytes=A-B` header asks for. */
function rangeBytes(range: string | null): number {
  const m = /^bytes=(\d+)-(\d+)$/.exec(range ?? "");
  return m === null ? NaN : Number(m[2]) - Number(m[1]) + 1;
}

Deno.test("earlyRange: one big file's first 8 MiB are asked for with its stat and taken, no byte asked twice", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  const content = bytes(20 * MiB + 3, 8);
  await Deno.writeFile(join(data, "big.bin"), content);
  await using server = await realServer(data);
  const out = join(dir.path, "out.bin");
  const { summary, seen, files } = await earlyPull(
    server.baseUrl,
    join(data, "big.bin"),
    out,
  );
  assert.deepEqual(summary.failures, []);
  assert.ok(sameBytes(await Deno.readFile(out), content));
  assert.equal(summary.bytes, content.length);
  // With the stat and the early listing, before anything waits for them.
  assert.deepEqual(
    seen.slice(0, 3).map((r) => r.path).sort(),
    ["/v1/file", "/v1/list", "/v1/stat"],
  );
  assert.deepEqual(files[0], {
    path: "/v1/file",
    iffile: true,
    range: `bytes=0-${8 * MiB - 1}`,
  });
  assert.ok(files.length > 1, "the rest in other ranges");
  assert.ok(
    files.slice(1).every((r) => !r.iffile && !r.range?.startsWith("bytes=0-")),
  );
  assert.equal(
    files.reduce((n, r) => n + rangeBytes(r.range), 0),
    content.length,
  );
});

Deno.test("earlyRange: a directory answers the early request 204, and a destination already there (a file, or a part to resume) gets none", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(join(data, "tree"), { recursive: true });
  for (let i = 0; i < 3; i++) {
    await Deno.writeFile(join(data, "tree", `f${i}`), bytes(1000 + i, i));
  }
  const content = bytes(3 * MiB, 9);
  await Deno.writeFile(join(data, "one.bin"), content);
  await using server = await realServer(data);

  const tree = await earlyPull(
    server.baseUrl,
    join(data, "tree"),
    join(dir.path, "tree"),
  );
  assert.deepEqual(tree.summary.failures, []);
  assert.equal(tree.summary.files, 3);
  assert.deepEqual(tree.files.map((r) => r.iffile), [true]);
  for (let i = 0; i < 3; i++) {
    assert.ok(sameBytes(
      await Deno.readFile(join(dir.path, "tree", `f${i}`)),
      bytes(1000 + i, i),
    ));
  }

  const out = join(dir.path, "one.bin");
  const first = await earlyPull(server.baseUrl, join(data, "one.bin"), out);
  assert.deepEqual(first.files.map((r) => r.iffile), [true]);
  // Identical now: skipped, and nothing asked early.
  const again = await earlyPull(server.baseUrl, join(data, "one.bin"), out);
  assert.equal(again.summary.skipped, 1);
  assert.deepEqual(again.files, []);
  // A part and a journal at the name (an interrupted pull): resumed from
  // them, never a byte asked for early.
  await Deno.remove(out);
  await Deno.writeFile(out + ".hsync-part", new Uint8Array(10));
  await Deno.writeTextFile(out + ".hsync-journal", "{}");
  const resumed = await earlyPull(server.baseUrl, join(data, "one.bin"), out);
  assert.deepEqual(resumed.summary.failures, []);
  assert.ok(resumed.files.every((r) => !r.iffile));
  assert.ok(sameBytes(await Deno.readFile(out), content));
});

Deno.test("earlyRange: an early answer of another version than the stat's (ETag) is not taken: its bytes are asked again with If-Range", async () => {
  await using dir = await tempDir();
  const content = bytes(100_000, 10);
  const ifRanges: Array<string | null> = [];
  const { server } = fileServer(
    content,
    (a, b, _n, request) => {
      ifRanges.push(request.headers.get("if-range"));
      const end = Math.min(b, content.length - 1);
      return {
        status: 206,
        headers: {
          "content-range": `bytes ${a}-${end}/${content.length}`,
          // The early request (no If-Range yet) meets an older version.
          etag: request.headers.has("if-range") ? '"v1"' : '"v0"',
        },
        body: content.slice(a, end + 1),
      };
    },
  );
  await using _ = server;
  const out = join(dir.path, "f.bin");
  const { summary } = await basePull({
    baseUrl: server.baseUrl,
    remotePath: "/data/f.bin",
    localPath: out,
    earlyRange: true,
  });
  assert.deepEqual(summary.failures, []);
  assert.deepEqual(ifRanges, [null, '"v1"']);
  assert.ok(sameBytes(await Deno.readFile(out), content));
});

Deno.test("pull() applies include and exclude globs", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  for (
    const rel of [
      "a.txt",
      "b.log",
      "sub/c.txt",
      "sub/d.log",
      "build/e.txt",
      "build/x/f.txt",
    ]
  ) {
    await Deno.mkdir(join(data, rel, ".."), { recursive: true });
    await Deno.writeTextFile(join(data, rel), rel);
  }
  await using server = await realServer(data);
  const out = join(dir.path, "out");
  const { summary } = await basePull({
    baseUrl: server.baseUrl,
    remotePath: data,
    localPath: out,
    include: ["*.txt"],
    exclude: ["build"],
  });
  assert.equal(summary.failed, 0);
  assert.deepEqual(await tree(out), ["a.txt", "sub/", "sub/c.txt"]);
});

Deno.test("pull() with preserve copies permission bits", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(join(data, "d"), { recursive: true });
  await Deno.writeTextFile(join(data, "d/run.sh"), "#!/bin/sh\n");
  await Deno.chmod(join(data, "d/run.sh"), 0o751);
  await Deno.chmod(join(data, "d"), 0o750);
  await using server = await realServer(data);
  const out = join(dir.path, "out");
  await basePull({
    baseUrl: server.baseUrl,
    remotePath: data,
    localPath: out,
    preserve: true,
  });
  assert.equal((await Deno.stat(join(out, "d/run.sh"))).mode! & 0o777, 0o751);
  assert.equal((await Deno.stat(join(out, "d"))).mode! & 0o777, 0o750);
});

Deno.test("pull() writes a small file of a bundle with one fstat of its handle (the proof of the create), modes and times kept", async () => {
  await using dir = await tempDir();
  /** Pulls a tree of `files` small files in 4 directories; the handle fstats it took. */
  const pullTree = async (name: string, files: number): Promise<number> => {
    const data = join(dir.path, name);
    for (let i = 0; i < files; i++) {
      const path = join(data, `d${i % 4}`, `f${i}.txt`);
      await Deno.mkdir(join(data, `d${i % 4}`), { recursive: true });
      await Deno.writeFile(path, bytes(1000 + i, i));
      await Deno.chmod(path, i % 2 === 0 ? 0o640 : 0o604);
      await Deno.utime(path, new Date(), new Date(1_600_000_000_000 + i));
    }
    await using server = await realServer(data);
    const out = join(dir.path, `${name}-out`);
    const stats = await handleStats(async () => {
      const { summary } = await basePull({
        baseUrl: server.baseUrl,
        remotePath: data,
        localPath: out,
        preserve: true,
      });
      assert.deepEqual(summary.failures, []);
      assert.equal(summary.files, files);
    });
    for (let i = 0; i < files; i++) {
      const rel = join(`d${i % 4}`, `f${i}.txt`);
      const info = await Deno.stat(join(out, rel));
      assert.ok(
        sameBytes(await Deno.readFile(join(out, rel)), bytes(1000 + i, i)),
      );
      assert.equal(info.mode! & 0o777, i % 2 === 0 ? 0o640 : 0o604, rel);
      assert.equal(info.mtime?.getTime(), 1_600_000_000_000 + i, rel);
    }
    return stats;
  };
  const few = await pullTree("few", 40);
  const more = await pullTree("more", 80);
  // The same directories: what the 40 more files cost. Three fstats per
  // file before: the create's proof, the mode check and the identity.
  assert.ok(more - few <= 40, `handle fstats: ${few} for 40, ${more} for 80`);
});

Deno.test("pull() reports a missing root, a refused root and an unreachable server as ConnectError", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  await Deno.writeTextFile(join(data, "server.key"), "secret");
  await using server = await realServer(data);
  const localPath = join(dir.path, "out");
  await assert.rejects(
    () =>
      basePull({
        baseUrl: server.baseUrl,
        remotePath: join(data, "nope"),
        localPath,
      }),
    (e: unknown) => {
      assert.ok(e instanceof ConnectError);
      assert.equal(e.status, 404);
      assert.match(
        e.message,
        /^Remote path ".*\/nope" does not exist on 127\.0\.0\.1:\d+$/,
      );
      return true;
    },
  );
  await assert.rejects(
    () =>
      basePull({
        baseUrl: server.baseUrl,
        remotePath: join(data, "server.key"),
        localPath,
      }),
    (e: unknown) =>
      e instanceof ConnectError && e.status === 403 &&
      /server\.key/.test(e.message),
  );
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  await assert.rejects(
    () =>
      basePull({
        baseUrl: `http://127.0.0.1:${port}`,
        remotePath: data,
        localPath,
      }),
    (e: unknown) =>
      e instanceof ConnectError && /connection refused/.test(e.message),
  );
  await assert.rejects(() => Deno.stat(localPath));
});

Deno.test("pull() names a destination that cannot be written", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  await Deno.writeTextFile(join(data, "ok.txt"), "ok");
  await Deno.writeTextFile(join(dir.path, "a-file"), "x");
  await using server = await realServer(data);
  await assert.rejects(
    () =>
      basePull({
        baseUrl: server.baseUrl,
        remotePath: join(data, "ok.txt"),
        localPath: join(dir.path, "a-file", "sub", "ok.txt"),
      }),
    (e: unknown) =>
      e instanceof LocalPathError &&
      /^Cannot write ".*a-file\/sub": not a directory$/.test(e.message),
  );
  await assert.rejects(
    () =>
      basePull({
        baseUrl: server.baseUrl,
        remotePath: data,
        localPath: join(dir.path, "a-file"),
      }),
    (e: unknown) => e instanceof LocalPathError && /a-file/.test(e.message),
  );
});

// ------------------------------------------------------------------ hostile server

Deno.test("pull() never writes outside the output directory for a hostile server", async () => {
  await using dir = await tempDir();
  const out = join(dir.path, "out");
  const outside = join(dir.path, "outside");
  await Deno.mkdir(out);
  await Deno.mkdir(outside);
  await Deno.writeTextFile(join(outside, "secret.txt"), "keep");
  // Links planted in the output directory before the pull.
  await Deno.symlink(outside, join(out, "link"));
  await Deno.symlink(join(outside, "secret.txt"), join(out, "victim.txt"));
  await Deno.symlink(
    join(outside, "part-target"),
    join(out, "ok2.txt.hsync-part"),
  );

  const names = [
    "../evil.txt",
    "/abs-evil.txt",
    "nul\0evil.txt",
    "sub/../../evil2.txt",
    "back\\..\\evil3.txt",
    "link/evil4.txt",
    "link",
    "ok.txt",
    "ok2.txt",
    "victim.txt",
    "big/../../evil5.bin",
    "x.hsync-part",
  ];
  const entry = (path: string, size: number): ListEntry => ({
    path,
    type: "file",
    size,
    mtime: 1_700_000_000_000,
    mode: 0o644,
    etag: `"${path.length}"`,
  });
  const listing: ListEntry[] = [
    { ...entry("link", 0), type: "dir" },
    ...names.filter((n) => n !== "link").map((n) =>
      entry(n, n.endsWith(".bin") ? 400 * 1024 : 5)
    ),
  ];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request) => {
      const url = new URL(request.url);
      if (url.pathname === "/v1/stat") {
        const st: StatEntry = {
          type: "dir",
          size: 0,
          mtime: 1,
          mode: 0o755,
          etag: '"root"',
        };
        return Response.json(st);
      }
      if (url.pathname === "/v1/list") {
        return new Response(
          listing.map((e) => JSON.stringify(e) + "\n").join(""),
        );
      }
      if (url.pathname === "/v1/bundle") {
        const req = await request.json() as BundleRequest;
        const frames: Uint8Array<ArrayBuffer>[] = [];
        // Unasked-for paths first: they must be ignored.
        for (const p of ["../bundle-evil.txt", "/abs-bundle.txt"]) {
          frames.push(
            copy(
              encodeFrame({
                path: p,
                size: 5,
                mtime: 1,
                mode: 0o644,
                etag: '"e"',
              }, bytes(5, 1)),
            ),
          );
        }
        for (const p of req.paths) {
          frames.push(
            copy(
              encodeFrame({
                path: p,
                size: 5,
                mtime: 1_700_000_000_000,
                mode: 0o644,
                etag: '"e"',
              }, bytes(5, 2)),
            ),
          );
        }
        frames.push(copy(encodeFrame({ end: true })));
        return new Response(new Blob(frames));
      }
      if (url.pathname === "/v1/file") {
        const size = url.searchParams.get("path")!.endsWith(".bin")
          ? 400 * 1024
          : 5;
        const m = /bytes=(\d+)-(\d+)/.exec(request.headers.get("range") ?? "");
        if (m === null) return new Response(bytes(size, 3));
        const [a, b] = [Number(m[1]), Number(m[2])];
        return new Response(bytes(size, 3).slice(a, b + 1), {
          status: 206,
          headers: { "content-range": `bytes ${a}-${b}/${size}` },
        });
      }
      return new Response("{}", { status: 404 });
    },
  );
  try {
    const { summary } = await basePull({
      baseUrl: `http://127.0.0.1:${server.addr.port}`,
      remotePath: "/data",
      localPath: out,
    });
    const failed = summary.failures.map((f) => f.path).sort();
    assert.deepEqual(
      failed,
      [
        "../evil.txt",
        "/abs-evil.txt",
        "back\\..\\evil3.txt",
        "big/../../evil5.bin",
        "link",
        "link/evil4.txt",
        "nul\0evil.txt",
        "sub/../../evil2.txt",
        "x.hsync-part",
      ].sort(),
    );
    for (const f of summary.failures) {
      assert.match(f.message, /^(Refused path|Cannot write)/);
    }
    assert.equal(summary.files, 3);
    assert.deepEqual(await tree(outside), ["secret.txt"]);
    assert.equal(await Deno.readTextFile(join(outside, "secret.txt")), "keep");
    assert.deepEqual(await tree(dir.path), [
      "out/",
      "out/link",
      "out/ok.txt",
      "out/ok2.txt",
      "out/victim.txt",
      "outside/",
      "outside/secret.txt",
    ]);
    // The planted link at a final name was replaced, not followed.
    assert.ok((await Deno.lstat(join(out, "victim.txt"))).isFile);
    assert.ok((await Deno.lstat(join(out, "link"))).isSymlink);
  } finally {
    await server.shutdown();
  }
});

// ------------------------------------------------------------------ broken servers

interface RawRequest {
  method: string;
  url: URL;
  headers: Headers;
}

interface RawReply {
  status: number;
  headers?: Record<string, string>;
  body?: Uint8Array;
  /** Send only this many body bytes, then close (Content-Length still announces all). */
  cutAt?: number;
  /** Send the body chunked (no Content-Length). */
  chunked?: boolean;
  /** Wait this long after `cutAt` bytes before closing. */
  stallMs?: number;
}

/** A bare HTTP/1.1 server that can misbehave on purpose (one response per connection). */
function rawServer(
  handle: (request: RawRequest) => RawReply,
): RealServer & { stalls: Set<ReturnType<typeof setTimeout>> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const conns = new Set<Deno.Conn>();
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const enc = new TextEncoder();
  async function serveConn(conn: Deno.Conn) {
    conns.add(conn);
    try {
      let head = "";
      const buf = new Uint8Array(16 * 1024);
      while (!head.includes("\r\n\r\n")) {
        const n = await conn.read(buf);
        if (n === null) return;
        head += new TextDecoder().decode(buf.subarray(0, n));
      }
      const [requestLine, ...lines] = head.split("\r\n\r\n")[0].split("\r\n");
      const [method, target] = requestLine.split(" ");
      const headers = new Headers();
      for (const l of lines) {
        const i = l.indexOf(":");
        headers.set(l.slice(0, i).trim(), l.slice(i + 1).trim());
      }
      const reply = handle({
        method,
        url: new URL(target, `http://127.0.0.1:${port}`),
        headers,
      });
      const body = reply.body ?? new Uint8Array(0);
      let text = `HTTP/1.1 ${reply.status} X\r\nconnection: close\r\n`;
      for (const [k, v] of Object.entries(reply.headers ?? {})) {
        text += `${k}: ${v}\r\n`;
      }
      text += reply.chunked
        ? "transfer-encoding: chunked\r\n\r\n"
        : `content-length: ${body.length}\r\n\r\n`;
      await writeAll(conn, enc.encode(text));
      const sent = body.subarray(0, reply.cutAt ?? body.length);
      if (reply.chunked) {
        if (sent.length > 0) {
          await writeAll(conn, enc.encode(sent.length.toString(16) + "\r\n"));
          await writeAll(conn, sent);
          await writeAll(conn, enc.encode("\r\n"));
        }
        await writeAll(conn, enc.encode("0\r\n\r\n"));
      } else await writeAll(conn, sent);
      if (reply.stallMs) {
        await new Promise<void>((resolve) => {
          const id = setTimeout(() => {
            timers.delete(id);
            resolve();
          }, reply.stallMs);
          timers.add(id);
        });
      }
    } catch {
      // The client went away: fine.
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
  }
  const accepting = (async () => {
    try {
      for await (const conn of listener) serveConn(conn);
    } catch {
      // listener closed
    }
  })();
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    stalls: timers,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const id of timers) clearTimeout(id);
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // already closed
        }
      }
      await accepting;
    },
  };
}

async function writeAll(conn: Deno.Conn, data: Uint8Array) {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/** Replies for one file `/data/f.bin`: stat, then ranges through `range(a, b)`. */
function fileServer(
  content: Uint8Array,
  range: (
    start: number,
    end: number,
    n: number,
    request: RawRequest,
  ) => RawReply,
  etag = () => '"v1"',
) {
  const starts: number[] = [];
  const server = rawServer((request) => {
    if (request.url.pathname === "/v1/stat") {
      const st: StatEntry = {
        type: "file",
        size: content.length,
        mtime: 1_700_000_000_000,
        mode: 0o644,
        etag: etag(),
      };
      return {
        status: 200,
        body: new TextEncoder().encode(JSON.stringify(st)),
      };
    }
    const m = /bytes=(\d+)-(\d+)/.exec(request.headers.get("range") ?? "");
    if (m === null) return { status: 200, body: content };
    const [a, b] = [Number(m[1]), Number(m[2])];
    starts.push(a);
    return range(a, b, starts.length, request);
  });
  return { server, starts };
}

function partial(
  content: Uint8Array,
  a: number,
  b: number,
  extra: Partial<RawReply> = {},
): RawReply {
  return {
    status: 206,
    headers: { "content-range": `bytes ${a}-${b}/${content.length}` },
    body: content.slice(a, b + 1),
    ...extra,
  };
}

Deno.test("pull() resumes a body cut short from its last byte and never places it early", async () => {
  await using dir = await tempDir();
  const content = bytes(100_000, 11);
  const { server, starts } = fileServer(
    content,
    (a, b) => partial(content, a, b, { cutAt: 30_000 }),
  );
  await using _ = server;
  const out = join(dir.path, "f.bin");
  const { summary } = await basePull({
    baseUrl: server.baseUrl,
    remotePath: "/data/f.bin",
    localPath: out,
  });
  assert.deepEqual(summary.failures, []);
  assert.deepEqual(starts, [0, 30_000, 60_000, 90_000]);
  assert.ok(sameBytes(await Deno.readFile(out), content));
});

Deno.test("pull() fails a file whose body always breaks, keeps its part file and no final file", async () => {
  await using dir = await tempDir();
  const content = bytes(50_000, 12);
  const { server, starts } = fileServer(
    content,
    (a, b) => partial(content, a, b, { cutAt: 0 }),
  );
  await using _ = server;
  const out = join(dir.path, "f.bin");
  const { summary } = await basePull({
    baseUrl: server.baseUrl,
    remotePath: "/data/f.bin",
    localPath: out,
  });
  assert.equal(summary.failed, 1);
  assert.equal(summary.files, 0);
  assert.equal(starts.length, 3, "first try and Max_timeout_retry = 2 retries");
  await assert.rejects(() => Deno.stat(out));
  assert.ok((await Deno.stat(out + ".hsync-part")).isFile);
});

Deno.test("pull() never accepts a complete-looking chunked body shorter than the range", async () => {
  await using dir = await tempDir();
  const content = bytes(50_000, 13);
  const { server } = fileServer(
    content,
    (a, b) => partial(content, a, b, { chunked: true, cutAt: 0 }),
  );
  await using _ = server;
  const out = join(dir.path, "f.bin");
  const { summary } = await basePull({
    baseUrl: server.baseUrl,
    remotePath: "/data/f.bin",
    localPath: out,
  });
  assert.equal(summary.failed, 1);
  assert.match(summary.failures[0].message, /ended at byte 0 of 50000/);
  await assert.rejects(() => Deno.stat(out));
});

Deno.test("pull() completes a file whose range answers are chunked (no Content-Length), to the last byte", async () => {
  await using dir = await tempDir();
  // Not a multiple of 64 KiB: Deno's FsFile.writable would hold the tail.
  const content = bytes(300 * 1024 + 7, 16);
  const { server } = fileServer(
    content,
    (a, b) => partial(content, a, b, { chunked: true }),
  );
  await using _ = server;
  const out = join(dir.path, "f.bin");
  const { summary } = await basePull({
    baseUrl: server.baseUrl,
    remotePath: "/data/f.bin",
    localPath: out,
  });
  assert.deepEqual(summary.failures, []);
  assert.equal(summary.files, 1);
  assert.ok(sameBytes(await Deno.readFile(out), content));
});

Deno.test("pull() refuses a range response for other bytes than asked", async () => {
  await using dir = await tempDir();
  const content = bytes(50_000, 14);
  const { server } = fileServer(content, (a, b) => partial(content, a + 1, b));
  await using _ = server;
  const out = join(dir.path, "f.bin");
  const { summary } = await basePull({
    baseUrl: server.baseUrl,
    remotePath: "/data/f.bin",
    localPath: out,
  });
  assert.equal(summary.failed, 1);
  assert.match(
    summary.failures[0].message,
    /Server sent bytes 1-49999 of "f.bin" for 0-49999/,
  );
  await assert.rejects(() => Deno.stat(out));
});

Deno.test("pull() starts a file over with a warning when a ranged request gets a 200", async () => {
  await using dir = await tempDir();
  const content = bytes(60_000, 15);
  let version = 1;
  const { server } = fileServer(
    content,
    (a, b, n, request) => {
      if (n === 1) {
        // The file was rewritten: If-Range does not hold, the whole file comes back.
        assert.equal(request.headers.get("if-range"), '"v1"');
        version = 2;
        return { status: 200, body: content };
      }
      assert.equal(request.headers.get("if-range"), '"v2"');
      return partial(content, a, b);
    },
    () => `"v${version}"`,
  );
  await using _ = server;
  const out = join(dir.path, "f.bin");
  const { summary, events } = await basePull({
    baseUrl: server.baseUrl,
    remotePath: "/data/f.bin",
    localPath: out,
  });
  assert.deepEqual(summary.failures, []);
  assert.ok(sameBytes(await Deno.readFile(out), content));
  const warnings = events.filter((e) => e.type === "warning");
  assert.equal(warnings.length, 1);
  assert.match(
    JSON.stringify(warnings[0]),
    /changed on the server, starting over/,
  );
});

Deno.test("pull() aborts a request without data after Data_timeout and resumes it", async () => {
  await using dir = await tempDir();
  const content = bytes(80_000, 16);
  const { server, starts } = fileServer(
    content,
    (a, b, n) =>
      n === 1
        ? partial(content, a, b, { cutAt: 20_000, stallMs: 5000 })
        : partial(content, a, b),
  );
  await using _ = server;
  const out = join(dir.path, "f.bin");
  const t0 = performance.now();
  const { summary } = await basePull(
    { baseUrl: server.baseUrl, remotePath: "/data/f.bin", localPath: out },
    { Data_timeout: "0.4" },
  );
  assert.deepEqual(summary.failures, []);
  assert.ok(performance.now() - t0 < 3000);
  assert.deepEqual(starts, [0, 20_000]);
  assert.ok(sameBytes(await Deno.readFile(out), content));
});

Deno.test("pull() stops cleanly when aborted, keeping the part file", async () => {
  await using dir = await tempDir();
  const content = bytes(80_000, 17);
  const { server } = fileServer(
    content,
    (a, b) => partial(content, a, b, { cutAt: 10_000, stallMs: 5000 }),
  );
  await using _ = server;
  const out = join(dir.path, "f.bin");
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 300);
  const { summary } = await basePull({
    baseUrl: server.baseUrl,
    remotePath: "/data/f.bin",
    localPath: out,
    signal: controller.signal,
  });
  assert.equal(summary.failed, 0);
  assert.equal(summary.files, 0);
  await assert.rejects(() => Deno.stat(out));
  assert.ok((await Deno.stat(out + ".hsync-part")).isFile);
});

Deno.test("pull() fetches files an incomplete bundle left out one by one, and fails the refused ones", async () => {
  await using dir = await tempDir();
  const files: Record<string, Uint8Array<ArrayBuffer>> = {
    "error-frame.txt": bytes(10, 1),
    "missing.txt": bytes(20, 2),
    "good.txt": bytes(30, 3),
    "refused.txt": bytes(40, 4),
    "after-cut.txt": bytes(50, 5),
  };
  const gets: string[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request) => {
      const url = new URL(request.url);
      const path = url.searchParams.get("path") ?? "";
      if (url.pathname === "/v1/stat") {
        return Response.json({
          type: "dir",
          size: 0,
          mtime: 1,
          mode: 0o755,
          etag: '"r"',
        });
      }
      if (url.pathname === "/v1/list") {
        return new Response(
          Object.entries(files).map(([p, d]) =>
            JSON.stringify({
              path: p,
              type: "file",
              size: d.length,
              mtime: 1_700_000_000_000,
              mode: 0o644,
              etag: `"${p}"`,
            }) + "\n"
          ).join(""),
        );
      }
      if (url.pathname === "/v1/bundle") {
        const frames = [
          copy(
            encodeFrame({
              path: "error-frame.txt",
              error: "internal",
              message: "Disk hiccup",
            }),
          ),
          copy(
            encodeFrame({
              path: "refused.txt",
              error: "forbidden",
              message: "Refused",
            }),
          ),
          copy(encodeFrame(
            {
              path: "good.txt",
              size: 30,
              mtime: 1_700_000_000_000,
              mode: 0o644,
              etag: '"g"',
            },
            files["good.txt"],
          )),
          // Cut inside a frame: no end frame, so the rest is fetched one by one.
          copy(
            encodeFrame(
              {
                path: "after-cut.txt",
                size: 50,
                mtime: 1_700_000_000_000,
                mode: 0o644,
                etag: '"a"',
              },
              files["after-cut.txt"],
            ).subarray(0, 30),
          ),
        ];
        return new Response(new Blob(frames));
      }
      if (url.pathname === "/v1/file") {
        const rel = path.slice("/data/".length);
        gets.push(rel);
        if (rel === "refused.txt") {
          return Response.json({
            error: "forbidden",
            message: 'Refused "/data/refused.txt"',
          }, { status: 403 });
        }
        const data = files[rel];
        const m = /bytes=(\d+)-(\d+)/.exec(request.headers.get("range") ?? "")!;
        return new Response(data.slice(Number(m[1]), Number(m[2]) + 1), {
          status: 206,
          headers: { "content-range": `bytes ${m[1]}-${m[2]}/${data.length}` },
        });
      }
      return new Response("{}", { status: 404 });
    },
  );
  try {
    const out = join(dir.path, "out");
    const { summary } = await basePull({
      baseUrl: `http://127.0.0.1:${server.addr.port}`,
      remotePath: "/data",
      localPath: out,
    });
    assert.deepEqual(summary.failures, [{
      path: "refused.txt",
      message: 'Refused "/data/refused.txt"',
    }]);
    assert.equal(summary.files, 4);
    assert.deepEqual(gets.sort(), [
      "after-cut.txt",
      "error-frame.txt",
      "missing.txt",
      "refused.txt",
    ]);
    for (const [rel, data] of Object.entries(files)) {
      if (rel === "refused.txt") {
        await assert.rejects(() => Deno.stat(join(out, rel)));
      } else {assert.ok(
          sameBytes(await Deno.readFile(join(out, rel)), data),
          rel,
        );}
    }
  } finally {
    await server.shutdown();
  }
});

Deno.test("pull() places a directory: inside a path ending in /, else at that path (reruns do not nest)", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(join(data, "sub"), { recursive: true });
  await Deno.writeTextFile(join(data, "sub/x.txt"), "x");
  await using server = await realServer(data);
  const into = join(dir.path, "fresh") + "/";
  await basePull({
    baseUrl: server.baseUrl,
    remotePath: data,
    localPath: into,
  });
  assert.deepEqual(await tree(join(dir.path, "fresh")), [
    "data/",
    "data/sub/",
    "data/sub/x.txt",
  ]);
  const copy = join(dir.path, "copy");
  for (let i = 0; i < 2; i++) {
    await basePull({
      baseUrl: server.baseUrl,
      remotePath: data,
      localPath: copy,
    });
    assert.deepEqual(await tree(copy), ["sub/", "sub/x.txt"]);
  }
});
