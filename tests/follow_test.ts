/** Tests of lib/client/follow.ts against the real hsyncd handler on loopback: what is asked of the server, --from-now, state, tail checks, filters. */
import assert from "node:assert/strict";
import { join } from "node:path";
import defaults from "../hsync.ini" with { type: "text" };
import {
  type ClientSettings,
  clientSettings,
  loadConfig,
  serverSettings,
} from "../lib/shared/config.ts";
import { ConnectError } from "../lib/shared/errors.ts";
import { etagFor, parseEtag } from "../lib/shared/file_identity.ts";
import {
  follow,
  type FollowEvent,
  type FollowOptions,
  type FollowSummary,
} from "../lib/client/follow.ts";
import { TAIL_BYTES } from "../lib/client/follow_file.ts";
import {
  loadFollowState,
  saveFollowState,
} from "../lib/client/follow_state.ts";
import { type AccessLogEntry, createHandler } from "../lib/server/handler.ts";
import { WatchHub } from "../lib/server/watch_hub.ts";
import { waitFor } from "./_programs.ts";

interface Fixture extends AsyncDisposable {
  root: string;
  data: string;
  out: string;
  stateFile: string;
  baseUrl: string;
  settings: ClientSettings;
  /** Every request the server answered, in order. */
  requests: AccessLogEntry[];
}

async function fixture(hsync: Record<string, string> = {}): Promise<Fixture> {
  const root = await Deno.realPath(
    await Deno.makeTempDir({ prefix: "hsync-follow-test-" }),
  );
  const data = join(root, "data");
  await Deno.mkdir(data);
  const hsyncDir = join(root, "h");
  const config = await loadConfig({ defaults, hsyncDir });
  const requests: AccessLogEntry[] = [];
  const watchHub = new WatchHub();
  const handler = await createHandler({
    settings: serverSettings(config, { Only_allowed_path: data }),
    hsyncDir,
    hostname: "test",
    log: (entry) => requests.push(entry),
    watchHub,
  });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    handler,
  );
  return {
    root,
    data,
    out: join(root, "out"),
    stateFile: join(root, "state", "follow.json"),
    baseUrl: `http://127.0.0.1:${server.addr.port}`,
    settings: clientSettings(config, "hsync", {
      Data_timeout: "6",
      Max_timeout_retry: "3",
      ...hsync,
    }),
    requests,
    async [Symbol.asyncDispose]() {
      watchHub.close();
      await server.shutdown();
      await Deno.remove(root, { recursive: true }).catch(() => {});
    },
  };
}

interface Running {
  events: FollowEvent[];
  done: Promise<FollowSummary>;
  stop(): Promise<FollowSummary>;
}

/** Starts a follower of `remote` and waits until it follows. */
async function start(
  f: Fixture,
  remote: string,
  extra: Partial<FollowOptions> = {},
): Promise<Running> {
  const controller = new AbortController();
  const events: FollowEvent[] = [];
  const done = follow({
    baseUrl: f.baseUrl,
    remotePath: remote,
    localPath: f.out,
    settings: f.settings,
    stateFile: f.stateFile,
    signal: controller.signal,
    onEvent: (e) => events.push(e),
    retryBaseMs: 50,
    ...extra,
  });
  done.catch(() => {});
  await Promise.race([
    waitFor(
      "the follower to start",
      () => events.some((e) => e.type === "following"),
    ),
    done.then(() => {
      throw new Error("follow() returned before following");
    }),
  ]);
  return {
    events,
    done,
    stop: () => {
      controller.abort();
      return done;
    },
  };
}

async function same(a: string, b: string): Promise<boolean> {
  try {
    const [x, y] = await Promise.all([Deno.readFile(a), Deno.readFile(b)]);
    return x.length === y.length && x.every((v, i) => v === y[i]);
  } catch {
    return false;
  }
}

async function append(path: string, text: string): Promise<void> {
  await Deno.writeTextFile(path, text, { append: true });
}

function query(entry: AccessLogEntry): URLSearchParams {
  return new URL(`http://x${entry.url}`).searchParams;
}

Deno.test("parseEtag() reads device, inode, size and mtime from hsyncd's ETag, and nothing from other forms", async () => {
  const path = await Deno.makeTempFile();
  try {
    await Deno.writeTextFile(path, "12345");
    const info = await Deno.stat(path);
    const parts = parseEtag(etagFor(info));
    assert.deepEqual(parts, {
      id: `${info.dev.toString(16)}-${info.ino!.toString(16)}`,
      size: 5,
      mtime: Math.floor(info.mtime!.getTime()),
    });
    // A time before 1970 is negative in the tag, and read back so.
    await Deno.utime(path, new Date(), new Date(-18489600000));
    const old = await Deno.stat(path);
    assert.equal(parseEtag(etagFor(old))?.mtime, -18489600000);
  } finally {
    await Deno.remove(path);
  }
  for (
    const other of [
      'W/"1-2-3-4-5"',
      '"abc"',
      "",
      '"1-2-3-4"',
      null,
      '"1-2-3--"',
      '"1--2-3-4-5"',
    ]
  ) {
    assert.equal(parseEtag(other), undefined, String(other));
  }
});

Deno.test("a follower state file round-trips, and a malformed one is ignored", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "sub", "s.json");
    const state = {
      version: 1 as const,
      baseUrl: "http://h:1",
      remotePath: "/data",
      local: "/out",
      files: { "a.log": { base: 10, id: "1-2", etag: '"1-2-3-4-5"' } },
    };
    await saveFollowState(path, state);
    assert.deepEqual(await loadFollowState(path), state);
    await Deno.writeTextFile(path, "{not json");
    assert.equal(await loadFollowState(path), undefined);
    await Deno.writeTextFile(path, JSON.stringify({ ...state, version: 9 }));
    assert.equal(await loadFollowState(path), undefined);
    assert.equal(await loadFollowState(join(dir, "absent.json")), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--from-now skips existing content, follows only what is written after the start, and keeps doing so after a restart", async () => {
  await using f = await fixture();
  await Deno.writeTextFile(join(f.data, "a.log"), "old a\n");
  await Deno.writeTextFile(join(f.data, "b.log"), "old b\n");
  const first = await start(f, f.data, { fromNow: true });
  await append(join(f.data, "a.log"), "new a\n");
  await Deno.writeTextFile(join(f.data, "c.log"), "all of c\n");
  const a = join(f.out, "a.log");
  await waitFor(
    "the new bytes of a.log",
    async () => await Deno.readTextFile(a).catch(() => "") === "new a\n",
  );
  await waitFor(
    "c.log",
    () => same(join(f.data, "c.log"), join(f.out, "c.log")),
  );
  await first.stop();
  assert.equal(await Deno.stat(join(f.out, "b.log")).catch(() => null), null);

  await append(join(f.data, "a.log"), "while stopped\n");
  const second = await start(f, f.data);
  await append(join(f.data, "a.log"), "after restart\n");
  await waitFor(
    "a.log continued",
    async () =>
      await Deno.readTextFile(a) === "new a\nwhile stopped\nafter restart\n",
  );
  const summary = await second.stop();
  assert.equal(summary.fetchedFiles, 0);
});

Deno.test("a restarted follower asks only for the new bytes, after one hash of at most TAIL_BYTES", async () => {
  await using f = await fixture();
  const log = join(f.data, "big.log");
  await Deno.writeFile(log, new Uint8Array(1024 * 1024).fill(66));
  const first = await start(f, f.data);
  await waitFor("the first pull", () => same(log, join(f.out, "big.log")));
  await first.stop();

  await append(log, "x".repeat(100));
  f.requests.length = 0;
  const second = await start(f, f.data);
  await waitFor("the catch-up", () => same(log, join(f.out, "big.log")));
  await second.stop();
  const files = f.requests.filter((r) => r.url.startsWith("/v1/file"));
  assert.equal(files.length, 1, JSON.stringify(f.requests));
  assert.equal(files[0].status, 206);
  assert.equal(files[0].bytes, 100);
  const hashes = f.requests.filter((r) => r.url.startsWith("/v1/hash"));
  assert.equal(hashes.length, 1);
  const q = query(hashes[0]);
  assert.equal(Number(q.get("length")), TAIL_BYTES);
  assert.equal(Number(q.get("offset")), 1024 * 1024 - TAIL_BYTES);
  assert.equal(
    f.requests.filter((r) => r.url.startsWith("/v1/bundle")).length,
    0,
  );
});

Deno.test("local bytes that are not on the server (a torn write) are found by the tail check and the file is fetched again whole", async () => {
  await using f = await fixture();
  const log = join(f.data, "run.log");
  await Deno.writeTextFile(log, "line\n".repeat(1000));
  const first = await start(f, f.data);
  const local = join(f.out, "run.log");
  await waitFor("the first pull", () => same(log, local));
  await first.stop();
  const file = await Deno.open(local, { write: true });
  await file.seek(-5, Deno.SeekMode.End);
  await file.write(new TextEncoder().encode("\0\0\0\0\0"));
  file.close();
  await append(log, "more\n");
  const second = await start(f, f.data);
  await waitFor("the refetch", () => same(log, local));
  await second.stop();
  assert.ok(
    second.events.some((e) =>
      e.type === "fetched" && e.reason === "rewritten" && e.path === "run.log"
    ),
    JSON.stringify(second.events),
  );
});

Deno.test("a file rewritten in place with the same size is caught by the tail hash", async () => {
  await using f = await fixture();
  const log = join(f.data, "same.log");
  await Deno.writeTextFile(log, "aaaa\n");
  const running = await start(f, log);
  const local = join(f.out, "same.log");
  // -o is a file path here: the remote file gets that name.
  await waitFor("the first pull", () => same(log, f.out));
  // Overwritten in place, never truncated (a truncation seen between the two
  // steps of writeTextFile is another case: "truncated").
  {
    using file = await Deno.open(log, { write: true });
    await file.write(new TextEncoder().encode("bbbb\n"));
  }
  await waitFor("the rewrite", () => same(log, f.out));
  await running.stop();
  assert.equal(await Deno.stat(local).catch(() => null), null);
  assert.ok(
    running.events.some((e) =>
      e.type === "fetched" && e.reason === "rewritten"
    ),
  );
});

Deno.test("--include and --exclude apply to what appears while following", async () => {
  await using f = await fixture();
  await Deno.writeTextFile(join(f.data, "keep.log"), "k\n");
  const running = await start(f, f.data, { exclude: ["*.tmp", "cache"] });
  await Deno.writeTextFile(join(f.data, "x.tmp"), "no\n");
  await Deno.mkdir(join(f.data, "cache"));
  await Deno.writeTextFile(join(f.data, "cache/c.log"), "no\n");
  await Deno.writeTextFile(join(f.data, "y.log"), "yes\n");
  await waitFor(
    "y.log",
    () => same(join(f.data, "y.log"), join(f.out, "y.log")),
  );
  await append(join(f.data, "keep.log"), "k2\n");
  await waitFor(
    "keep.log",
    () => same(join(f.data, "keep.log"), join(f.out, "keep.log")),
  );
  await running.stop();
  const names = [...Deno.readDirSync(f.out)].map((e) => e.name).sort();
  assert.deepEqual(names, ["keep.log", "y.log"]);
});

Deno.test("following 2,000 quiet files sends nothing but the long-poll", async () => {
  await using f = await fixture({ Data_timeout: "2" });
  for (let d = 0; d < 20; d++) {
    await Deno.mkdir(join(f.data, `d${d}`));
    for (let i = 0; i < 100; i++) {
      await Deno.writeTextFile(join(f.data, `d${d}`, `${i}.log`), `${i}\n`);
    }
  }
  const running = await start(f, f.data);
  f.requests.length = 0;
  await new Promise((r) => setTimeout(r, 1500));
  const seen = f.requests.map((r) => r.url.split("?")[0]);
  await running.stop();
  assert.ok(seen.every((u) => u === "/v1/watch"), seen.join(" "));
  // One poll at a time, each lasting its whole timeout (1 s here).
  assert.ok(seen.length <= 3, seen.join(" "));
});

Deno.test("ten files appended concurrently end identical, with no line lost or repeated", async () => {
  await using f = await fixture();
  const files = Array.from({ length: 10 }, (_, i) => join(f.data, `w${i}.log`));
  for (const p of files) await Deno.writeTextFile(p, "");
  const running = await start(f, f.data);
  const handles = files.map((p) => Deno.openSync(p, { append: true }));
  const enc = new TextEncoder();
  for (let tick = 0; tick < 100; tick++) {
    handles.forEach((h, i) => {
      let text = "";
      for (let n = 0; n < 10; n++) text += `w${i} ${tick * 10 + n}\n`;
      h.writeSync(enc.encode(text));
    });
    await new Promise((r) => setTimeout(r, 2));
  }
  handles.forEach((h) => h.close());
  for (const p of files) {
    const local = join(f.out, p.split("/").pop()!);
    await waitFor(`${p}`, () => same(p, local));
    const lines = (await Deno.readTextFile(local)).trimEnd().split("\n");
    assert.equal(lines.length, 1000);
    lines.forEach((line, n) => assert.equal(Number(line.split(" ")[1]), n));
  }
  const summary = await running.stop();
  assert.equal(summary.fetchedFiles, 0);
});

Deno.test("an unreachable server at the start is a ConnectError, a missing path too", async () => {
  await using f = await fixture();
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  await assert.rejects(
    follow({
      baseUrl: `http://127.0.0.1:${port}`,
      remotePath: f.data,
      localPath: f.out,
      settings: f.settings,
    }),
    (e) => e instanceof ConnectError && /connection refused/.test(e.message),
  );
  await assert.rejects(
    follow({
      baseUrl: f.baseUrl,
      remotePath: join(f.data, "nope"),
      localPath: f.out,
      settings: f.settings,
    }),
    (e) => e instanceof ConnectError && /does not exist/.test(e.message),
  );
});

Deno.test("existing data without state is checked file by file (a grown file only appended); an interrupted first pull is run again by the engine", async () => {
  await using f = await fixture();
  const text = "0123456789\n".repeat(1000);
  await Deno.writeTextFile(join(f.data, "a.log"), text);
  await Deno.writeTextFile(join(f.data, "b.log"), "b\n");
  await Deno.mkdir(f.out);
  await Deno.writeTextFile(join(f.out, "a.log"), text.slice(0, 5000));
  const first = await start(f, f.data);
  await first.stop();
  assert.ok(!first.events.some((e) => e.type === "pulled"));
  const work = first.events.filter((e) =>
    e.type === "appended" || e.type === "fetched"
  ).map((e) => JSON.stringify(e)).sort();
  assert.deepEqual(work, [
    JSON.stringify({
      type: "appended",
      path: "a.log",
      bytes: 6000,
      size: 11000,
    }),
    JSON.stringify({ type: "fetched", path: "b.log", bytes: 2, reason: "new" }),
  ]);
  assert.equal(await Deno.readTextFile(join(f.out, "a.log")), text);

  const saved = await loadFollowState(f.stateFile);
  assert.ok(saved !== undefined && saved.pulling === undefined);
  await saveFollowState(f.stateFile, { ...saved, pulling: true });
  await Deno.remove(join(f.out, "b.log"));
  const second = await start(f, f.data);
  await second.stop();
  assert.ok(second.events.some((e) => e.type === "pulled"));
  assert.equal(await Deno.readTextFile(join(f.out, "b.log")), "b\n");
  assert.equal((await loadFollowState(f.stateFile))?.pulling, undefined);
});
