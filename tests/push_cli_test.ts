/** The real hsync pushing (under its own permission set) to a fake server that implements the push protocol: exit codes, one-line errors, nothing sent on bad input. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { freePort, runClient, type RunResult, tempDir } from "./_programs.ts";
import { type PushServer, pushServer } from "./_push_server.ts";

async function hsync(
  args: string[],
  hsyncDir: string,
): Promise<RunResult> {
  return await runClient(args, { HSYNC_DIR: hsyncDir });
}

/** stderr's lines, without Deno's own warnings. */
function lines(r: RunResult): string[] {
  return r.stderr.split("\n").filter((l) => l !== "");
}

async function setup(
  dir: string,
): Promise<{ src: string; dst: string; hsyncDir: string }> {
  const src = join(dir, "src");
  const dst = join(dir, "dst");
  const hsyncDir = join(dir, "hsync-dir");
  for (const d of [src, dst, hsyncDir]) await Deno.mkdir(d);
  return { src, dst, hsyncDir };
}

Deno.test("hsync LOCAL HOST:PORT:/dir/ pushes a tree, prints the summary line and exits 0; a refused file makes it exit 2", async () => {
  await using dir = await tempDir();
  const { src, dst, hsyncDir } = await setup(dir.path);
  await Deno.mkdir(join(src, "run42/sub"), { recursive: true });
  await Deno.writeTextFile(join(src, "run42/sub/a.txt"), "hello");
  await Deno.writeFile(
    join(src, "run42/big.bin"),
    new Uint8Array(700_000).fill(3),
  );
  await using server = pushServer({ writable: dst });

  let r = await hsync([
    join(src, "run42"),
    `127.0.0.1:${server.port}:${dst}/`,
  ], hsyncDir);
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    lines(r).at(-1) ?? "",
    /^hsync: 2 files, 683\.6 KiB in [\d.]+ s \([\d.]+ MB\/s\), 0 skipped, 0 failed$/,
  );
  assert.equal(await Deno.readTextFile(join(dst, "run42/sub/a.txt")), "hello");

  await Deno.writeTextFile(join(src, "run42/refuse-me"), "no");
  r = await hsync([
    "--push",
    "-i",
    join(src, "run42"),
    "-o",
    join(dst, "run42"),
    "-host",
    "127.0.0.1",
    "-p",
    String(server.port),
  ], hsyncDir);
  assert.equal(r.code, 2, r.stderr);
  assert.deepEqual(lines(r).slice(-4), [
    `hsync: failed: run42/refuse-me: Cannot write "${
      join(dst, "run42/refuse-me")
    }": the rules refuse it`,
    lines(r).at(-3),
    "hsync: failed (1):",
    "hsync:   run42/refuse-me",
  ]);
  assert.match(lines(r).at(-3)!, /, 2 skipped, 1 failed$/);
});

Deno.test("bad local paths get one line and exit code 1, and nothing reaches the server", async () => {
  await using dir = await tempDir();
  const { src, dst, hsyncDir } = await setup(dir.path);
  await Deno.mkdir(join(src, "a/x"), { recursive: true });
  await Deno.mkdir(join(src, "b/x"), { recursive: true });
  const fifo = join(src, "fifo");
  const made = await new Deno.Command("mkfifo", { args: [fifo] }).output();
  assert.ok(made.success);
  await using server = pushServer({ writable: dst });
  const remote = `127.0.0.1:${server.port}:${dst}/`;
  const cases: Array<[string[], string]> = [
    [
      [join(src, "missing"), remote],
      `hsync: Local path "${join(src, "missing")}" does not exist`,
    ],
    [
      [fifo, remote],
      `hsync: Local path "${fifo}" is not a regular file or directory`,
    ],
  ];
  for (const [args, message] of cases) {
    const r = await hsync([...args, "--quiet"], hsyncDir);
    assert.equal(r.code, 1, r.stderr);
    assert.deepEqual(lines(r), [message]);
  }
  assert.deepEqual(server.log, []);
});

Deno.test("an unreachable server (exit code 4), a server that takes no writes and a refused key (exit code 3) get one line", async () => {
  await using dir = await tempDir();
  const { src, dst, hsyncDir } = await setup(dir.path);
  await Deno.writeTextFile(join(src, "f.txt"), "data");
  const port = freePort();
  let r = await hsync(
    [join(src, "f.txt"), `127.0.0.1:${port}:${dst}/`],
    hsyncDir,
  );
  assert.equal(r.code, 4, r.stderr);
  assert.deepEqual(lines(r), [
    `hsync: Cannot reach 127.0.0.1:${port}: connection refused`,
  ]);

  const servers: Array<[PushServer, string]> = [
    [
      pushServer({ writable: dst, readOnly: true }),
      `Refused by HOST: Cannot write "${dst}": this server accepts no writes (no Writable_path)`,
    ],
    [
      pushServer({
        writable: dst,
        hook: (_url, request) =>
          request.method === "GET" ? undefined : Response.json({
            error: "unauthorized",
            message: "Authentication required",
          }, { status: 401 }),
      }),
      `HOST requires a key: run "hsync keygen" and add the public line of "${
        join(hsyncDir, "id_ed25519.pub")
      }" to the server's Authorized_keys`,
    ],
  ];
  for (const [server, message] of servers) {
    await using _ = server;
    r = await hsync([
      join(src, "f.txt"),
      `127.0.0.1:${server.port}:${dst}/`,
      "--quiet",
    ], hsyncDir);
    assert.equal(r.code, 3, r.stderr);
    assert.deepEqual(lines(r), [
      `hsync: ${message.replace("HOST", `127.0.0.1:${server.port}`)}`,
    ]);
    assert.deepEqual(server.puts, []);
  }
  assert.deepEqual([...Deno.readDirSync(dst)], []);
});

Deno.test("a FIFO in a pushed tree is named in a `not transferred` line and hsync exits 2; the rest arrives", async () => {
  await using dir = await tempDir();
  const { src, dst, hsyncDir } = await setup(dir.path);
  await Deno.mkdir(join(src, "run42"));
  await Deno.writeTextFile(join(src, "run42/a.txt"), "hello");
  const made = await new Deno.Command("mkfifo", {
    args: [join(src, "run42/pipe")],
  }).output();
  assert.ok(made.success);
  await using server = pushServer({ writable: dst });
  const r = await hsync([
    join(src, "run42"),
    `127.0.0.1:${server.port}:${dst}/`,
  ], hsyncDir);
  assert.equal(r.code, 2, r.stderr);
  assert.deepEqual(lines(r).slice(0, -1), [
    "hsync: not transferred: run42/pipe: It is a FIFO: only regular files, directories and symbolic links are pushed",
  ]);
  assert.match(lines(r).at(-1)!, /, 0 failed, 1 not transferred$/);
  assert.equal(await Deno.readTextFile(join(dst, "run42/a.txt")), "hello");
});

Deno.test("two local sources with the same name exit 1 before any request, however the paths are written", async () => {
  await using dir = await tempDir();
  const { src, dst, hsyncDir } = await setup(dir.path);
  await Deno.mkdir(join(src, "a/x"), { recursive: true });
  await Deno.mkdir(join(src, "b/x"), { recursive: true });
  await using server = pushServer({ writable: dst });
  const remote = `127.0.0.1:${server.port}:${dst}/`;
  const [ax, bx] = [join(src, "a/x"), join(src, "b/x")];
  const usage = (first: string, second: string) => [
    `hsync: "${first}" and "${second}" have the same name "x": each source goes inside the destination under its own name, so give them one at a time`,
    "Try 'hsync --help' for more information.",
  ];
  const cases: Array<[string[], string[]]> = [
    [[ax, bx, remote], usage(ax, bx)],
    [[ax, `${bx}/`, remote], usage(ax, `${bx}/`)],
    [["--push", "-i", ax, "-i", bx, "-o", `${dst}/`, "-p", "1"], usage(ax, bx)],
    // Only resolved does "a/x/." show its name: refused all the same.
    [[`${ax}/.`, bx, remote], [
      `hsync: Local paths "${ax}/." and "${bx}" have the same name "x": they would go to the same remote path`,
    ]],
  ];
  for (const [args, expected] of cases) {
    const r = await hsync([...args, "--quiet"], hsyncDir);
    assert.equal(r.code, 1, r.stderr);
    assert.deepEqual(lines(r), expected);
  }
  assert.deepEqual(server.log, []);
  assert.deepEqual([...Deno.readDirSync(dst)], []);
});

Deno.test("hsync --dry-run prints one `would ...` line per entry on stdout, sends no write and exits 0", async () => {
  await using dir = await tempDir();
  const { src, dst, hsyncDir } = await setup(dir.path);
  await Deno.mkdir(join(src, "run/sub"), { recursive: true });
  await Deno.mkdir(join(dst, "run"));
  await Deno.writeTextFile(join(src, "run/sub/a.txt"), "hello");
  await Deno.writeTextFile(join(src, "run/same.txt"), "same");
  await Deno.writeTextFile(join(dst, "run/same.txt"), "same");
  const t = new Date(1_600_000_000_000);
  await Deno.utime(join(src, "run/same.txt"), t, t);
  await Deno.utime(join(dst, "run/same.txt"), t, t);
  await Deno.writeTextFile(join(dst, "run/extra.txt"), "extra");
  const fifo = join(src, "run/pipe");
  assert.ok(
    (await new Deno.Command("mkfifo", { args: [fifo] }).output())
      .success,
  );
  await using server = pushServer({ writable: dst });
  const remote = `127.0.0.1:${server.port}:${dst}/`;
  let r = await hsync(
    ["--dry-run", "--delete", join(src, "run"), remote],
    hsyncDir,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stdout.split("\n").filter((l) => l !== "").sort(), [
    "would skip run/same.txt",
    "would transfer run/sub/a.txt (5 B)",
  ]);
  // The FIFO is not transferred: a real run would delete nothing, and says so.
  assert.deepEqual(lines(r).slice(0, -3), [
    "hsync: failed: .: Would delete nothing: 0 failed, 1 not transferred (--delete deletes only after a complete transfer)",
    "hsync: not transferred: run/pipe: It is a FIFO: only regular files, directories and symbolic links are pushed",
  ]);
  assert.deepEqual(lines(r).slice(-2), ["hsync: failed (1):", "hsync:   ."]);
  await Deno.remove(fifo);
  r = await hsync(
    ["--dry-run", "--delete", join(src, "run"), remote],
    hsyncDir,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stdout.split("\n").filter((l) => l !== "").sort(), [
    "would delete run/extra.txt",
    "would skip run/same.txt",
    "would transfer run/sub/a.txt (5 B)",
  ]);
  assert.deepEqual(server.writes(), []);
  assert.deepEqual(
    [...Deno.readDirSync(join(dst, "run"))].map((e) => e.name)
      .sort(),
    ["extra.txt", "same.txt"],
  );
});

Deno.test("hsync --delete deletes on the server what the source does not have (`deleted` lines, counted); --max-delete 0 deletes none: one line, exit 2", async () => {
  await using dir = await tempDir();
  const { src, dst, hsyncDir } = await setup(dir.path);
  await Deno.mkdir(join(src, "run"));
  await Deno.writeTextFile(join(src, "run/a.txt"), "a");
  await Deno.mkdir(join(dst, "run/old"), { recursive: true });
  await Deno.writeTextFile(join(dst, "run/old/x.txt"), "x");
  await Deno.writeTextFile(join(dst, "run/keep.tmp"), "excluded");
  const excludes = join(dir.path, "excludes");
  await Deno.writeTextFile(excludes, "# scratch files\n*.tmp\n\n");
  await using server = pushServer({ writable: dst });
  const remote = `127.0.0.1:${server.port}:${dst}/`;
  let r = await hsync([
    "--delete",
    "--max-delete",
    "0",
    "--exclude-from",
    excludes,
    join(src, "run"),
    remote,
  ], hsyncDir);
  assert.equal(r.code, 2, r.stderr);
  assert.deepEqual(lines(r).slice(0, -3), [
    "hsync: failed: .: Would delete 2 entries, more than --max-delete 0: deleted none",
  ]);
  assert.match(lines(r).at(-3)!, /, 1 failed$/);
  assert.deepEqual(lines(r).slice(-2), ["hsync: failed (1):", "hsync:   ."]);
  assert.deepEqual(server.deleted, []);

  r = await hsync(
    ["--delete", "--exclude-from", excludes, join(src, "run"), remote],
    hsyncDir,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(lines(r).slice(0, -1), [
    "hsync: deleted run/old/x.txt",
    "hsync: deleted run/old",
  ]);
  assert.match(lines(r).at(-1)!, /, 0 failed, 2 deleted$/);
  assert.deepEqual(
    [...Deno.readDirSync(join(dst, "run"))].map((e) => e.name).sort(),
    ["a.txt", "keep.tmp"],
  );
});

Deno.test("hsync --exclude-regex and --files-from select what a push sends", async () => {
  await using dir = await tempDir();
  const { src, dst, hsyncDir } = await setup(dir.path);
  await Deno.mkdir(join(src, "run/logs"), { recursive: true });
  for (const name of ["a.txt", "b.bak", "logs/1.log", "logs/2.txt"]) {
    await Deno.writeTextFile(join(src, "run", name), name);
  }
  await using server = pushServer({ writable: dst });
  const remote = `127.0.0.1:${server.port}:${dst}/`;
  let r = await hsync([
    "--exclude-regex",
    "\\.(bak|log)$",
    "--quiet",
    join(src, "run"),
    remote,
  ], hsyncDir);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(server.bundled.sort(), [
    "run/a.txt",
    "run/logs/2.txt",
  ]);
  const list = join(dir.path, "list");
  await Deno.writeTextFile(list, "b.bak\nlogs/1.log\n");
  server.bundled.length = 0;
  r = await hsync([
    "--files-from",
    list,
    "--quiet",
    join(src, "run"),
    `127.0.0.1:${server.port}:${dst}/other/`,
  ], hsyncDir);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(server.bundled.sort(), ["run/b.bak", "run/logs/1.log"]);
});
