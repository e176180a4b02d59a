/** End to end with the real programs: `--sync` takes the connection settings of [hscp] unless [hsync] sets them, and echo-config shows the key file in use. */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  freePort,
  ROOT,
  runClient,
  serverArgv,
  spawnClient,
  tempDir,
  waitFor,
} from "./_programs.ts";
import { haveOpenssl, makeTestPki } from "./_tls.ts";

/** hsyncd over HTTPS in the foreground, waited for by its "listening on" line. */
async function httpsServer(dir: string, config: string) {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      ...serverArgv(),
      "-host",
      "127.0.0.1",
      "-p",
      String(port),
      "-c",
      config,
    ],
    cwd: ROOT,
    env: { HSYNC_DIR: join(dir, "server-state"), NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  let out = "";
  const drained = (async () => {
    for await (const c of child.stdout) out += new TextDecoder().decode(c);
  })();
  await waitFor("hsyncd to listen", () => /listening on https/.test(out));
  return {
    port,
    async [Symbol.asyncDispose]() {
      child.kill("SIGTERM");
      await child.status;
      await drained;
    },
  };
}

Deno.test({
  name:
    "--sync uses Tls and CA_file given once in [hscp]; [hsync] still overrides them",
  ignore: !await haveOpenssl(),
  async fn(t) {
    await using tmp = await tempDir("hsync-syncset-");
    const pki = await Deno.mkdir(join(tmp.path, "pki")).then(() =>
      makeTestPki(join(tmp.path, "pki"))
    );
    const data = join(tmp.path, "data");
    await Deno.mkdir(data);
    await Deno.writeTextFile(join(data, "log.txt"), "line 1\n");
    const serverIni = join(tmp.path, "server.ini");
    await Deno.writeTextFile(
      serverIni,
      `[hsyncd]\nOnly_allowed_path = ${data}\nCert_file = ${pki.certFile}\nKey_file = ${pki.keyFile}\n`,
    );
    await using server = await httpsServer(tmp.path, serverIni);
    const clientIni = join(tmp.path, "client.ini");
    await Deno.writeTextFile(
      clientIni,
      `[hscp]\nTls = yes\nCA_file = ${pki.caFile}\nPort = ${server.port}\nHost_ip = 127.0.0.1\n`,
    );
    const env = { HSYNC_DIR: join(tmp.path, "client-state") };

    await t.step(
      "a one-shot pull and --sync both reach the HTTPS server",
      async () => {
        const once = await runClient(
          [
            "-c",
            clientIni,
            "-i",
            join(data, "log.txt"),
            "-o",
            join(tmp.path, "once.txt"),
            "--quiet",
          ],
          env,
        );
        assert.equal(once.code, 0, once.stderr);
        const out = join(tmp.path, "followed.txt");
        await using follower = spawnClient(
          ["-c", clientIni, "--sync", "-i", join(data, "log.txt"), "-o", out],
          env,
        );
        await waitFor(
          "the followed file",
          async () => (await Deno.readTextFile(out)) === "line 1\n",
          30_000,
        ).catch((error) => {
          throw new Error(`${error.message}\n${follower.stderr()}`);
        });
        const r = await follower.stop();
        assert.doesNotMatch(r.stderr, /--tls|Cannot reach/);
      },
    );

    await t.step(
      "[hsync] Tls = no in the same file wins for --sync",
      async () => {
        const ini = join(tmp.path, "client2.ini");
        await Deno.writeTextFile(
          ini,
          (await Deno.readTextFile(clientIni)) + "[hsync]\nTls = no\n",
        );
        const r = await runClient(
          [
            "-c",
            ini,
            "--sync",
            "-i",
            join(data, "log.txt"),
            "-o",
            join(tmp.path, "plain.txt"),
          ],
          env,
        );
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /speaks HTTPS: add --tls or Tls = yes/);
      },
    );

    await t.step(
      "echo-config shows [hsync] taking them from [hscp]",
      async () => {
        const r = await runClient(["echo-config", "-c", clientIni], env);
        assert.equal(r.code, 0, r.stderr);
        const hsync = r.stdout.slice(r.stdout.indexOf("[hsync]"));
        assert.match(
          hsync,
          new RegExp(`^Tls = yes  ; from ${clientIni} \\[hscp\\]$`, "m"),
        );
        assert.match(
          hsync,
          new RegExp(
            `^Port = ${server.port}  ; from ${clientIni} \\[hscp\\]$`,
            "m",
          ),
        );
      },
    );
  },
});

Deno.test("echo-config shows the key file a run signs with, not an empty Identity_file", async () => {
  await using tmp = await tempDir("hsync-echo-");
  const env = { HSYNC_DIR: join(tmp.path, "state") };
  const none = await runClient(["echo-config"], env);
  assert.equal(none.code, 0, none.stderr);
  assert.match(
    none.stdout,
    /^Identity_file = {3}; none: no "id_ed25519" in \$HSYNC_DIR \(requests are not signed\)$/m,
  );
  assert.equal((await runClient(["keygen"], env)).code, 0);
  const r = await runClient(["echo-config"], env);
  const key = join(tmp.path, "state", "id_ed25519");
  for (const section of ["[hscp]", "[hsync]"]) {
    const part = r.stdout.slice(r.stdout.indexOf(section));
    assert.match(
      part,
      new RegExp(
        `^Identity_file = ${key}  ; default: id_ed25519 in \\$HSYNC_DIR$`,
        "m",
      ),
      section,
    );
  }
});
