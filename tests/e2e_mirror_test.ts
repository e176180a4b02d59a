/** End-to-end (issue 20, pull side): --delete, --max-delete, --dry-run, several sources and remote globs, through the real hsync and hsyncd. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { existsSync, runClient, startServer, tempDir } from "./_programs.ts";

function write(path: string, content = "x"): void {
  Deno.mkdirSync(join(path, ".."), { recursive: true });
  Deno.writeTextFileSync(path, content);
}

/** Every entry below `root` with kind, size and mtime (links not followed). */
function snapshot(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string, rel: string) => {
    for (
      const e of [...Deno.readDirSync(dir)].sort((a, b) =>
        a.name < b.name ? -1 : 1
      )
    ) {
      const path = join(dir, e.name);
      const r = rel === "" ? e.name : `${rel}/${e.name}`;
      const info = Deno.lstatSync(path);
      out.push(
        `${r} ${
          info.isDirectory ? "d" : info.isSymlink ? "l" : "f"
        } ${info.size} ${info.mtime?.getTime()}`,
      );
      if (info.isDirectory) walk(path, r);
    }
  };
  walk(root, "");
  return out;
}

/** A server over `data` (made by `fill`), and the client's connection arguments. */
async function withServer(
  dir: string,
  fill: (data: string) => void,
): Promise<{ data: string; net: string[]; stop: () => Promise<number> }> {
  const data = join(dir, "data");
  fill(data);
  const server = await startServer({
    dir,
    config: `[hsyncd]\nOnly_allowed_path = ${data}\n`,
  });
  return {
    data,
    net: ["-host", "127.0.0.1", "-p", String(server.port)],
    stop: () => server.stop(),
  };
}

function tree(data: string): void {
  write(join(data, "a.txt"), "aaa");
  write(join(data, "sub/b.txt"), "bb");
  write(join(data, "runs/x.bam"), "x");
  write(join(data, "runs/y.bam"), "yy");
  write(join(data, "runs/notes.txt"), "n");
  write(join(data, "runs/run41/one.log"), "1");
  write(join(data, "runs/run42/two.log"), "2");
  write(join(data, "runs/deep/er/z.bam"), "z");
  write(join(data, "other/a.txt"), "other a");
}

Deno.test("e2e: --delete removes an extra file and directory, keeps an excluded one, removes a link without following it", async () => {
  await using dir = await tempDir();
  const s = await withServer(dir.path, tree);
  try {
    const out = join(dir.path, "out");
    write(join(out, "extra.txt"));
    write(join(out, "olddir/deep/x.txt"));
    write(join(out, "notes.log"), "mine");
    const outside = join(dir.path, "outside");
    write(join(outside, "precious.txt"), "keep me");
    Deno.symlinkSync(outside, join(out, "link"));
    const r = await runClient([
      ...s.net,
      "-i",
      s.data,
      "-o",
      out,
      "--delete",
      "--exclude",
      "*.log",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!existsSync(join(out, "extra.txt")));
    assert.ok(!existsSync(join(out, "olddir")));
    assert.ok(!existsSync(join(out, "link")));
    assert.equal(Deno.readTextFileSync(join(out, "notes.log")), "mine");
    assert.equal(
      Deno.readTextFileSync(join(outside, "precious.txt")),
      "keep me",
    );
    assert.equal(Deno.readTextFileSync(join(out, "sub/b.txt")), "bb");
    assert.match(r.stderr, /^hsync: deleted extra\.txt$/m);
    assert.match(r.stderr, /^hsync: deleted olddir$/m);
    assert.match(r.stderr, /, 5 deleted$/m);
  } finally {
    await s.stop();
  }
});

Deno.test("e2e: --max-delete 0 with one extra deletes nothing, says so in one line, exits 2", async () => {
  await using dir = await tempDir();
  const s = await withServer(dir.path, tree);
  try {
    const out = join(dir.path, "out");
    write(join(out, "extra.txt"));
    const r = await runClient([
      ...s.net,
      "-i",
      s.data,
      "-o",
      out,
      "--delete",
      "--max-delete",
      "0",
    ]);
    assert.equal(r.code, 2, r.stderr);
    assert.ok(existsSync(join(out, "extra.txt")));
    const failed = r.stderr.split("\n").filter((l) => l.includes("failed:"));
    assert.deepEqual(failed, [
      "hsync: failed: .: Would delete 1 entries, more than --max-delete 0: deleted none",
    ]);
    // The transfer itself completed.
    assert.equal(Deno.readTextFileSync(join(out, "a.txt")), "aaa");
  } finally {
    await s.stop();
  }
});

Deno.test("e2e: --dry-run writes nothing and prints would transfer / skip / delete on stdout, exit 0", async () => {
  await using dir = await tempDir();
  const s = await withServer(dir.path, tree);
  try {
    const out = join(dir.path, "out");
    const first = await runClient([...s.net, "-i", s.data, "-o", out]);
    assert.equal(first.code, 0, first.stderr);
    write(join(s.data, "new.txt"), "new!");
    write(join(s.data, "sub/b.txt"), "changed");
    write(join(out, "extra.txt"));
    const before = snapshot(out);
    const r = await runClient([
      ...s.net,
      "-i",
      s.data,
      "-o",
      out,
      "--dry-run",
      "--delete",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(snapshot(out), before);
    const lines = r.stdout.split("\n");
    assert.ok(lines.includes("would transfer new.txt (4 B)"), r.stdout);
    assert.ok(lines.includes("would transfer sub/b.txt (7 B)"), r.stdout);
    assert.ok(lines.includes("would skip a.txt"), r.stdout);
    assert.ok(lines.includes("would delete extra.txt"), r.stdout);
    // Into a destination that is not there: nothing is made.
    const fresh = join(dir.path, "fresh");
    const r2 = await runClient([
      ...s.net,
      "-i",
      s.data,
      "-o",
      fresh,
      "--dry-run",
    ]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.ok(!existsSync(fresh));
    assert.ok(r2.stdout.includes("would transfer a.txt (3 B)"), r2.stdout);
  } finally {
    await s.stop();
  }
});

Deno.test("e2e: two sources land inside the destination under their names; the same name twice exits 1 before anything moves", async () => {
  await using dir = await tempDir();
  const s = await withServer(dir.path, tree);
  try {
    const out = join(dir.path, "out");
    const r = await runClient([
      ...s.net,
      "-i",
      join(s.data, "sub"),
      "-i",
      join(s.data, "a.txt"),
      "-o",
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(Deno.readTextFileSync(join(out, "sub/b.txt")), "bb");
    assert.equal(Deno.readTextFileSync(join(out, "a.txt")), "aaa");
    assert.match(r.stderr, /hsync: 2 files, /);
    const port = s.net[3];
    const out2 = join(dir.path, "out2");
    const r2 = await runClient([
      `127.0.0.1:${port}:${join(s.data, "runs")}`,
      `127.0.0.1:${port}:${join(s.data, "sub")}`,
      out2,
    ]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(Deno.readTextFileSync(join(out2, "runs/x.bam")), "x");
    assert.equal(Deno.readTextFileSync(join(out2, "sub/b.txt")), "bb");

    const out3 = join(dir.path, "out3");
    const r3 = await runClient([
      ...s.net,
      "-i",
      join(s.data, "a.txt"),
      "-i",
      join(s.data, "other/a.txt"),
      "-o",
      out3,
    ]);
    assert.equal(r3.code, 1, r3.stderr);
    assert.match(r3.stderr, /same name "a\.txt"/);
    assert.ok(!existsSync(out3));
  } finally {
    await s.stop();
  }
});

// The server's /v1/glob is another part of issue 20: these pass once it is merged.
Deno.test("e2e: remote globs expand on the server: one level, run4?, ** , nothing matched (exit 3), two matches with one name (exit 1)", async () => {
  await using dir = await tempDir();
  const s = await withServer(dir.path, tree);
  try {
    const port = s.net[3];
    const bams = join(dir.path, "bams");
    const r = await runClient([
      `127.0.0.1:${port}:${s.data}/runs/*.bam`,
      `${bams}/`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual([...Deno.readDirSync(bams)].map((e) => e.name).sort(), [
      "x.bam",
      "y.bam",
    ]);

    const logs = join(dir.path, "logs");
    const r2 = await runClient([
      ...s.net,
      "-i",
      `${s.data}/runs/run4?/*.log`,
      "-o",
      logs,
    ]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.deepEqual([...Deno.readDirSync(logs)].map((e) => e.name).sort(), [
      "one.log",
      "two.log",
    ]);

    const all = join(dir.path, "all");
    const r3 = await runClient([
      ...s.net,
      "-i",
      `${s.data}/runs/**/*.bam`,
      "-o",
      all,
    ]);
    assert.equal(r3.code, 0, r3.stderr);
    assert.deepEqual([...Deno.readDirSync(all)].map((e) => e.name).sort(), [
      "x.bam",
      "y.bam",
      "z.bam",
    ]);

    const none = await runClient([
      ...s.net,
      "-i",
      `${s.data}/runs/*.cram`,
      "-o",
      join(dir.path, "none"),
    ]);
    assert.equal(none.code, 3, none.stderr);
    assert.match(none.stderr, /matches nothing on 127\.0\.0\.1:/);
    assert.ok(!existsSync(join(dir.path, "none")));

    const twice = await runClient([
      ...s.net,
      "-i",
      `${s.data}/**/a.txt`,
      "-o",
      join(dir.path, "twice"),
    ]);
    assert.equal(twice.code, 1, twice.stderr);
    assert.match(twice.stderr, /same name "a\.txt"/);
    assert.ok(!existsSync(join(dir.path, "twice")));

    // --max-entries bounds a glob on the server too: it stops at the limit.
    const many = await runClient([
      ...s.net,
      "-i",
      `${s.data}/runs/*.bam`,
      "-o",
      join(dir.path, "many"),
      "--max-entries",
      "1",
    ]);
    assert.equal(many.code, 3, many.stderr);
    assert.match(many.stderr, /than --max-entries 1 allows/);
    assert.ok(!existsSync(join(dir.path, "many")));
  } finally {
    await s.stop();
  }
});

Deno.test("e2e: a push with --delete removes what the server has beyond the local tree (an excluded file and a link's target survive); --max-delete 0 and --dry-run write nothing", async () => {
  await using dir = await tempDir();
  const local = join(dir.path, "run42");
  write(join(local, "a.txt"), "aaa");
  write(join(local, "sub/b.txt"), "bb");
  const incoming = join(dir.path, "incoming");
  const copy = join(incoming, "run42");
  write(join(copy, "extra.txt"), "old");
  write(join(copy, "olddir/deep/x.txt"), "old");
  write(join(copy, "keep.tmp"), "excluded: stays");
  write(join(dir.path, "elsewhere/target.txt"), "not ours");
  Deno.symlinkSync(
    join(dir.path, "elsewhere"),
    join(copy, "link_out"),
  );
  await using server = await startServer({
    dir: dir.path,
    config: `[hsyncd]\nWritable_path = ${incoming}\n`,
  });
  const net = `127.0.0.1:${server.port}:${incoming}/`;
  const env = { HSYNC_DIR: join(dir.path, "client") };
  const before = snapshot(copy);

  const dry = await runClient(
    [local, net, "--delete", "--exclude", "*.tmp", "--dry-run"],
    env,
  );
  assert.equal(dry.code, 0, dry.stderr);
  assert.deepEqual(snapshot(copy), before, "a dry run writes nothing");
  const planned = dry.stdout.split("\n").filter((l) => l !== "").sort();
  assert.ok(planned.includes("would delete run42/extra.txt"), dry.stdout);
  assert.ok(planned.includes("would delete run42/link_out"), dry.stdout);
  assert.ok(!planned.some((l) => l.includes("keep.tmp")), dry.stdout);

  const capped = await runClient(
    [local, net, "--delete", "--max-delete", "0", "--exclude", "*.tmp"],
    env,
  );
  assert.equal(capped.code, 2, capped.stderr);
  assert.match(capped.stderr, /more than --max-delete 0: deleted none/);
  assert.ok(existsSync(join(copy, "extra.txt")));

  const r = await runClient(
    [local, net, "--delete", "--exclude", "*.tmp"],
    env,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /, 5 deleted$/m);
  for (const gone of ["extra.txt", "olddir", "link_out"]) {
    assert.ok(!existsSync(join(copy, gone)), `${gone} was deleted`);
  }
  assert.equal(
    Deno.readTextFileSync(join(copy, "keep.tmp")),
    "excluded: stays",
  );
  assert.equal(
    Deno.readTextFileSync(join(dir.path, "elsewhere/target.txt")),
    "not ours",
  );
  assert.equal(Deno.readTextFileSync(join(copy, "sub/b.txt")), "bb");
});
