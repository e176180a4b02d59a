/** End to end with the real programs: `lab:/path` and `-host lab` use the [host:lab] profile of hsync.ini (address, port, OpenSSH Identity_file) for pulls and pushes. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runClient, startServer, tempDir } from "./_programs.ts";
import { haveOpenSsh, sshKeygen } from "./_ssh.ts";

const ignore = !(await haveOpenSsh());
if (ignore) {
  // deno-lint-ignore no-console -- the reason a skipped test gives
  console.warn("host_profiles_e2e_test: ssh-keygen is missing, skipped");
}

Deno.test({
  name:
    "a [host:lab] profile carries address, port and key: lab:/path pulls, pushes and -host lab work; an unknown name is one line",
  ignore,
  async fn(t) {
    await using tmp = await tempDir("hsync-profile-");
    const data = join(tmp.path, "data");
    const incoming = join(tmp.path, "incoming");
    await Deno.mkdir(data);
    await Deno.mkdir(incoming);
    await Deno.writeTextFile(join(data, "a.txt"), "alpha\n");
    const keys = join(tmp.path, "keys");
    await Deno.mkdir(keys, { mode: 0o700 });
    const key = await sshKeygen(keys, "id_lab");
    const authorizedKeys = join(keys, "authorized_keys");
    await Deno.copyFile(`${key}.pub`, authorizedKeys);
    await using server = await startServer({
      dir: tmp.path,
      config:
        `[hsyncd]\nOnly_allowed_path = ${data},${incoming}\nWritable_path = ${incoming}\nAuthorized_keys = ${authorizedKeys}\n`,
    });
    const home = join(tmp.path, "client");
    await Deno.mkdir(home);
    await Deno.writeTextFile(
      join(home, "hsync.ini"),
      `[host:lab]\nHost_ip = 127.0.0.1\nPort = ${server.port}\nIdentity_file = ${key}\n`,
    );
    const env = { HSYNC_DIR: home };

    await t.step("hsync lab:/data/a.txt OUT pulls", async () => {
      const out = join(tmp.path, "out.txt");
      const r = await runClient([`lab:${data}/a.txt`, out, "--quiet"], env);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await Deno.readTextFile(out), "alpha\n");
    });

    await t.step("hsync ./y lab:/incoming/ pushes", async () => {
      const y = join(tmp.path, "y.txt");
      await Deno.writeTextFile(y, "why\n");
      const r = await runClient([y, `lab:${incoming}/`, "--quiet"], env);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await Deno.readTextFile(join(incoming, "y.txt")), "why\n");
    });

    await t.step("-host lab -i PATH -o OUT pulls", async () => {
      const out = join(tmp.path, "out2.txt");
      const r = await runClient(
        ["-host", "lab", "-i", `${data}/a.txt`, "-o", out, "--quiet"],
        env,
      );
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await Deno.readTextFile(out), "alpha\n");
    });

    await t.step("echo-config shows the profile", async () => {
      const r = await runClient(["echo-config"], env);
      assert.equal(r.code, 0, r.stderr);
      assert.match(
        r.stdout,
        new RegExp(`\\[host:lab\\]\\nHost_ip = 127\\.0\\.0\\.1  ; from `),
      );
    });

    await t.step(
      "a name that is no profile and does not resolve is one line",
      async () => {
        const r = await runClient(
          [`nosuchprofile.invalid:${data}/a.txt`, join(tmp.path, "o3")],
          env,
        );
        // The server could not be reached: the connect exit code (3, or 4 once "unreachable" has its own).
        assert.ok([3, 4].includes(r.code), String(r.code));
        assert.equal(
          r.stderr,
          `hsync: "nosuchprofile.invalid" is neither a [host:nosuchprofile.invalid] profile nor a resolvable host\n`,
        );
      },
    );
  },
});
