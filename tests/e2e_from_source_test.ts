/** End-to-end: `deno task pull` and `deno task serve` take relative paths from where the user ran them (INIT_CWD), not from the repository. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT, startServer, tempDir } from "./_programs.ts";

/** Runs `deno task --config REPO/deno.json TASK ARGS...` in `cwd`, as a user standing there would. */
async function task(
  cwd: string,
  name: string,
  args: string[],
  env: Record<string, string> = {},
) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "--config", join(ROOT, "deno.json"), name, ...args],
    cwd,
    // deno task keeps an INIT_CWD it inherits (the one of `deno task test`): none is passed on.
    clearEnv: true,
    env: {
      PATH: Deno.env.get("PATH") ?? "",
      HOME: Deno.env.get("HOME") ?? "",
      NO_COLOR: "1",
      ...(Deno.env.has("DENO_DIR")
        ? { DENO_DIR: Deno.env.get("DENO_DIR")! }
        : {}),
      ...env,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

Deno.test("deno task pull writes a relative destination, and the default -o ., where the user ran it", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  await Deno.writeTextFile(join(data, "x.txt"), "from the server\n");
  await using server = await startServer({
    dir: dir.path,
    config: `[hsyncd]\nOnly_allowed_path = ${data}\n`,
  });
  const here = join(dir.path, "user");
  await Deno.mkdir(here);
  const remote = `127.0.0.1:${server.port}:${data}/x.txt`;

  const named = await task(here, "pull", [remote, "rel.txt"]);
  assert.equal(named.code, 0, named.stderr);
  assert.equal(
    await Deno.readTextFile(join(here, "rel.txt")),
    "from the server\n",
  );
  await assert.rejects(Deno.lstat(join(ROOT, "rel.txt")));

  const dflt = await task(here, "pull", [
    "-i",
    `${data}/x.txt`,
    "-host",
    "127.0.0.1",
    "-p",
    `${server.port}`,
  ]);
  assert.equal(dflt.code, 0, dflt.stderr);
  assert.equal(
    await Deno.readTextFile(join(here, "x.txt")),
    "from the server\n",
  );
  await assert.rejects(Deno.lstat(join(ROOT, "x.txt")));
});

Deno.test("deno task serve reads a relative -c from where the user ran it", async () => {
  await using dir = await tempDir();
  // Read (its bad value is told), not missing as it would be in the repository.
  await Deno.writeTextFile(join(dir.path, "rel.ini"), "[hsyncd]\nPort = abc\n");
  const r = await task(dir.path, "serve", ["-c", "rel.ini"], {
    HSYNC_DIR: join(dir.path, "hsync-dir"),
  });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /Invalid value "abc" for "rel\.ini" \[hsyncd\] Port/);
});
