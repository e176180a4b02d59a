/** End to end with the real programs: a bad number or port on the command line is told in the program's own words, with a Try line. */
import assert from "node:assert/strict";
import { ROOT, runClient, serverArgv } from "./_programs.ts";

async function runServer(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [...serverArgv(), ...args],
    cwd: ROOT,
    env: { HSYNC_DIR: "/nonexistent-hsync-dir", NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

const CLIENT: Array<[string[], string]> = [
  [["-n", "-3"], '-n needs a positive number of files in parallel, got "-3"'],
  [["-n", "abc"], '-n needs a positive number of files in parallel, got "abc"'],
  [["-n", "5000"], '-n needs at most 1024 files in parallel, got "5000"'],
  [["-p", "abc"], '-p needs a port number (1-65535), got "abc"'],
  [["-p", "-1"], '-p needs a port number (1-65535), got "-1"'],
  [["--port", "70000"], '-p needs a port number (1-65535), got "70000"'],
  [
    ["--max-entries", "-5"],
    '--max-entries needs a positive number of entries, got "-5"',
  ],
  [
    ["--delete", "--max-delete", "-2"],
    '--max-delete needs a number of deletions (0 or more), got "-2"',
  ],
  [["-host", "a b"], '-host needs an IP address or host name, got "a b"'],
];

Deno.test("hsync words a bad number or port on its command line itself, then says Try hsync --help", async () => {
  for (const [flags, line] of CLIENT) {
    const r = await runClient([...flags, "127.0.0.1:/data", "/tmp/x"]);
    assert.equal(r.code, 1, `${flags}: ${r.stderr}`);
    assert.equal(
      r.stderr,
      `hsync: ${line}\nTry 'hsync --help' for more information.\n`,
      flags.join(" "),
    );
  }
  const spec = await runClient(["127.0.0.1:99999:/data", "/tmp/x"]);
  assert.equal(spec.code, 1);
  assert.match(
    spec.stderr,
    /^hsync: "127\.0\.0\.1:99999:\/data" needs a port number \(1-65535\), got "99999"\n/,
  );
});

Deno.test("hsyncd words a bad port or address on its command line itself, then says Try hsyncd --help", async () => {
  const cases: Array<[string[], string]> = [
    [["-p", "abc"], '-p needs a port number (1-65535), got "abc"'],
    [["-p", "-5"], '-p needs a port number (1-65535), got "-5"'],
    [["status", "-p", "0"], '-p needs a port number (1-65535), got "0"'],
    [["-host", "a/b"], '-host needs an IP address or host name, got "a/b"'],
  ];
  for (const [args, line] of cases) {
    const r = await runServer(args);
    assert.equal(r.code, 1, `${args}: ${r.stderr}`);
    assert.equal(
      r.stderr,
      `hsyncd: ${line}\nTry 'hsyncd --help' for more information.\n`,
      args.join(" "),
    );
  }
});
