/** Mirroring on the pulling side (issue 20): `--delete`, `--max-delete` and `--dry-run`, against a fake server. */
import assert from "node:assert/strict";
import { join } from "node:path";
import defaults from "../hsync.ini" with { type: "text" };
import { clientSettings, loadConfig } from "../lib/shared/config.ts";
import {
  pull,
  type PullEvent,
  type PullOptions,
  type PullSummary,
} from "../lib/client/pull.ts";
import { Remote } from "../lib/client/remote.ts";
import { expandSources, pullSources } from "../lib/client/sources.ts";
import { isMultiSource } from "../lib/client/client_args.ts";
import { ConnectError, exitCodeFor, UsageError } from "../lib/shared/errors.ts";
import { existsSync, tempDir } from "./_programs.ts";
import {
  bytesContent,
  type FakeLine,
  listServer,
  ROOT,
  run,
  text,
} from "./_list_server.ts";

const MTIME = 1_700_000_000_000;

function write(path: string, content = "x"): void {
  Deno.mkdirSync(join(path, ".."), { recursive: true });
  Deno.writeTextFileSync(path, content);
}

/** Every entry below `root` (links not followed): path, kind, size, mtime, target. */
function snapshot(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string, rel: string) => {
    let names: string[];
    try {
      names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    } catch {
      return;
    }
    for (const name of names) {
      const path = join(dir, name);
      const r = rel === "" ? name : `${rel}/${name}`;
      const info = Deno.lstatSync(path);
      if (info.isSymlink) out.push(`${r} -> ${Deno.readLinkSync(path)}`);
      else if (info.isDirectory) {
        out.push(`${r}/ ${info.mode! & 0o7777} ${info.mtime?.getTime()}`);
        walk(path, r);
      } else {
        out.push(
          `${r} ${info.size} ${info.mode! & 0o7777} ${info.mtime?.getTime()}`,
        );
      }
    }
  };
  walk(root, "");
  return out;
}

const TREE: FakeLine[] = [
  { path: "a.txt", type: "file", content: bytesContent(text("aaa")) },
  { path: "keep", type: "dir" },
  { path: "keep/b.txt", type: "file", content: bytesContent(text("bb")) },
];

Deno.test("--delete removes local files and directories the source does not have, children first, and counts them", async () => {
  await using dir = await tempDir();
  await using server = listServer({ root: ROOT, lines: TREE });
  const dest = join(dir.path, "copy");
  write(join(dest, "extra.txt"));
  write(join(dest, "old/deep/c.txt"));
  write(join(dest, "keep/stale.txt"));
  const { summary, events } = await run(server.baseUrl, dest, {
    deleteExtra: true,
  });
  assert.equal(summary.failed, 0, JSON.stringify(summary.failures));
  assert.deepEqual(snapshot(dest).map((l) => l.split(" ")[0]), [
    "a.txt",
    "keep/",
    "keep/b.txt",
  ]);
  assert.equal(summary.deleted, 5);
  const deleted = events.flatMap((e) => e.type === "deleted" ? [e.path] : []);
  assert.deepEqual(deleted, [
    "extra.txt",
    "keep/stale.txt",
    "old/deep/c.txt",
    "old/deep",
    "old",
  ]);
});

Deno.test("--delete keeps what the filters leave out and the part files of an interrupted run", async () => {
  await using dir = await tempDir();
  await using server = listServer({ root: ROOT, lines: TREE });
  const dest = join(dir.path, "copy");
  write(join(dest, "notes.log"));
  write(join(dest, "cache/x.bin"));
  write(join(dest, "big.iso.hsync-part"));
  write(join(dest, "big.iso.hsync-journal"));
  write(join(dest, "gone.txt"));
  const { summary } = await run(server.baseUrl, dest, {
    deleteExtra: true,
    exclude: ["*.log", "cache"],
  });
  assert.equal(summary.failed, 0, JSON.stringify(summary.failures));
  assert.ok(existsSync(join(dest, "notes.log")));
  assert.ok(existsSync(join(dest, "cache/x.bin")));
  assert.ok(existsSync(join(dest, "big.iso.hsync-part")));
  assert.ok(existsSync(join(dest, "big.iso.hsync-journal")));
  assert.ok(!existsSync(join(dest, "gone.txt")));
  assert.equal(summary.deleted, 1);
});

Deno.test("--delete removes a link itself, never what it leads to", async () => {
  await using dir = await tempDir();
  await using server = listServer({ root: ROOT, lines: TREE });
  const dest = join(dir.path, "copy");
  const outside = join(dir.path, "outside");
  write(join(outside, "precious.txt"), "mine");
  Deno.mkdirSync(dest, { recursive: true });
  Deno.symlinkSync(outside, join(dest, "link-to-dir"));
  Deno.symlinkSync(join(outside, "precious.txt"), join(dest, "link-to-file"));
  const { summary } = await run(server.baseUrl, dest, { deleteExtra: true });
  assert.equal(summary.failed, 0, JSON.stringify(summary.failures));
  assert.ok(!existsSync(join(dest, "link-to-dir")));
  assert.ok(!existsSync(join(dest, "link-to-file")));
  assert.equal(Deno.readTextFileSync(join(outside, "precious.txt")), "mine");
  assert.equal(summary.deleted, 2);
});

Deno.test("--delete deletes nothing after an omission, and says so in one failure", async () => {
  await using dir = await tempDir();
  await using server = listServer({
    root: ROOT,
    lines: [
      ...TREE,
      { omitted: "unreadable", path: "secret", message: "Permission denied" },
    ],
  });
  const dest = join(dir.path, "copy");
  write(join(dest, "secret/data.txt"));
  write(join(dest, "extra.txt"));
  const { summary, events } = await run(server.baseUrl, dest, {
    deleteExtra: true,
  });
  assert.ok(existsSync(join(dest, "secret/data.txt")));
  assert.ok(existsSync(join(dest, "extra.txt")));
  assert.equal(summary.deleted, undefined);
  assert.deepEqual(summary.failures, [{
    path: ".",
    message: "Deleted nothing: 1 entry failed or was not transferred",
  }]);
  assert.ok(!events.some((e) => e.type === "deleted"));
});

Deno.test("--max-delete: more planned deletions than allowed deletes none, one failure", async () => {
  await using dir = await tempDir();
  await using server = listServer({ root: ROOT, lines: TREE });
  const dest = join(dir.path, "copy");
  write(join(dest, "extra.txt"));
  const { summary } = await run(server.baseUrl, dest, {
    deleteExtra: true,
    maxDelete: 0,
  });
  assert.ok(existsSync(join(dest, "extra.txt")));
  assert.deepEqual(summary.failures, [{
    path: ".",
    message: "Would delete 1 entries, more than --max-delete 0: deleted none",
  }]);
  // Within the bound, it deletes.
  const again = await run(server.baseUrl, dest, {
    deleteExtra: true,
    maxDelete: 1,
  });
  assert.equal(again.summary.failed, 0);
  assert.ok(!existsSync(join(dest, "extra.txt")));
});

Deno.test("--dry-run writes nothing into a missing destination and plans every file", async () => {
  await using dir = await tempDir();
  await using server = listServer({ root: ROOT, lines: TREE });
  const dest = join(dir.path, "copy");
  const { summary, events } = await run(server.baseUrl, dest, {
    dryRun: true,
  });
  assert.ok(!existsSync(dest));
  assert.equal(server.sent, 0);
  assert.equal(summary.failed, 0);
  const plans = events.filter((e) => e.type === "plan");
  assert.deepEqual(plans, [
    { type: "plan", action: "transfer", path: "a.txt", bytes: 3 },
    { type: "plan", action: "transfer", path: "keep/b.txt", bytes: 2 },
  ]);
});

Deno.test("--dry-run compares as a real run (skips identical files), plans deletions, and changes nothing", async () => {
  await using dir = await tempDir();
  const lines: FakeLine[] = [
    ...TREE,
    { path: "new", type: "dir" },
    { path: "new/n.txt", type: "file", content: bytesContent(text("n")) },
    { path: "link", type: "symlink", target: "a.txt" },
  ];
  await using server = listServer({ root: ROOT, lines });
  const dest = join(dir.path, "copy");
  write(join(dest, "a.txt"), "aaa");
  Deno.utimeSync(join(dest, "a.txt"), MTIME, new Date(MTIME));
  write(join(dest, "keep/b.txt"), "old");
  write(join(dest, "keep/b.txt.hsync-part"), "o");
  write(join(dest, "extra/e.txt"));
  Deno.chmodSync(join(dest, "a.txt"), 0o600);
  const before = snapshot(dest);
  const { summary, events } = await run(server.baseUrl, dest, {
    dryRun: true,
    deleteExtra: true,
    links: true,
    preserve: true,
  });
  assert.deepEqual(snapshot(dest), before);
  assert.equal(server.sent, 0);
  assert.equal(summary.failed, 0, JSON.stringify(summary.failures));
  assert.equal(summary.deleted, undefined);
  const plans = events.flatMap((e) =>
    e.type === "plan" ? [`${e.action} ${e.path}`] : []
  ).sort();
  assert.deepEqual(plans, [
    "delete extra",
    "delete extra/e.txt",
    "skip a.txt",
    "transfer keep/b.txt",
    "transfer link",
    "transfer new/n.txt",
  ]);
});

Deno.test("--dry-run --checksum reads and compares, and leaves the times alone", async () => {
  await using dir = await tempDir();
  await using server = listServer({ root: ROOT, lines: TREE });
  const dest = join(dir.path, "copy");
  write(join(dest, "a.txt"), "aaa");
  write(join(dest, "keep/b.txt"), "xx");
  const before = snapshot(dest);
  const { events } = await run(server.baseUrl, dest, {
    dryRun: true,
    checksum: true,
  });
  assert.deepEqual(snapshot(dest), before);
  const plans = events.flatMap((e) =>
    e.type === "plan" ? [`${e.action} ${e.path}`] : []
  ).sort();
  assert.deepEqual(plans, ["skip a.txt", "transfer keep/b.txt"]);
});

Deno.test("--dry-run of one file creates no directory for it", async () => {
  await using dir = await tempDir();
  await using server = listServer({ root: ROOT, lines: TREE });
  const dest = join(dir.path, "sub", "a.txt");
  const config = await loadConfig({ defaults, hsyncDir: "/nonexistent-hsync" });
  const events: PullEvent[] = [];
  await pull({
    baseUrl: server.baseUrl,
    remotePath: `${ROOT}/a.txt`,
    localPath: dest,
    settings: clientSettings(config, "hscp", {}),
    parallelFiles: 1,
    dryRun: true,
    onEvent: (e) => events.push(e),
  });
  assert.ok(!existsSync(join(dir.path, "sub")));
  assert.deepEqual(events.filter((e) => e.type === "plan"), [
    { type: "plan", action: "transfer", path: "a.txt", bytes: 3 },
  ]);
});

// ------------------------------------------------------------ several sources, remote globs

Deno.test("remote globs expand on the server into sources, in order; a plain path is kept as it is", async () => {
  await using server = listServer({
    root: ROOT,
    lines: TREE,
    globs: { "/srv/*.bam": ["/srv/a.bam", "/srv/b.bam"] },
  });
  const remote = new Remote({ baseUrl: server.baseUrl });
  assert.deepEqual(
    await expandSources(remote, ["/srv/*.bam", "/srv/data"], {
      maxEntries: 10,
    }),
    ["/srv/a.bam", "/srv/b.bam", "/srv/data"],
  );
  assert.ok(server.log.some((l) => l.startsWith("GET /v1/glob?pattern=")));
});

Deno.test("a remote glob that matches nothing or too much stops the run (exit 3); two matches with one name are a usage error", async () => {
  await using server = listServer({
    root: ROOT,
    lines: TREE,
    globs: {
      "/srv/*.none": [],
      "/srv/big/*": 413,
      "/srv/run*/x.log": ["/srv/run1/x.log", "/srv/run2/x.log"],
      "/srv/many/*": ["/srv/many/1", "/srv/many/2", "/srv/many/3"],
    },
  });
  const remote = new Remote({ baseUrl: server.baseUrl });
  const host = remote.host;
  const expand = (p: string) => expandSources(remote, [p], { maxEntries: 2 });
  await assert.rejects(expand("/srv/*.gone"), (e: Error) => {
    assert.ok(e instanceof ConnectError);
    assert.equal(exitCodeFor(e), 3);
    assert.equal(
      e.message,
      `Remote path "/srv/*.gone" matches nothing on ${host}`,
    );
    return true;
  });
  await assert.rejects(
    expand("/srv/*.none"),
    new RegExp(`matches nothing on ${host}`),
  );
  await assert.rejects(expand("/srv/big/*"), (e: Error) => {
    assert.equal(exitCodeFor(e), 3);
    assert.match(e.message, /--max-entries/);
    return true;
  });
  await assert.rejects(expand("/srv/many/*"), (e: Error) => {
    assert.equal(exitCodeFor(e), 3);
    assert.match(e.message, /matches more than 2 entries.*--max-entries/);
    return true;
  });
  await assert.rejects(expand("/srv/run*/x.log"), (e: Error) => {
    assert.ok(e instanceof UsageError);
    assert.match(e.message, /same name "x.log"/);
    return true;
  });
});

Deno.test("several sources go inside the destination one after another, with one summary and growing totals", async () => {
  const seen: PullOptions[] = [];
  const events: PullEvent[] = [];
  const fake = (o: PullOptions): Promise<PullSummary> => {
    seen.push(o);
    o.onEvent?.({ type: "total", files: 2, bytes: 10, final: true });
    o.onEvent?.({ type: "failure", path: ".", message: "Deleted nothing" });
    return Promise.resolve({
      files: 2,
      bytes: 10,
      seconds: 1,
      skipped: 1,
      failed: 1,
      failures: [{ path: ".", message: "Deleted nothing" }],
      omissions: [{ path: "x", message: "unreadable" }],
      withheld: 1,
      deleted: 3,
      resumed: 4,
    });
  };
  const config = await loadConfig({ defaults, hsyncDir: "/nonexistent-hsync" });
  const summary = await pullSources(
    {
      baseUrl: "http://127.0.0.1:1",
      localPath: "out",
      settings: clientSettings(config, "hscp", {}),
      parallelFiles: 1,
      deleteExtra: true,
      onEvent: (e) => events.push(e),
    },
    ["/srv/a", "/srv/b/"],
    fake,
  );
  assert.deepEqual(seen.map((o) => [o.remotePath, o.localPath]), [
    ["/srv/a", "out/"],
    ["/srv/b/", "out/"],
  ]);
  assert.ok(seen.every((o) => o.deleteExtra));
  assert.deepEqual(events.filter((e) => e.type === "total"), [
    { type: "total", files: 2, bytes: 10, final: false },
    { type: "total", files: 4, bytes: 20, final: true },
  ]);
  assert.deepEqual(
    events.flatMap((e) => e.type === "failure" ? [e.path] : []),
    ["a", "b"],
  );
  assert.deepEqual({ ...summary, seconds: 0 }, {
    files: 4,
    bytes: 20,
    seconds: 0,
    skipped: 2,
    failed: 2,
    failures: [
      { path: "a", message: "Deleted nothing" },
      { path: "b", message: "Deleted nothing" },
    ],
    omissions: [
      { path: "x", message: "unreadable" },
      { path: "x", message: "unreadable" },
    ],
    withheld: 2,
    deleted: 6,
    resumed: 8,
  });
  assert.ok(!isMultiSource(["/srv/a"]));
  assert.ok(isMultiSource(["/srv/a", "/srv/b"]));
  assert.ok(isMultiSource(["/srv/*.bam"]));
});
