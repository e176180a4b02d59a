/** `hsync keygen --public FILE`, run for real: the Authorized_keys line of an existing OpenSSH key. */
import assert from "node:assert/strict";
import { runClient, tempDir } from "./_programs.ts";
import { haveOpenSsh, sshKeygen } from "./_ssh.ts";

const ignore = !(await haveOpenSsh());

Deno.test({
  name:
    "hsync keygen --public prints the ssh-keygen .pub line of a private key, an encrypted one or a .pub; an rsa key is one line",
  ignore,
  async fn() {
    await using dir = await tempDir();
    const plain = await sshKeygen(dir.path, "plain", { comment: "me@box" });
    const pub = (await Deno.readTextFile(`${plain}.pub`)).trim();
    for (const file of [plain, `${plain}.pub`]) {
      const r = await runClient(["keygen", "--public", file]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `${pub}\n`);
    }
    const locked = await sshKeygen(dir.path, "locked", { passphrase: "pw" });
    const lockedPub = (await Deno.readTextFile(`${locked}.pub`)).trim();
    const r = await runClient(["keygen", "--public", locked]);
    assert.equal(r.code, 0, r.stderr);
    // The comment is inside the encrypted part: the key alone.
    assert.equal(r.stdout, `${lockedPub.split(" ").slice(0, 2).join(" ")}\n`);
    const rsa = await sshKeygen(dir.path, "rsa", { type: "rsa" });
    const bad = await runClient(["keygen", "--public", rsa]);
    assert.equal(bad.code, 1);
    assert.equal(
      bad.stderr,
      `hsync: Cannot print a public key of "${rsa}": it is an ssh-rsa key; hsync accepts ed25519 keys only\n`,
    );
    const wrong = await runClient(["-i", "/x", "--public", plain]);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /--public only goes with keygen/);
  },
});
