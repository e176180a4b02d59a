/** End to end with the real programs: hsyncd whose Authorized_keys holds ssh-keygen .pub lines, hsync signing through a real ssh-agent or with an OpenSSH key file. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runClient, startServer, tempDir } from "./_programs.ts";
import { haveOpenSsh, sshKeygen, startAgent } from "./_ssh.ts";

const ignore = !(await haveOpenSsh());
if (ignore) {
  // deno-lint-ignore no-console -- the reason a skipped test gives
  console.warn("ssh_auth_e2e_test: OpenSSH tools are missing, skipped");
}

/** A data tree, a served hsyncd whose Authorized_keys is the .pub line of `authorised`, and an unauthorised key. */
async function fixture(dir: string) {
  const data = join(dir, "data");
  await Deno.mkdir(join(data, "sub"), { recursive: true });
  await Deno.writeTextFile(join(data, "a.txt"), "alpha\n");
  await Deno.writeTextFile(join(data, "sub", "b.txt"), "beta\n");
  const keys = join(dir, "keys");
  await Deno.mkdir(keys, { mode: 0o700 });
  const authorised = await sshKeygen(keys, "authorised");
  const stranger = await sshKeygen(keys, "stranger");
  const locked = await sshKeygen(keys, "locked", { passphrase: "pass" });
  const authorizedKeys = join(keys, "authorized_keys");
  await Deno.writeTextFile(
    authorizedKeys,
    `from="127.0.0.1" ${await Deno.readTextFile(`${stranger}.pub`)}` +
      await Deno.readTextFile(`${authorised}.pub`),
    { mode: 0o600 },
  );
  const server = await startServer({
    dir,
    config:
      `[hsyncd]\nOnly_allowed_path = ${data}\nAuthorized_keys = ${authorizedKeys}\n`,
  });
  return {
    data,
    authorised,
    stranger,
    locked,
    server,
    empty: join(dir, "empty"),
  };
}

function pull(port: number, remote: string, out: string, extra: string[] = []) {
  return [`127.0.0.1:${port}:${remote}`, out, "--quiet", ...extra];
}

Deno.test({
  name:
    "a pull signed through a real ssh-agent is accepted by hsyncd holding the ssh-keygen .pub line, after the agent's unauthorised first key",
  ignore,
  async fn(t) {
    await using tmp = await tempDir("hsync-ssh-");
    const f = await fixture(tmp.path);
    await using _server = f.server;
    await using agent = await startAgent(tmp.path);

    await t.step("hsyncd warns about the line with options", () => {
      assert.match(
        f.server.stderr(),
        /Line 1 of Authorized_keys ".*authorized_keys" is skipped: it has options/,
      );
    });

    await t.step("with no key in the agent the pull is refused", async () => {
      const r = await runClient(
        pull(f.server.port, f.data, join(tmp.path, "o0")),
        { HSYNC_DIR: f.empty, SSH_AUTH_SOCK: agent.socket },
      );
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, /requires a key: run "hsync keygen"/);
    });

    await agent.add(f.stranger);
    await agent.add(f.authorised);
    await t.step(
      "the second agent key is tried and pulls the tree",
      async () => {
        const out = join(tmp.path, "o1");
        const r = await runClient(
          pull(f.server.port, f.data, out),
          { HSYNC_DIR: f.empty, SSH_AUTH_SOCK: agent.socket },
        );
        assert.equal(r.code, 0, r.stderr);
        assert.equal(
          await Deno.readTextFile(join(out, "sub", "b.txt")),
          "beta\n",
        );
      },
    );

    await t.step("without SSH_AUTH_SOCK nothing signs", async () => {
      const r = await runClient(
        pull(f.server.port, f.data, join(tmp.path, "o2")),
        { HSYNC_DIR: f.empty },
      );
      assert.equal(r.code, 3, r.stderr);
    });
  },
});

Deno.test({
  name:
    "Identity_file may be an OpenSSH ed25519 key; an encrypted one is one line pointing to ssh-agent",
  ignore,
  async fn(t) {
    await using tmp = await tempDir("hsync-ssh-");
    const f = await fixture(tmp.path);
    await using _server = f.server;
    const ini = async (name: string, key: string) => {
      const file = join(tmp.path, name);
      await Deno.writeTextFile(file, `[hscp]\nIdentity_file = ${key}\n`);
      return file;
    };

    await t.step("the authorised key file pulls", async () => {
      const out = join(tmp.path, "o1");
      const r = await runClient(
        pull(f.server.port, `${f.data}/a.txt`, out, [
          "-c",
          await ini("a.ini", f.authorised),
        ]),
        { HSYNC_DIR: f.empty },
      );
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await Deno.readTextFile(out), "alpha\n");
    });

    await t.step("the key whose line has options is refused", async () => {
      const r = await runClient(
        pull(f.server.port, `${f.data}/a.txt`, join(tmp.path, "o2"), [
          "-c",
          await ini("s.ini", f.stranger),
        ]),
        { HSYNC_DIR: f.empty },
      );
      assert.equal(r.code, 3, r.stderr);
    });

    await t.step("an encrypted key is one line", async () => {
      const r = await runClient(
        pull(f.server.port, `${f.data}/a.txt`, join(tmp.path, "o3"), [
          "-c",
          await ini("l.ini", f.locked),
        ]),
        { HSYNC_DIR: f.empty },
      );
      assert.equal(r.code, 1);
      assert.equal(
        r.stderr,
        `hsync: Cannot use Identity_file "${f.locked}": it is encrypted with a passphrase; add it to ssh-agent (ssh-add) and leave Identity_file unset, hsync then signs through the agent\n`,
      );
    });
  },
});
