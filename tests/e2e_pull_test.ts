/** End-to-end: the real hsync pulling from the real hsyncd, under their deno.json permission sets. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { makeSampleTree } from "../scripts/sample_data.ts";
import {
  freePort,
  runClient,
  snapshotTree,
  startServer,
  tempDir,
} from "./_programs.ts";

function assertSameTree(
  want: Map<string, string | Uint8Array>,
  got: Map<string, string | Uint8Array>,
) {
  assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
  for (const [path, value] of want) {
    const other = got.get(path)!;
    if (typeof value === "string") assert.equal(other, value, path);
    else {
      assert.ok(other instanceof Uint8Array, path);
      assert.equal(other.length, value.length, path);
      assert.ok(Buffer.from(other).equals(Buffer.from(value)), path);
    }
  }
}

Deno.test("hsync pulls a whole tree byte-identical, then a rerun skips every file", async (t) => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  const tree = await makeSampleTree(data, {
    bigFileBytes: 3 * 1024 * 1024 + 17,
    smallFiles: 40,
  });
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
    String(server.port),
  ];
  // Small parts so the big file really goes in parallel ranges.
  const clientIni = join(dir.path, "client.ini");
  await Deno.writeTextFile(
    clientIni,
    "[hscp]\nMin_part_size = 1M\nMax_part_num = 4\n",
  );

  await t.step("first pull copies everything", async () => {
    const r = await runClient([...args, "-c", clientIni]);
    assert.equal(r.code, 0, r.stderr);
    assertSameTree(await snapshotTree(data), await snapshotTree(out));
    assert.match(r.stderr, new RegExp(`${tree.files} files`));
  });

  await t.step("mtimes are copied so the rerun can compare them", async () => {
    const a = await Deno.stat(join(data, "big/run-0001.bin"));
    const b = await Deno.stat(join(out, "big/run-0001.bin"));
    assert.equal(b.mtime?.getTime(), a.mtime?.getTime());
  });

  await t.step(
    "a rerun skips every identical file and rewrites none",
    async () => {
      const before = (await Deno.stat(join(out, "name with spaces.log"))).ino;
      const r = await runClient([...args, "-c", clientIni]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, new RegExp(`${tree.files} skipped`));
      assert.equal(
        (await Deno.stat(join(out, "name with spaces.log"))).ino,
        before,
      );
    },
  );

  await t.step("no temporary files are left", async () => {
    const snap = await snapshotTree(out);
    assert.deepEqual([...snap.keys()].filter((p) => p.includes(".hsync-")), []);
  });
});

Deno.test("the scp-style form pulls a file into an existing directory and to a new name", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  await Deno.writeTextFile(join(data, "report é.txt"), "hello\n".repeat(1000));
  await using server = await startServer({
    dir: dir.path,
    config: `[hsyncd]\nOnly_allowed_path = ${data}\n`,
  });
  const into = join(dir.path, "into");
  await Deno.mkdir(into);
  const remote = `127.0.0.1:${server.port}:${data}/report é.txt`;
  let r = await runClient([remote, into, "--quiet"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(
    await Deno.readTextFile(join(into, "report é.txt")),
    "hello\n".repeat(1000),
  );

  r = await runClient([remote, join(dir.path, "renamed.txt"), "--quiet"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(
    await Deno.readTextFile(join(dir.path, "renamed.txt")),
    "hello\n".repeat(1000),
  );

  // A whole directory, scp-style, into a path ending in "/" that does not exist yet.
  r = await runClient([
    `127.0.0.1:${server.port}:${data}`,
    join(dir.path, "fresh") + "/",
    "--quiet",
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(
    await Deno.readTextFile(join(dir.path, "fresh/data/report é.txt")),
    "hello\n".repeat(1000),
  );

  // scp's rule: a directory pulled to an existing directory lands inside it.
  r = await runClient([`127.0.0.1:${server.port}:${data}`, into, "--quiet"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(
    await Deno.readTextFile(join(into, "data/report é.txt")),
    "hello\n".repeat(1000),
  );

  // The -o form names the copy itself, so the same command run twice syncs one copy.
  for (let i = 0; i < 2; i++) {
    r = await runClient([
      "-i",
      data,
      "-o",
      join(dir.path, "mirror"),
      "-p",
      String(server.port),
      "--quiet",
    ]);
    assert.equal(r.code, 0, r.stderr);
  }
  assert.equal(
    await Deno.readTextFile(join(dir.path, "mirror/report é.txt")),
    "hello\n".repeat(1000),
  );
  await assert.rejects(() => Deno.stat(join(dir.path, "mirror/data")));
});

Deno.test("hsync echo-config prints the files searched and every effective value", async () => {
  await using dir = await tempDir();
  const hsyncDir = join(dir.path, "h");
  await Deno.mkdir(hsyncDir);
  await Deno.writeTextFile(
    join(hsyncDir, "hsync.ini"),
    "[hscp]\nMax_part_num = 3\nBogus = 1\n",
  );
  const r = await runClient(["echo-config"], { HSYNC_DIR: hsyncDir });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /\(built-in defaults\)/);
  assert.match(r.stdout, new RegExp(`${hsyncDir}/hsync.ini`));
  assert.match(r.stdout, /\[hscp\][^[]*Max_part_num = 3 {2}; from /);
  assert.match(r.stdout, /\[hsyncd\][^[]*Port = 10808/);
  assert.match(r.stderr, /Unknown key "Bogus" in \[hscp\]/);
});

Deno.test("bad input gets one clear line and the documented exit code", async (t) => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  await Deno.writeTextFile(join(data, "ok.txt"), "ok");
  await Deno.writeTextFile(join(data, "server.key"), "SECRET-KEY-BYTES");
  await using server = await startServer({
    dir: dir.path,
    config: `[hsyncd]\nOnly_allowed_path = ${data}\n`,
  });
  const env = { HSYNC_DIR: join(dir.path, "client-home") };
  const p = String(server.port);
  const cases: Array<
    { name: string; args: string[]; code: number; line: RegExp }
  > = [
    {
      name: "unknown flag",
      args: ["--frobnicate"],
      code: 1,
      line: /Unknown option "--frobnicate"/,
    },
    {
      name: "missing -i",
      args: ["-o", "x"],
      code: 1,
      line: /Missing the remote path/,
    },
    {
      name: "port out of range",
      args: ["-i", "/x", "-p", "70000"],
      code: 1,
      line: /^hsync: -p needs a port number \(1-65535\), got "70000"$/,
    },
    {
      name: "unreachable host",
      args: [
        "-i",
        data,
        "-host",
        "127.0.0.1",
        "-p",
        String(freePort()),
        "-o",
        join(dir.path, "u"),
      ],
      code: 4,
      line: /127\.0\.0\.1/,
    },
    {
      name: "remote path that does not exist",
      args: [
        "-i",
        `${data}/nope`,
        "-host",
        "127.0.0.1",
        "-p",
        p,
        "-o",
        join(dir.path, "n"),
      ],
      code: 3,
      line: /nope/,
    },
    {
      name: "refused remote path",
      args: [
        "-i",
        "/etc/hostname",
        "-host",
        "127.0.0.1",
        "-p",
        p,
        "-o",
        join(dir.path, "r"),
      ],
      code: 3,
      line: /\/etc\/hostname/,
    },
    {
      name: "refused file name",
      args: [
        "-i",
        `${data}/server.key`,
        "-host",
        "127.0.0.1",
        "-p",
        p,
        "-o",
        join(dir.path, "k"),
      ],
      code: 3,
      line: /server\.key/,
    },
    {
      name: "unwritable output",
      args: [
        "-i",
        `${data}/ok.txt`,
        "-host",
        "127.0.0.1",
        "-p",
        p,
        "-o",
        "/proc/hsync-cannot-write/ok.txt",
      ],
      code: 1,
      line: /\/proc\/hsync-cannot-write/,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const r = await runClient(c.args, env);
      assert.equal(r.code, c.code, `${c.name}: ${r.stderr}`);
      const lines = r.stderr.trim().split("\n").filter((l) =>
        !l.startsWith("Try ")
      );
      assert.ok(
        lines.length >= 1 && lines.length <= 2,
        `${c.name}: ${r.stderr}`,
      );
      assert.match(lines[0], c.line);
      assert.doesNotMatch(r.stderr, /^\s+at /m, "no stack trace");
    });
  }
  await t.step("no partial file under a final name", async () => {
    for (const name of ["u", "n", "r", "k"]) {
      await assert.rejects(() => Deno.stat(join(dir.path, name)));
    }
  });
});

Deno.test("a big file: Max_part_num given in a file is that many ranges at once; left at its default, streams start at one and grow only when measured to pay (no address decides)", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  const bytes = new Uint8Array(4 * 1024 * 1024 + 5);
  for (let i = 0; i < bytes.length; i += 4096) bytes[i] = (i / 4096) & 0xff;
  await Deno.writeFile(join(data, "big.bin"), bytes);
  await using server = await startServer({
    dir: dir.path,
    config: `[hsyncd]\nOnly_allowed_path = ${data}\n`,
  });
  /** The bodies of big.bin hsyncd has sent so far. */
  const fileGets = () =>
    server.stderr().split("\n").filter((line) =>
      line.includes(" GET /v1/file?") && line.includes("big.bin")
    ).length;
  for (
    const [ini, host, want] of [
      // Its first 8 MiB asked for with the stat: the whole file, one GET
      // (two before: a piece of at least 4 MiB, then the 5 bytes left).
      ["[hscp]\nMin_part_size = 1M\n", "127.0.0.1", 1],
      ["[hscp]\nMin_part_size = 1M\nMax_part_num = 4\n", "127.0.0.1", 4],
    ] as const
  ) {
    const clientIni = join(dir.path, "client.ini");
    await Deno.writeTextFile(clientIni, ini);
    const out = join(dir.path, `out-${host}-${want}`);
    const before = fileGets();
    const r = await runClient([
      "-i",
      join(data, "big.bin"),
      "-o",
      out,
      "-host",
      host,
      "-p",
      String(server.port),
      "-c",
      clientIni,
      "--quiet",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await Deno.readFile(out), bytes);
    // The access line is written as the response starts; give it a moment.
    const deadline = Date.now() + 5000;
    while (fileGets() - before < want && Date.now() < deadline) {
      await new Promise((done) => setTimeout(done, 20));
    }
    assert.equal(fileGets() - before, want, `${host} with ${ini}`);
  }
});
