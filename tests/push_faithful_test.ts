/** Tests of a faithful push (issue 19) against the fake server: nothing left out in silence, modes by default, `-l`, `-H`, `-S`. */
import assert from "node:assert/strict";
import { lutimesSync } from "node:fs";
import { join } from "node:path";
import defaults from "../hsync.ini" with { type: "text" };
import { clientSettings, loadConfig } from "../lib/shared/config.ts";
import { RangeSet } from "../lib/shared/range_set.ts";
import { push, type PushOptions } from "../lib/client/push.ts";
import { sourceIdOf } from "../lib/client/push_context.ts";
import type { PullEvent } from "../lib/client/transfer.ts";
import { tempDir } from "./_programs.ts";
import {
  type PushServer,
  pushServer,
  type PushServerOptions,
} from "./_push_server.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

async function run(
  server: PushServer,
  sources: string[],
  remotePath: string,
  more: Partial<PushOptions> = {},
): Promise<{ summary: Awaited<ReturnType<typeof push>>; events: PullEvent[] }> {
  const config = await loadConfig({ defaults, hsyncDir: "/nonexistent-hsync" });
  const events: PullEvent[] = [];
  const summary = await push({
    baseUrl: server.baseUrl,
    sources,
    remotePath,
    settings: clientSettings(config, "hscp", {
      Data_timeout: "5",
      Max_timeout_retry: "2",
      Max_part_num: "4",
      Min_part_size: "256K",
    }),
    parallelFiles: 4,
    retryBaseMs: 1,
    session: "test-session",
    onEvent: (e) => events.push(e),
    ...more,
  });
  return { summary, events };
}

async function fixture(
  dir: string,
  more: Partial<PushServerOptions> = {},
): Promise<{ src: string; dst: string; server: PushServer }> {
  const src = join(dir, "src");
  const dst = join(dir, "dst");
  await Deno.mkdir(src);
  await Deno.mkdir(dst);
  return { src, dst, server: pushServer({ writable: dst, ...more }) };
}

async function sh(script: string, cwd: string): Promise<void> {
  const out = await new Deno.Command("sh", { args: ["-c", script], cwd })
    .output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
}

function omitted(events: PullEvent[]): string[] {
  return events.flatMap((e) =>
    e.type === "omitted" ? [`${e.path}: ${e.message}`] : []
  ).sort();
}

// ------------------------------------------------------------ omissions

Deno.test("what cannot be pushed is named with its reason, counted, and the rest arrives: a FIFO, a name that is not UTF-8, dangling and looping links", async () => {
  await using dir = await tempDir();
  const { src, dst, server } = await fixture(dir.path);
  await using _ = server;
  const root = join(src, "t");
  await Deno.mkdir(join(root, "sub"), { recursive: true });
  await Deno.writeTextFile(join(root, "sub/a.txt"), "a");
  await sh(
    `mkfifo fifo && touch "$(printf 'caf\\351.txt')" && ln -s nowhere dangling && ln -s self self && ln -s .. sub/up`,
    root,
  );
  const { summary, events } = await run(server, [root], dst + "/");
  assert.deepEqual(summary.failures, []);
  const expected = [
    "t/caf\uFFFD.txt: Its name is not valid UTF-8: it cannot be opened",
    "t/dangling: It is a symbolic link that leads nowhere",
    "t/fifo: It is a FIFO: only regular files, directories and symbolic links are pushed",
    "t/self: It is a symbolic link that leads round in a loop",
    "t/sub/up: It is a symbolic link that leads round in a loop",
  ];
  assert.deepEqual(omitted(events), expected);
  assert.deepEqual(
    summary.omissions?.map((o) => `${o.path}: ${o.message}`).sort(),
    expected,
  );
  assert.equal(summary.files, 1);
  assert.equal(await Deno.readTextFile(join(dst, "t/sub/a.txt")), "a");
  assert.deepEqual(
    [...Deno.readDirSync(join(dst, "t"))].map((e) => e.name),
    ["sub"],
  );
});

Deno.test({
  name:
    "a directory that cannot be read is named, not made an empty copy in silence",
  // root reads every directory.
  ignore: Deno.uid() === 0,
  async fn() {
    await using dir = await tempDir();
    const { src, dst, server } = await fixture(dir.path);
    await using _ = server;
    const root = join(src, "t");
    await Deno.mkdir(join(root, "closed"), { recursive: true });
    await Deno.writeTextFile(join(root, "closed/x"), "x");
    await Deno.chmod(join(root, "closed"), 0);
    try {
      const { summary } = await run(server, [root], dst + "/");
      assert.deepEqual(summary.failures, []);
      assert.equal(summary.omissions?.length, 1);
      assert.equal(summary.omissions?.[0].path, "t/closed");
      assert.match(summary.omissions![0].message, /^Cannot read directory /);
    } finally {
      await Deno.chmod(join(root, "closed"), 0o755);
    }
  },
});

// ------------------------------------------------------------ modes

Deno.test("without -P a file's and a directory's mode arrive masked by the server's umask: private stays private, scripts stay executable", async () => {
  await using dir = await tempDir();
  const { src, dst, server } = await fixture(dir.path, { umask: 0o022 });
  await using _ = server;
  const root = join(src, "t");
  await Deno.mkdir(join(root, "private"), { recursive: true });
  await Deno.mkdir(join(root, "shared"));
  await Deno.writeTextFile(join(root, "secret.txt"), "secret");
  await Deno.writeTextFile(join(root, "run.sh"), "#!/bin/sh\n");
  await Deno.writeFile(join(root, "big.key"), new Uint8Array(300 * KiB));
  await Deno.chmod(join(root, "secret.txt"), 0o600);
  await Deno.chmod(join(root, "run.sh"), 0o755);
  await Deno.chmod(join(root, "big.key"), 0o600);
  await Deno.chmod(join(root, "private"), 0o700);
  await Deno.chmod(join(root, "shared"), 0o777);
  await Deno.chmod(root, 0o750);
  const { summary } = await run(server, [root], dst + "/");
  assert.deepEqual(summary.failures, []);
  const mode = (p: string) => Deno.statSync(join(dst, "t", p)).mode! & 0o7777;
  assert.equal(mode("secret.txt"), 0o600);
  assert.equal(mode("run.sh"), 0o755);
  assert.equal(mode("big.key"), 0o600);
  assert.equal(mode("private"), 0o700);
  assert.equal(mode("shared"), 0o755);
  assert.equal(mode(""), 0o750);
  // The umask's bits are never asked for: the server's mask is kept.
  assert.ok(!server.log.some((l) => l.includes(`mode=${0o777}`)));
});

// ------------------------------------------------------------ -l

Deno.test("-l makes symbolic links as links (not followed, not descended), names unsafe ones, and --unsafe-links makes those too", async () => {
  await using dir = await tempDir();
  const { src, dst, server } = await fixture(dir.path);
  await using _ = server;
  const root = join(src, "t");
  await Deno.mkdir(join(root, "run_0423/deep"), { recursive: true });
  await Deno.writeFile(join(root, "run_0423/deep/data"), new Uint8Array(1000));
  await Deno.symlink("run_0423", join(root, "latest"));
  await Deno.symlink("deep/data", join(root, "run_0423/data.link"));
  await Deno.symlink("../../t.cfg", join(root, "run_0423/up"));
  await Deno.symlink("/etc/hostname", join(root, "abs"));

  let { summary, events } = await run(server, [root], dst + "/", {
    links: true,
  });
  assert.deepEqual(summary.failures, []);
  assert.deepEqual(omitted(events), [
    't/abs: It is a symbolic link to "/etc/hostname", which leads outside the copy (--unsafe-links makes it anyway)',
    't/run_0423/up: It is a symbolic link to "../../t.cfg", which leads outside the copy (--unsafe-links makes it anyway)',
  ]);
  assert.equal(Deno.readLinkSync(join(dst, "t/latest")), "run_0423");
  assert.equal(
    Deno.readLinkSync(join(dst, "t/run_0423/data.link")),
    "deep/data",
  );
  assert.ok(!server.log.some((l) => l.includes("latest%2F")));
  assert.equal(summary.files, 3);
  await assert.rejects(Deno.lstat(join(dst, "t/abs")));

  // The server still has the last word: 403 unsafe_link fails that entry only.
  server.log.length = 0;
  ({ summary, events } = await run(server, [root], dst + "/", {
    links: true,
    unsafeLinks: true,
  }));
  assert.deepEqual(omitted(events), []);
  assert.equal(Deno.readLinkSync(join(dst, "t/run_0423/up")), "../../t.cfg");
  assert.deepEqual(summary.failures, [{
    path: "t/abs",
    message: `Cannot make "${
      join(dst, "t/abs")
    }": its target leads outside the Writable_path`,
  }]);
});

Deno.test("-l pushed again leaves a link alone when the server has the same link, and replaces one with another text", async () => {
  await using dir = await tempDir();
  const { src, dst, server } = await fixture(dir.path);
  await using _ = server;
  const root = join(src, "t");
  await Deno.mkdir(join(root, "run_0423"), { recursive: true });
  await Deno.symlink("run_0423", join(root, "latest"));
  await Deno.symlink("run_0423", join(root, "other"));
  let { summary } = await run(server, [root], dst + "/", { links: true });
  assert.deepEqual(summary.failures, []);
  assert.equal(summary.files, 2);
  Deno.removeSync(join(dst, "t/other"));
  Deno.symlinkSync("elsewhere", join(dst, "t/other"));
  server.log.length = 0;
  ({ summary } = await run(server, [root], dst + "/", { links: true }));
  assert.deepEqual(summary.failures, []);
  assert.equal(summary.files, 1, "only the link with another text is made");
  assert.equal(summary.skipped, 1);
  const made = server.log.filter((l) => l.startsWith("POST /v1/symlink"));
  assert.equal(made.length, 1, made.join("\n"));
  assert.ok(made[0].includes("other"), made[0]);
  assert.equal(Deno.readLinkSync(join(dst, "t/other")), "run_0423");
  // A link's own time is kept: one given another time is made again.
  const when = new Date("2020-02-03T04:05:06.789Z");
  lutimesSync(join(root, "latest"), when, when);
  server.log.length = 0;
  ({ summary } = await run(server, [root], dst + "/", { links: true }));
  assert.deepEqual(summary.failures, []);
  assert.equal(summary.files, 1, "only the link with another time is made");
  assert.equal(
    Deno.lstatSync(join(dst, "t/latest")).mtime?.getTime(),
    when.getTime(),
  );
  // A time before 1970 cannot be given to a link (node's lutimes takes it
  // as now): it is not sent, and the link is not made again for it.
  const touch = new Deno.Command("touch", {
    args: ["-h", "-d", "1960-01-02T03:04:05Z", join(root, "other")],
  });
  if ((await touch.output()).success) {
    assert.ok(Deno.lstatSync(join(root, "other")).mtime!.getTime() < 0);
    ({ summary } = await run(server, [root], dst + "/", { links: true }));
    assert.deepEqual(summary.failures, []);
    server.log.length = 0;
    ({ summary } = await run(server, [root], dst + "/", { links: true }));
    assert.deepEqual(summary.failures, []);
    assert.equal(summary.files, 0, "nothing is made again");
    assert.deepEqual(
      server.log.filter((l) => l.startsWith("POST /v1/symlink")),
      [],
    );
  }
});

// ------------------------------------------------------------ -H

Deno.test("-H sends a file with several names once and links the others to it, small (bundled) and big (ranges) alike", async () => {
  await using dir = await tempDir();
  const { src, dst, server } = await fixture(dir.path);
  await using _ = server;
  const root = join(src, "t");
  await Deno.mkdir(join(root, "d"), { recursive: true });
  await Deno.writeTextFile(join(root, "a"), "small");
  await Deno.link(join(root, "a"), join(root, "b"));
  await Deno.link(join(root, "a"), join(root, "d/c"));
  await Deno.writeFile(join(root, "big1"), new Uint8Array(700 * KiB).fill(7));
  await Deno.link(join(root, "big1"), join(root, "big2"));
  const { summary } = await run(server, [root], dst + "/", { hardLinks: true });
  assert.deepEqual(summary.failures, []);
  assert.equal(summary.files, 5);
  const ino = (p: string) => Deno.statSync(join(dst, "t", p)).ino;
  assert.equal(ino("b"), ino("a"));
  assert.equal(ino("d/c"), ino("a"));
  assert.equal(ino("big2"), ino("big1"));
  assert.equal(server.bytesPut(), 700 * KiB);
  const links = server.log.filter((l) => l.startsWith("POST /v1/link"));
  assert.equal(links.length, 3);
  assert.equal(Deno.readTextFileSync(join(dst, "t/d/c")), "small");
});

Deno.test("-H: when the first name of a file fails, the next is sent as a file and the others link to it", async () => {
  await using dir = await tempDir();
  const { src, dst, server } = await fixture(dir.path);
  await using _ = server;
  const root = join(src, "t");
  await Deno.mkdir(root);
  // The fake refuses any bundled name with "refuse-me" in it.
  await Deno.writeTextFile(join(root, "a-refuse-me"), "x");
  await Deno.link(join(root, "a-refuse-me"), join(root, "b"));
  await Deno.link(join(root, "a-refuse-me"), join(root, "c"));
  const { summary } = await run(server, [root], dst + "/", { hardLinks: true });
  assert.deepEqual(summary.failures.map((f) => f.path), ["t/a-refuse-me"]);
  assert.equal(summary.files, 2);
  assert.equal(Deno.readTextFileSync(join(dst, "t/b")), "x");
  assert.equal(
    Deno.statSync(join(dst, "t/c")).ino,
    Deno.statSync(join(dst, "t/b")).ino,
  );
  assert.deepEqual(
    server.log.filter((l) => l.startsWith("POST /v1/link")).length,
    1,
  );
});

// ------------------------------------------------------------ -S

/** A 1 GiB file with a few bytes: at the start, in the middle, at the end. */
async function sparseFile(path: string): Promise<Array<[number, string]>> {
  const marks: Array<[number, string]> = [
    [0, "head"],
    [512 * MiB + 100, "middle"],
    [GiB - 4, "tail"],
  ];
  using file = await Deno.open(path, { write: true, create: true });
  await file.truncate(GiB);
  for (const [at, text] of marks) {
    await file.seek(at, Deno.SeekMode.Start);
    await file.write(new TextEncoder().encode(text));
  }
  return marks;
}

function readAt(path: string, at: number, length: number): string {
  using file = Deno.openSync(path);
  file.seekSync(at, Deno.SeekMode.Start);
  const buffer = new Uint8Array(length);
  file.readSync(buffer);
  return new TextDecoder().decode(buffer);
}

Deno.test("-S sends only the data of a 1 GiB sparse file (far under 1% of it), the commit names the holes, and it lands sparse", async () => {
  await using dir = await tempDir();
  const { src, dst, server } = await fixture(dir.path);
  await using _ = server;
  const local = join(src, "sparse.img");
  const marks = await sparseFile(local);
  const { summary } = await run(server, [local], dst + "/", { sparse: true });
  assert.deepEqual(summary.failures, []);
  assert.ok(server.bytesPut() < GiB / 1000, `${server.bytesPut()} bytes`);
  const remote = join(dst, "sparse.img");
  const info = Deno.statSync(remote);
  assert.equal(info.size, GiB);
  assert.ok(info.blocks! * 512 < MiB, `${info.blocks} blocks`);
  for (const [at, text] of marks) {
    assert.equal(readAt(remote, at, text.length), text);
  }
  const holes = server.commits.at(-1)?.holes ?? [];
  assert.equal(holes.length, 2);
  assert.equal(
    holes.reduce((n, [s, e]) => n + e - s, 0) + server.bytesPut(),
    GiB,
  );
});

Deno.test("-S resumed: the server's status is asked as usual and only missing data is sent", async () => {
  await using dir = await tempDir();
  const { src, dst, server } = await fixture(dir.path);
  await using _ = server;
  const local = join(src, "sparse.img");
  await sparseFile(local);
  const remote = join(dst, "sparse.img");
  // An earlier run sent the first block (with "head").
  const head = new Uint8Array(4096);
  head.set(new TextEncoder().encode("head"));
  await Deno.writeFile(remote + ".hsync-part", head);
  server.uploads.set(remote, {
    size: GiB,
    source: sourceIdOf(Deno.statSync(local)),
    held: new RangeSet([{ start: 0, end: 4096 }]),
    session: "earlier",
  });
  const { summary } = await run(server, [local], dst + "/", { sparse: true });
  assert.deepEqual(summary.failures, []);
  assert.ok(server.puts.every((p) => p.start >= 4096));
  assert.ok(server.bytesPut() < 64 * KiB, `${server.bytesPut()} bytes`);
  assert.ok(server.log.some((l) => l.startsWith("GET /v1/upload?")));
  assert.equal(readAt(remote, 0, 4), "head");
  assert.equal(readAt(remote, GiB - 4, 4), "tail");
});
