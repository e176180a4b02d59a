/** End-to-end: one hsync at a time writes into a destination directory (issue 21: two cron runs into one directory). */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  busyTree,
  hsyncLeftovers,
  runClient,
  snapshotTree,
  spawnClient,
  startServer,
  tempDir,
  waitFor,
} from "./_programs.ts";

/** Holds the lock of `dir` as another hsync would (flock on DIR/.hsync-lock naming a pid). */
async function holdLock(dir: string, pid: number): Promise<Deno.FsFile> {
  await Deno.mkdir(dir, { recursive: true });
  const file = await Deno.open(join(dir, ".hsync-lock"), {
    read: true,
    write: true,
    create: true,
  });
  await file.lock(true);
  await file.write(new TextEncoder().encode(`${pid}\n`));
  return file;
}

Deno.test("two hsync pulls of one tree into one directory at once: both exit 0, the copy is whole, nothing is fetched twice", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await busyTree(data);
  await using server = await startServer({
    dir: dir.path,
    config: `[hsyncd]\nOnly_allowed_path = ${data}\n`,
  });
  const out = join(dir.path, "out");
  const args = [
    "-i",
    data,
    "-o",
    out,
    "-host",
    "127.0.0.1",
    "-p",
    `${server.port}`,
  ];
  await using first = spawnClient(args);
  await using second = spawnClient(args);
  const [a, b] = await Promise.all([first.exited, second.exited]);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(b.code, 0, b.stderr);
  const want = await snapshotTree(data);
  const got = await snapshotTree(out);
  assert.deepEqual(hsyncLeftovers(got), []);
  assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
  for (const [path, bytes] of want) {
    assert.deepEqual(got.get(path), bytes, path);
  }
  // One of them copied everything; the other waited, then found every file complete.
  const copied = [a, b].filter((r) => /hsync: 151 files/.test(r.stderr));
  const skipped = [a, b].filter((r) =>
    /hsync: 0 files, 0 B .* 151 skipped/.test(r.stderr)
  );
  assert.equal(copied.length, 1, `${a.stderr}\n---\n${b.stderr}`);
  assert.equal(skipped.length, 1, `${a.stderr}\n---\n${b.stderr}`);
});

Deno.test("a pull into a directory another hsync writes into waits with one line, then copies", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  await Deno.writeTextFile(join(data, "a.txt"), "alpha\n");
  await using server = await startServer({
    dir: dir.path,
    config: `[hsyncd]\nOnly_allowed_path = ${data}\n`,
  });
  const out = join(dir.path, "out");
  const held = await holdLock(out, 4242);
  await using client = spawnClient([
    "-i",
    data,
    "-o",
    out,
    "-host",
    "127.0.0.1",
    "-p",
    `${server.port}`,
  ]);
  await waitFor(
    "the waiting line",
    () => /waiting for another/.test(client.stderr()),
  );
  // Nothing is written while the other holds the directory.
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(
    [...(await snapshotTree(out)).keys()],
    [".hsync-lock"],
  );
  held.close();
  const r = await client.exited;
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stderr.split("\n").filter((l) => /waiting/.test(l));
  assert.deepEqual(lines, [
    `hsync: waiting for another hsync writing into "${out}" (pid 4242)`,
  ]);
  assert.equal(await Deno.readTextFile(join(out, "a.txt")), "alpha\n");
  assert.deepEqual(hsyncLeftovers(await snapshotTree(out)), []);
});

Deno.test("--no-wait: a pull into a directory another hsync writes into stops at once with one line and exit code 1", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  await Deno.writeTextFile(join(data, "a.txt"), "alpha\n");
  await using server = await startServer({
    dir: dir.path,
    config: `[hsyncd]\nOnly_allowed_path = ${data}\n`,
  });
  // A single file locks the directory it goes into.
  const out = join(dir.path, "out");
  const held = await holdLock(out, 4343);
  try {
    const r = await runClient([
      `127.0.0.1:${server.port}:${data}/a.txt`,
      `${out}/`,
      "--no-wait",
    ]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(
      r.stderr.trim(),
      `hsync: Another hsync is writing into "${out}" (pid 4343); not waiting (--no-wait)`,
    );
    assert.deepEqual([...(await snapshotTree(out)).keys()], [".hsync-lock"]);
  } finally {
    held.close();
  }
});

Deno.test("a planted .hsync-lock symlink is never followed", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  await Deno.writeTextFile(join(data, "a.txt"), "alpha\n");
  await using server = await startServer({
    dir: dir.path,
    config: `[hsyncd]\nOnly_allowed_path = ${data}\n`,
  });
  const out = join(dir.path, "out");
  await Deno.mkdir(out);
  const victim = join(dir.path, "victim");
  await Deno.writeTextFile(victim, "keep me\n");
  await Deno.symlink(victim, join(out, ".hsync-lock"));
  const r = await runClient([
    "-i",
    data,
    "-o",
    out,
    "-host",
    "127.0.0.1",
    "-p",
    `${server.port}`,
  ]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /\.hsync-lock.*symbolic link/);
  assert.equal(await Deno.readTextFile(victim), "keep me\n");
});

Deno.test("the .hsync-lock of a pull writing into a served tree is not listed by hsyncd", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  await Deno.writeTextFile(join(data, "a.txt"), "alpha\n");
  // A pull writing into the served tree right now.
  const held = await holdLock(data, 4444);
  try {
    await using server = await startServer({
      dir: dir.path,
      config: `[hsyncd]\nOnly_allowed_path = ${data}\n`,
    });
    const out = join(dir.path, "out");
    const r = await runClient([
      "-i",
      data,
      "-o",
      out,
      "--delete",
      "-host",
      "127.0.0.1",
      "-p",
      `${server.port}`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual([...(await snapshotTree(out)).keys()], ["a.txt"]);
  } finally {
    held.close();
  }
});
