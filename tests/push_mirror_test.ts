/** Push `--delete`, `--max-delete` and `--dry-run` (lib/client/push.ts) against the fake push server (tests/_push_server.ts): what the server holds after, and which requests reached it. */
import assert from "node:assert/strict";
import { join } from "node:path";
import defaults from "../hsync.ini" with { type: "text" };
import { clientSettings, loadConfig } from "../lib/shared/config.ts";
import { ConnectError } from "../lib/shared/errors.ts";
import { push, type PushOptions } from "../lib/client/push.ts";
import type { PullEvent, PullSummary } from "../lib/client/transfer.ts";
import { tempDir } from "./_programs.ts";
import {
  type PushServer,
  pushServer,
  type PushServerOptions,
} from "./_push_server.ts";

const T0 = 1_600_000_000_000;

/** Every path below `root` (directories with a trailing `/`), sorted. */
function tree(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string, rel: string) => {
    for (const e of Deno.readDirSync(dir)) {
      const r = rel === "" ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory) {
        out.push(`${r}/`);
        walk(join(dir, e.name), r);
      } else out.push(r);
    }
  };
  walk(root, "");
  return out.sort();
}

/** Writes `files` (relative path -> text) below `root`, each with mtime T0. */
function write(root: string, files: Record<string, string>): void {
  for (const [rel, text] of Object.entries(files)) {
    const path = join(root, rel);
    Deno.mkdirSync(join(path, ".."), { recursive: true });
    Deno.writeTextFileSync(path, text);
    Deno.utimeSync(path, new Date(T0), new Date(T0));
  }
}

interface Run {
  summary: PullSummary;
  events: PullEvent[];
}

async function fixture(options: Partial<PushServerOptions> = {}) {
  const dir = await tempDir();
  const src = join(dir.path, "src");
  const dst = join(dir.path, "dst");
  Deno.mkdirSync(join(src, "run"), { recursive: true });
  Deno.mkdirSync(dst);
  const server = pushServer({ writable: dst, ...options });
  const config = await loadConfig({ defaults, hsyncDir: "/nonexistent-hsync" });
  const settings = clientSettings(config, "hscp", {
    Data_timeout: "5",
    Max_timeout_retry: "1",
  });
  const run = async (more: Partial<PushOptions> = {}): Promise<Run> => {
    const events: PullEvent[] = [];
    const summary = await push({
      baseUrl: server.baseUrl,
      sources: [join(src, "run")],
      remotePath: `${dst}/`,
      settings,
      parallelFiles: 2,
      retryBaseMs: 1,
      onEvent: (e) => events.push(e),
      ...more,
    });
    return { summary, events };
  };
  return {
    src,
    dst,
    server: server as PushServer,
    run,
    async [Symbol.asyncDispose]() {
      await server[Symbol.asyncDispose]();
      await dir[Symbol.asyncDispose]();
    },
  };
}

function ofType<T extends PullEvent["type"]>(
  events: PullEvent[],
  type: T,
): Array<Extract<PullEvent, { type: T }>> {
  return events.filter((e) => e.type === type) as Array<
    Extract<PullEvent, { type: T }>
  >;
}

Deno.test("--delete removes the remote files, links and directories the local tree does not have, children first, and counts them", async () => {
  await using f = await fixture();
  write(join(f.src, "run"), { "keep.txt": "k", "sub/keep.txt": "k" });
  write(join(f.dst, "run"), {
    "keep.txt": "k",
    "old.txt": "o",
    "sub/keep.txt": "k",
    "sub/old.txt": "o",
    "gone/deep/x.txt": "x",
    "gone/y.txt": "y",
  });
  Deno.symlinkSync("keep.txt", join(f.dst, "run/link"));
  const { summary, events } = await f.run({ deleteExtra: true });
  assert.deepEqual(summary.failures, []);
  assert.equal(summary.deleted, 7);
  assert.deepEqual(tree(join(f.dst, "run")), [
    "keep.txt",
    "sub/",
    "sub/keep.txt",
  ]);
  const dst = join(f.dst, "run");
  assert.deepEqual(f.server.deleted, [
    join(dst, "gone/deep/x.txt"),
    join(dst, "gone/y.txt"),
    join(dst, "link"),
    join(dst, "old.txt"),
    join(dst, "sub/old.txt"),
    join(dst, "gone/deep"),
    join(dst, "gone"),
  ]);
  assert.deepEqual(
    ofType(events, "deleted").map((e) => e.path),
    [
      "run/gone/deep/x.txt",
      "run/gone/y.txt",
      "run/link",
      "run/old.txt",
      "run/sub/old.txt",
      "run/gone/deep",
      "run/gone",
    ],
  );
});

Deno.test("--delete never deletes what --exclude leaves out, nor anything below an excluded directory, nor a part file", async () => {
  await using f = await fixture();
  write(join(f.src, "run"), { "a.txt": "a" });
  write(join(f.dst, "run"), {
    "a.txt": "a",
    "b.log": "extra, excluded",
    "cache/x.bin": "below an excluded directory",
    "c.txt": "extra",
  });
  Deno.writeTextFileSync(join(f.dst, "run/d.txt.hsync-part"), "partial");
  const { summary } = await f.run({
    deleteExtra: true,
    exclude: ["*.log", "cache"],
  });
  assert.deepEqual(summary.failures, []);
  assert.equal(summary.deleted, 1);
  assert.deepEqual(tree(join(f.dst, "run")), [
    "a.txt",
    "b.log",
    "cache/",
    "cache/x.bin",
    "d.txt.hsync-part",
  ]);
});

Deno.test("--delete deletes nothing when a file of the run failed or an entry was left out: one failure line", async () => {
  await using f = await fixture();
  write(join(f.src, "run"), { "a.txt": "a", "refuse-me": "no" });
  write(join(f.dst, "run"), { "extra.txt": "e" });
  const { summary } = await f.run({ deleteExtra: true });
  assert.equal(summary.deleted, undefined);
  assert.deepEqual(summary.failures.map((x) => x.path), ["run/refuse-me", "."]);
  assert.equal(
    summary.failures[1].message,
    "Deleted nothing: 1 failed, 0 not transferred (--delete deletes only after a complete transfer)",
  );
  assert.deepEqual(f.server.deleted, []);
  assert.ok(tree(join(f.dst, "run")).includes("extra.txt"));

  Deno.removeSync(join(f.src, "run/refuse-me"));
  const made = await new Deno.Command("mkfifo", {
    args: [join(f.src, "run/pipe")],
  }).output();
  assert.ok(made.success);
  const again = await f.run({ deleteExtra: true });
  assert.equal(again.summary.omissions?.length, 1);
  assert.deepEqual(again.summary.failures.map((x) => x.message), [
    "Deleted nothing: 0 failed, 1 not transferred (--delete deletes only after a complete transfer)",
  ]);
  assert.deepEqual(f.server.deleted, []);
});

Deno.test("--max-delete: more deletions than allowed means none, in one failure; as many as allowed go", async () => {
  await using f = await fixture();
  write(join(f.src, "run"), { "a.txt": "a" });
  write(join(f.dst, "run"), { "x.txt": "x", "y.txt": "y", "z/w.txt": "w" });
  let r = await f.run({ deleteExtra: true, maxDelete: 0 });
  assert.deepEqual(r.summary.failures, [{
    path: ".",
    message: "Would delete 4 entries, more than --max-delete 0: deleted none",
  }]);
  assert.equal(r.summary.failed, 1);
  assert.deepEqual(f.server.deleted, []);
  r = await f.run({ deleteExtra: true, maxDelete: 3 });
  assert.equal(r.summary.failures.length, 1);
  assert.deepEqual(f.server.deleted, []);
  r = await f.run({ deleteExtra: true, maxDelete: 4 });
  assert.deepEqual(r.summary.failures, []);
  assert.equal(r.summary.deleted, 4);
  assert.deepEqual(tree(join(f.dst, "run")), ["a.txt"]);
});

Deno.test("--delete: a directory that is not empty (409 not_empty) fails alone; one already gone (404) counts as deleted", async () => {
  let calls = 0;
  await using f = await fixture({
    hook: (url) => {
      if (url.pathname !== "/v1/delete") return undefined;
      const path = url.searchParams.get("path") ?? "";
      calls++;
      if (path.endsWith("/gone.txt")) {
        Deno.removeSync(path);
        return Response.json({ error: "not_found", message: "No such entry" }, {
          status: 404,
        });
      }
      if (path.endsWith("/olddir")) {
        // Something appeared in it since the listing.
        Deno.writeTextFileSync(join(path, "new.txt"), "new");
      }
      return undefined;
    },
  });
  write(join(f.src, "run"), { "a.txt": "a" });
  write(join(f.dst, "run"), {
    "a.txt": "a",
    "gone.txt": "g",
    "olddir/x.txt": "x",
  });
  const { summary } = await f.run({ deleteExtra: true });
  assert.equal(calls, 3);
  assert.equal(summary.deleted, 2);
  assert.deepEqual(summary.failures, [{
    path: "run/olddir",
    message: `Cannot delete remote path "${
      join(f.dst, "run/olddir")
    }": it is a directory that is not empty (something appeared in it)`,
  }]);
});

Deno.test("--delete: a refusal of this client's writes (403 not_writable) stops the run", async () => {
  await using f = await fixture({
    hook: (url) =>
      url.pathname === "/v1/delete"
        ? Response.json({
          error: "not_writable",
          message: "Cannot write: it is not below a Writable_path",
        }, { status: 403 })
        : undefined,
  });
  write(join(f.src, "run"), { "a.txt": "a" });
  write(join(f.dst, "run"), { "x.txt": "x", "y.txt": "y" });
  await assert.rejects(
    f.run({ deleteExtra: true }),
    (e) => e instanceof ConnectError && e.status === 403,
  );
  assert.equal(
    f.server.log.filter((l) => l.startsWith("POST /v1/delete")).length,
    1,
  );
});

Deno.test("--delete never deletes through a remote link to a directory: the link itself goes", async () => {
  await using f = await fixture();
  write(join(f.src, "run"), { "a.txt": "a" });
  write(join(f.dst, "run"), { "a.txt": "a" });
  write(f.dst, { "elsewhere/precious.txt": "p" });
  Deno.symlinkSync("../elsewhere", join(f.dst, "run/door"));
  const { summary } = await f.run({ deleteExtra: true });
  assert.deepEqual(summary.failures, []);
  assert.deepEqual(f.server.deleted, [join(f.dst, "run/door")]);
  // hsyncd lists what a link leads to, and below it, unless asked for links as links.
  const listings = f.server.log.filter((l) => l.startsWith("GET /v1/list"));
  assert.ok(listings.length > 0);
  assert.ok(listings.every((l) => l.includes("links=1")), listings.join());
  assert.equal(
    Deno.readTextFileSync(join(f.dst, "elsewhere/precious.txt")),
    "p",
  );
});

Deno.test("--dry-run compares as a real push (--checksum too) and sends no write: plan events for transfer, skip and delete", async () => {
  await using f = await fixture();
  write(join(f.src, "run"), {
    "same.txt": "same",
    "changed.txt": "new!",
    "new/deep.txt": "fresh",
  });
  write(join(f.dst, "run"), {
    "same.txt": "same",
    "changed.txt": "old!",
    "extra.txt": "extra",
  });
  for (const checksum of [false, true]) {
    // Without --checksum the time tells them apart; with it, the bytes.
    const mtime = new Date(checksum ? T0 : T0 + 1000);
    Deno.utimeSync(join(f.dst, "run/changed.txt"), mtime, mtime);
    const before = tree(f.dst);
    const { summary, events } = await f.run({
      dryRun: true,
      deleteExtra: true,
      checksum,
    });
    assert.deepEqual(f.server.writes(), [], `checksum ${checksum}`);
    assert.equal(
      f.server.log.some((l) => l.startsWith("GET /v1/hash")),
      checksum,
    );
    assert.deepEqual(tree(f.dst), before);
    assert.deepEqual(summary.failures, []);
    assert.equal(summary.files, 0);
    assert.equal(summary.deleted, undefined);
    const plans = ofType(events, "plan").map((e) =>
      `${e.action} ${e.path} ${e.bytes}`
    ).sort();
    assert.deepEqual(plans, [
      "delete run/extra.txt 5",
      "skip run/same.txt 4",
      "transfer run/changed.txt 4",
      "transfer run/new/deep.txt 5",
    ]);
    assert.deepEqual(ofType(events, "done"), []);
    assert.deepEqual(ofType(events, "skip"), []);
  }
});

Deno.test("--dry-run of a tree the server does not have yet makes no directory: every file would be transferred", async () => {
  await using f = await fixture();
  write(join(f.src, "run"), { "a/b/c.txt": "c", "d.txt": "dd" });
  const { events } = await f.run({
    dryRun: true,
    remotePath: join(f.dst, "not/yet/there") + "/",
  });
  assert.deepEqual(f.server.writes(), []);
  assert.deepEqual(tree(f.dst), []);
  assert.deepEqual(
    ofType(events, "plan").map((e) => `${e.action} ${e.path} ${e.bytes}`),
    ["transfer run/a/b/c.txt 1", "transfer run/d.txt 2"],
  );
});

Deno.test("--dry-run with -l and -H: links and second names are told as transfers of no bytes, and nothing is made", async () => {
  await using f = await fixture();
  write(join(f.src, "run"), { "a.txt": "aaa" });
  Deno.linkSync(join(f.src, "run/a.txt"), join(f.src, "run/b.txt"));
  Deno.symlinkSync("a.txt", join(f.src, "run/s"));
  const { events, summary } = await f.run({
    dryRun: true,
    links: true,
    hardLinks: true,
  });
  assert.deepEqual(summary.failures, []);
  assert.deepEqual(f.server.writes(), []);
  assert.deepEqual(
    ofType(events, "plan").map((e) => `${e.action} ${e.path} ${e.bytes}`)
      .sort(),
    ["transfer run/a.txt 3", "transfer run/b.txt 0", "transfer run/s 0"],
  );
});

Deno.test("--delete: a remote link where the local tree has a file is replaced by the file, even of the same size and time", async () => {
  await using f = await fixture();
  write(join(f.src, "run"), { "a.txt": "a", "b.txt": "new" });
  write(join(f.dst, "run"), { "a.txt": "a", "elsewhere.txt": "old" });
  const link = join(f.dst, "run/b.txt");
  Deno.symlinkSync("elsewhere.txt", link);
  // As long as its text ("elsewhere.txt" is 13 bytes): make them equal.
  write(join(f.src, "run"), { "b.txt": "x".repeat(13) });
  const t = Deno.lstatSync(join(f.src, "run/b.txt")).mtime!;
  new Deno.Command("touch", {
    args: ["-h", "-d", t.toISOString(), link],
  }).outputSync();
  const { summary } = await f.run({ deleteExtra: true, exclude: ["else*"] });
  assert.deepEqual(summary.failures, []);
  assert.ok(Deno.lstatSync(link).isFile);
  assert.equal(Deno.readTextFileSync(link), "x".repeat(13));
  assert.equal(Deno.readTextFileSync(join(f.dst, "run/elsewhere.txt")), "old");
});
