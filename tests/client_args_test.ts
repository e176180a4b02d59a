/** Tests of lib/client/client_args.ts: old and new flags, the scp-style form, and one-line usage errors. */
import assert from "node:assert/strict";
import { parseClientArgs, parseRemoteSpec } from "../lib/client/client_args.ts";
import { UsageError } from "../lib/shared/errors.ts";
import { renameFlags } from "../lib/shared/flag_values.ts";

Deno.test("the old flags -i -o -host -p -n keep working", () => {
  const c = parseClientArgs([
    "-i",
    "/data/x",
    "-o",
    "out",
    "-host",
    "10.0.0.1",
    "-p",
    "2000",
    "-n",
    "4",
  ]);
  assert.deepEqual(c.kind, "pull");
  if (c.kind !== "pull") return;
  assert.deepEqual([c.remotePath, c.localPath, c.host, c.port, c.parallel], [
    "/data/x",
    "out",
    "10.0.0.1",
    "2000",
    4,
  ]);
});

Deno.test("-host=IP and --host-ip IP are the same option", () => {
  for (
    const argv of [
      ["-i", "/a", "-host=::1"],
      ["-i", "/a", "--host-ip", "::1"],
      ["-i", "/a", "--host-ip=::1"],
    ]
  ) {
    const c = parseClientArgs(argv);
    assert.deepEqual(c.kind === "pull" && c.host, "::1");
  }
});

Deno.test("the scp-style form names host, port and path", () => {
  const c = parseClientArgs(["127.0.0.1:2000:/data/run 1", "./local/"]);
  assert.deepEqual(
    c.kind === "pull" && [c.host, c.port, c.remotePath, c.localPath],
    ["127.0.0.1", "2000", "/data/run 1", "./local/"],
  );
  assert.deepEqual(parseRemoteSpec("host:/p"), {
    host: "host",
    port: undefined,
    path: "/p",
  });
  assert.deepEqual(parseRemoteSpec("[::1]:9:/p"), {
    host: "::1",
    port: "9",
    path: "/p",
  });
  assert.deepEqual(parseRemoteSpec("relative/path"), undefined);
  assert.deepEqual(parseRemoteSpec("host:relative"), undefined);
});

Deno.test("-o defaults to the current directory; repeatable include and exclude", () => {
  const c = parseClientArgs([
    "-i",
    "/a",
    "--include",
    "*.fq",
    "--include",
    "*.bam",
    "--exclude",
    "tmp/**",
    "-P",
    "--quiet",
  ]);
  if (c.kind !== "pull") throw new Error("not a pull");
  assert.deepEqual(c.localPath, ".");
  assert.deepEqual(c.include, ["*.fq", "*.bam"]);
  assert.deepEqual(c.exclude, ["tmp/**"]);
  assert.deepEqual([c.preserve, c.quiet], [true, true]);
});

Deno.test("subcommands, help and version", () => {
  assert.deepEqual(parseClientArgs(["echo-config", "-c", "x.ini"]), {
    kind: "echo-config",
    configFile: "x.ini",
  });
  assert.deepEqual(parseClientArgs(["keygen", "--force"]), {
    kind: "keygen",
    force: true,
    configFile: undefined,
  });
  assert.deepEqual(parseClientArgs(["-h"]), { kind: "help" });
  assert.deepEqual(parseClientArgs(["--version"]), { kind: "version" });
  const s = parseClientArgs(["-i", "/a", "--sync", "--ignore-exists"]);
  assert.deepEqual(s.kind === "pull" && [s.sync, s.fromNow], [true, true]);
});

const BAD: Array<[string[], string]> = [
  [["--bogus"], 'Unknown option "--bogus"'],
  [["-x"], 'Unknown option "-x"'],
  [["-i"], 'Option "--input" needs a value'],
  [[], "Missing the remote path: give -i REMOTE_PATH or HOST:/remote/path"],
  [
    ["-i", "relative"],
    'Remote path "relative" is not absolute: it must start with /',
  ],
  [
    ["-i", "/a", "-n", "0"],
    '-n needs a positive number of files in parallel, got "0"',
  ],
  [
    ["-i", "/a", "-n", "x"],
    '-n needs a positive number of files in parallel, got "x"',
  ],
  [
    ["somefile", "out"],
    'Unexpected argument "somefile": expected HOST[:PORT]:/remote/path, or use -i',
  ],
  [
    ["-i", "/a", "h:/b"],
    'Both -i "/a" and "h:/b" name a remote path: give one',
  ],
  [["-i", "/a", "--from-now"], "--from-now only goes with --sync"],
  [
    ["-i", "/a", "--special-modes"],
    "--special-modes only goes with -P (--preserve)",
  ],
  [
    ["-i", "/a", "--max-entries", "0"],
    '--max-entries needs a positive number of entries, got "0"',
  ],
  [
    ["-i", "/a", "--max-entries", "1e6"],
    '--max-entries needs a positive number of entries, got "1e6"',
  ],
  [["-i", "/a", "--sync=yes"], 'Option "--sync" does not take a value'],
];

for (const [argv, message] of BAD) {
  Deno.test(`bad command line ${JSON.stringify(argv)} gets one line: ${message}`, () => {
    assert.throws(() => parseClientArgs(argv), (e: Error) => {
      assert.deepEqual(e instanceof UsageError, true);
      assert.deepEqual(e.message, message);
      return true;
    });
  });
}

Deno.test("-P keeps setuid, setgid, sticky and write-for-others bits only with --special-modes; --max-entries bounds a listing", () => {
  const plain = parseClientArgs(["-i", "/a", "-P"]);
  const special = parseClientArgs([
    "-i",
    "/a",
    "-P",
    "--special-modes",
    "--max-entries",
    "2500",
  ]);
  if (plain.kind !== "pull" || special.kind !== "pull") {
    throw new Error("not a pull");
  }
  assert.deepEqual([plain.specialModes, plain.maxEntries], [false, 10_000_000]);
  assert.deepEqual([special.specialModes, special.maxEntries], [true, 2500]);
});

Deno.test("LOCAL... HOST:/path is a push (the side with HOST: is remote); --push -i LOCAL -o REMOTE too", () => {
  const c = parseClientArgs([
    "./run42",
    "b c.txt",
    "10.0.0.1:2000:/data/incoming/",
    "-n",
    "3",
    "--verify",
    "--checksum",
    "-P",
    "--exclude",
    "tmp",
  ]);
  if (c.kind !== "push") throw new Error(`not a push: ${c.kind}`);
  assert.deepEqual(
    [c.sources, c.remotePath, c.host, c.port, c.scpStyle, c.parallel],
    [["./run42", "b c.txt"], "/data/incoming/", "10.0.0.1", "2000", true, 3],
  );
  assert.deepEqual([c.verify, c.checksum, c.preserve, c.exclude], [
    true,
    true,
    true,
    ["tmp"],
  ]);
  const old = parseClientArgs([
    "--push",
    "-i",
    "run42",
    "-o",
    "/data/in",
    "-host",
    "h",
    "-p",
    "9",
  ]);
  if (old.kind !== "push") throw new Error("not a push");
  assert.deepEqual(
    [old.sources, old.remotePath, old.host, old.port, old.scpStyle],
    [["run42"], "/data/in", "h", "9", false],
  );
  // One remote argument first is still a pull.
  assert.equal(parseClientArgs(["h:/data/x", "out"]).kind, "pull");
});

const BAD_PUSH: Array<[string[], string]> = [
  [
    ["a", "h:/x", "h:/y"],
    'Both "h:/x" and "h:/y" are remote: hsync copies between this machine and one server',
  ],
  [
    ["h:/x", "h:/y"],
    'Both "h:/x" and "h:/y" are remote: hsync copies between this machine and one server',
  ],
  [
    ["a", "h:relative"],
    'Unexpected argument "a": expected HOST[:PORT]:/remote/path, or use -i',
  ],
  [["--push", "-o", "/x"], "Missing the local path: give --push -i LOCAL_PATH"],
  [
    ["--push", "-i", "a"],
    "Missing the remote path: give --push -o REMOTE_PATH",
  ],
  [
    ["--push", "-i", "a", "-o", "rel"],
    'Remote path "rel" is not absolute: it must start with /',
  ],
  [
    ["--push", "a", "h:/x", "-i", "b"],
    "Give the paths of a push either as LOCAL... HOST:/remote/path or with -i and -o, not both",
  ],
  [["a", "h:/x", "--sync"], "--sync does not go with a push"],
  [["a", "h:/x", "--from-now"], "--from-now does not go with a push"],
  [
    ["a", "h:/x", "-P", "--special-modes"],
    "--special-modes does not go with a push",
  ],
];

for (const [argv, message] of BAD_PUSH) {
  Deno.test(`bad push command line ${JSON.stringify(argv)} gets one line: ${message}`, () => {
    assert.throws(() => parseClientArgs(argv), (e: Error) => {
      assert.deepEqual(e instanceof UsageError, true);
      assert.deepEqual(e.message, message);
      return true;
    });
  });
}

Deno.test("-a is -P -l -H -S for a pull and a push; each also alone; --unsafe-links needs links; none with --sync", () => {
  const pull = parseClientArgs(["-a", "h:/data/x", "out"]);
  assert.ok(pull.kind === "pull");
  assert.equal(pull.preserve, true);
  assert.deepEqual(pull.copy, {
    links: true,
    hardLinks: true,
    sparse: true,
    unsafeLinks: false,
  });
  const push = parseClientArgs(["--archive", "./run42", "h:10808:/in/"]);
  assert.ok(push.kind === "push");
  assert.equal(push.preserve, true);
  assert.deepEqual(push.copy, {
    links: true,
    hardLinks: true,
    sparse: true,
    unsafeLinks: false,
  });
  const each = parseClientArgs(["-l", "-S", "--unsafe-links", "-i", "/x"]);
  assert.ok(each.kind === "pull");
  assert.equal(each.preserve, false);
  assert.deepEqual(each.copy, {
    links: true,
    hardLinks: false,
    sparse: true,
    unsafeLinks: true,
  });
  const h = parseClientArgs(["-H", "-i", "/x"]);
  assert.ok(h.kind === "pull" && h.copy.hardLinks && !h.copy.links);
  assert.throws(
    () => parseClientArgs(["--unsafe-links", "-i", "/x"]),
    (e: Error) =>
      e instanceof UsageError &&
      e.message === "--unsafe-links only goes with -l (--links) or -a",
  );
  assert.throws(
    () => parseClientArgs(["-a", "--sync", "-i", "/x"]),
    (e: Error) =>
      e instanceof UsageError && /--sync follows files only/.test(e.message),
  );
  // -P and -n keep the old tool's meaning.
  const old = parseClientArgs(["-P", "-n", "3", "-i", "/x"]);
  assert.ok(old.kind === "pull" && old.preserve && old.parallel === 3);
  assert.deepEqual(old.copy, {
    links: false,
    hardLinks: false,
    sparse: false,
    unsafeLinks: false,
  });
});

Deno.test("several sources: HOST:/a HOST:/b DEST and repeated -i; the same name twice or two servers is a usage error", () => {
  const c = parseClientArgs(["h:9:/data/a", "h:9:/x/b/", "dest/"]);
  assert.ok(c.kind === "pull");
  assert.deepEqual(c.remotePaths, ["/data/a", "/x/b/"]);
  assert.equal(c.remotePath, "/data/a");
  assert.equal(c.localPath, "dest/");
  assert.equal(c.port, "9");
  const i = parseClientArgs(["-i", "/data/a", "-i", "/data/b", "-o", "d"]);
  assert.ok(i.kind === "pull");
  assert.deepEqual(i.remotePaths, ["/data/a", "/data/b"]);
  const refuse = (args: string[], re: RegExp) =>
    assert.throws(
      () => parseClientArgs(args),
      (e: Error) => e instanceof UsageError && re.test(e.message),
    );
  refuse(
    ["h:/data/a", "h:/other/a", "dest"],
    /^"\/data\/a" and "\/other\/a" have the same name "a"/,
  );
  refuse(["h:/a", "g:/b", "dest"], /name different servers/);
  refuse(["h:/a", "h:/b"], /are remote: hsync copies between/);
  refuse(["-i", "/a", "-i", "/b", "--sync"], /--sync follows one remote path/);
  // Globs are expanded later, on the server: their names are checked then.
  const g = parseClientArgs(["h:/runs/*.bam", "h:/old/*.bam", "bams/"]);
  assert.ok(g.kind === "pull" && g.remotePaths.length === 2);
  // A push takes repeated -i too, with the same rule.
  const p = parseClientArgs(["--push", "-i", "a", "-i", "b", "-o", "/in/"]);
  assert.ok(p.kind === "push");
  assert.deepEqual(p.sources, ["a", "b"]);
  refuse(["x/a", "y/a", "h:/in/"], /have the same name "a"/);
});

Deno.test("--delete, --max-delete, --dry-run and the regex and file-list selections, checked", () => {
  const c = parseClientArgs([
    "h:/data",
    "out",
    "--delete",
    "--max-delete",
    "0",
    "--include-regex",
    "\\.bam$",
    "--exclude-regex",
    "^tmp/",
    "--include-from",
    "inc.txt",
    "--exclude-from",
    "-",
    "--files-from",
    "list.txt",
  ]);
  assert.ok(c.kind === "pull");
  assert.deepEqual(c.mirror, { delete: true, maxDelete: 0, dryRun: false });
  assert.deepEqual(c.select, {
    includeRegex: ["\\.bam$"],
    excludeRegex: ["^tmp/"],
    includeFrom: ["inc.txt"],
    excludeFrom: ["-"],
    filesFrom: "list.txt",
  });
  const d = parseClientArgs(["--dry-run", "./run", "h:/in/"]);
  assert.ok(d.kind === "push" && d.mirror.dryRun && !d.mirror.delete);
  const refuse = (args: string[], message: string | RegExp) =>
    assert.throws(
      () => parseClientArgs(args),
      (e: Error) =>
        e instanceof UsageError &&
        (typeof message === "string"
          ? e.message === message
          : message.test(e.message)),
    );
  refuse(
    ["-i", "/x", "--include-regex", "a(b"],
    'Invalid value "a(b" for --include-regex: Unterminated group',
  );
  refuse(
    ["-i", "/x", "--max-delete", "5"],
    "--max-delete only goes with --delete",
  );
  refuse(
    ["-i", "/x", "--delete", "--max-delete", "many"],
    '--max-delete needs a number of deletions (0 or more), got "many"',
  );
  refuse(
    ["-i", "/x", "--delete", "--sync"],
    "--delete and --dry-run do not go with --sync",
  );
});

Deno.test("the old flags -host and --num (and their =VALUE forms) are renamed, never after --", () => {
  assert.deepEqual(
    renameFlags(
      ["-host", "h", "--num=3", "-host=x", "--", "-host", "--num=4"],
      { "-host": "--host-ip", "--num": "--parallel" },
    ),
    ["--host-ip", "h", "--parallel=3", "--host-ip=x", "--", "-host", "--num=4"],
  );
  // -hostname is no -host.
  assert.deepEqual(renameFlags(["-hostname"], { "-host": "--host-ip" }), [
    "-hostname",
  ]);
});
