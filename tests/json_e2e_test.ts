/** `--json` end to end with the real programs: one object per line on standard output, the summary last, nothing else there. */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  freePort,
  runClient,
  spawnClient,
  startServer,
  tempDir,
  waitFor,
} from "./_programs.ts";

/** Every line of standard output parsed (a line that is not JSON fails the test); the last must be the summary. */
function events(stdout: string): Array<Record<string, unknown>> {
  assert.ok(stdout.endsWith("\n"), JSON.stringify(stdout));
  const lines = stdout.slice(0, -1).split("\n");
  const out = lines.map((line) => {
    const event = JSON.parse(line);
    assert.equal(typeof event.type, "string", line);
    return event;
  });
  assert.equal(out[out.length - 1].type, "summary", stdout);
  assert.equal(out.filter((e) => e.type === "summary").length, 1, stdout);
  return out;
}

/** A server allowing reads below `data` and pushes below `incoming`, signed by the key made in `home`. */
async function setup(dir: string) {
  const data = join(dir, "data");
  const incoming = join(dir, "incoming");
  const home = join(dir, "home");
  for (const d of [join(data, "sub"), incoming, home]) {
    await Deno.mkdir(d, { recursive: true });
  }
  await Deno.writeTextFile(join(data, "a.txt"), "hello\n");
  await Deno.writeTextFile(join(data, "b.txt"), "world\n");
  await Deno.writeTextFile(join(data, "sub/c.txt"), "c\n");
  const keygen = await runClient(["keygen"], { HSYNC_DIR: home });
  assert.equal(keygen.code, 0, keygen.stderr);
  await Deno.writeTextFile(join(dir, "keys"), keygen.stdout);
  const server = await startServer({
    dir,
    config: `[hsyncd]\nOnly_allowed_path = ${data}, ${incoming}\n` +
      `Writable_path = ${incoming}\nAuthorized_keys = ${join(dir, "keys")}\n` +
      `Forbidden_file = *.secret\n`,
  });
  return { data, incoming, home, server, at: `127.0.0.1:${server.port}` };
}

Deno.test("hsync --json: a pull tells each file, a failed one with its reason, and ends with the summary and exit code", async () => {
  await using dir = await tempDir();
  const { data, home, server } = await setup(dir.path);
  await using _ = server;
  const out = join(dir.path, "out");
  // A directory where b.txt must go: that file fails, the others complete.
  await Deno.mkdir(join(out, "b.txt/x"), { recursive: true });
  // -i/-o: the remote directory is copied to `out` itself.
  const args = ["-i", data, "-o", out, "-p", String(server.port), "--json"];
  const r = await runClient(args, { HSYNC_DIR: home });
  assert.equal(r.code, 2, r.stderr);
  const got = events(r.stdout);
  const files = got.filter((e) => e.type === "file");
  assert.deepEqual(
    files.filter((e) => e.status === "transferred").map((e) => e.path)
      .sort(),
    ["a.txt", "sub/c.txt"],
  );
  const failed = files.find((e) => e.status === "failed")!;
  assert.equal(failed.path, "b.txt");
  assert.match(String(failed.reason), /it is a directory/);
  const summary = got[got.length - 1];
  assert.equal(summary.exit_code, 2);
  assert.equal(summary.files, 2);
  assert.equal(summary.failed, 1);
  assert.equal(typeof summary.elapsed_ms, "number");
  // The people's lines stay on standard error.
  assert.match(r.stderr, /hsync: failed: b\.txt/);

  await Deno.remove(join(out, "b.txt"), { recursive: true });
  const again = await runClient(args, { HSYNC_DIR: home });
  assert.equal(again.code, 0, again.stderr);
  const second = events(again.stdout);
  assert.deepEqual(
    second.filter((e) => e.type === "file").map((e) => [e.path, e.status])
      .sort(),
    [["a.txt", "skipped"], ["b.txt", "transferred"], ["sub/c.txt", "skipped"]],
  );
  assert.equal(second[second.length - 1].exit_code, 0);
});

Deno.test("hsync --json: a push tells each file and a file the server refuses as failed", async () => {
  await using dir = await tempDir();
  const { incoming, home, server, at } = await setup(dir.path);
  await using _ = server;
  const src = join(dir.path, "src");
  await Deno.mkdir(src);
  await Deno.writeTextFile(join(src, "ok.txt"), "fine\n");
  await Deno.writeTextFile(join(src, "key.secret"), "no\n");
  const r = await runClient([src, `${at}:${incoming}/`, "--json"], {
    HSYNC_DIR: home,
  });
  assert.equal(r.code, 2, r.stderr);
  const got = events(r.stdout);
  const byPath = new Map(
    got.filter((e) => e.type === "file").map((e) => [e.path, e]),
  );
  assert.equal(byPath.get("src/ok.txt")?.status, "transferred", r.stdout);
  assert.equal(byPath.get("src/ok.txt")?.bytes, 5);
  assert.equal(byPath.get("src/key.secret")?.status, "failed", r.stdout);
  assert.equal(typeof byPath.get("src/key.secret")?.reason, "string");
  assert.equal(got[got.length - 1].exit_code, 2);
});

Deno.test("hsync --json --dry-run prints plan objects, and an error before any transfer is a summary with error and exit code", async () => {
  await using dir = await tempDir();
  const { data, home, server, at } = await setup(dir.path);
  await using _ = server;
  const dry = await runClient(
    [`${at}:${data}/`, join(dir.path, "out"), "--json", "--dry-run"],
    { HSYNC_DIR: home },
  );
  assert.equal(dry.code, 0, dry.stderr);
  const plan = events(dry.stdout).filter((e) => e.type === "plan");
  assert.deepEqual(
    plan.map((e) => [e.action, e.path, e.bytes]).sort(),
    [["transfer", "a.txt", 6], ["transfer", "b.txt", 6], [
      "transfer",
      "sub/c.txt",
      2,
    ]],
  );
  assert.doesNotMatch(dry.stdout, /would transfer/);

  const missing = await runClient(
    [`${at}:${data}/none`, join(dir.path, "out"), "--json"],
    { HSYNC_DIR: home },
  );
  assert.equal(missing.code, 3, missing.stderr);
  const [summary, ...rest] = events(missing.stdout);
  assert.deepEqual(rest, []);
  assert.equal(summary.exit_code, 3);
  assert.match(String(summary.error), /does not exist/);
  assert.equal(missing.stderr.trim().split("\n").length, 1, missing.stderr);

  const closed = await runClient(
    [`127.0.0.1:${freePort()}:/x`, join(dir.path, "out"), "--json"],
    { HSYNC_DIR: home },
  );
  assert.equal(closed.code, 4, closed.stderr);
  assert.equal(events(closed.stdout)[0].exit_code, 4);
});

Deno.test("hsync --sync --json tells an append with its offset, a new file, and ends with a summary on SIGTERM", async () => {
  await using dir = await tempDir();
  const { data, home, server, at } = await setup(dir.path);
  await using _ = server;
  const out = join(dir.path, "out");
  await using client = spawnClient(
    [`${at}:${data}/`, out, "--sync", "--json"],
    { HSYNC_DIR: home },
  );
  await waitFor(
    "following",
    () => client.stderr().includes("following into"),
  );
  await Deno.writeTextFile(join(data, "a.txt"), "more\n", { append: true });
  await waitFor(
    "the append",
    async () =>
      (await Deno.readTextFile(join(out, "a.txt"))) === "hello\nmore\n",
  );
  await Deno.writeTextFile(join(data, "new.txt"), "fresh\n");
  await waitFor("the new file", async () => {
    try {
      return (await Deno.readTextFile(join(out, "new.txt"))) === "fresh\n";
    } catch {
      return false;
    }
  });
  const r = await client.stop("SIGTERM");
  assert.equal(r.code, 0, r.stderr);
  const got = events(r.stdout);
  const append = got.find((e) => e.type === "append");
  assert.deepEqual(append, {
    type: "append",
    path: "a.txt",
    offset: 6,
    bytes: 5,
  });
  assert.ok(
    got.some((e) =>
      e.type === "file" && e.status === "new" && e.path === "new.txt"
    ),
    r.stdout,
  );
  assert.equal(got[got.length - 1].exit_code, 0);
  assert.equal(typeof got[got.length - 1].appended_bytes, "number");
});
