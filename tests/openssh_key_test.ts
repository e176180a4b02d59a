/** Tests of lib/shared/openssh_key.ts and lib/shared/authorized_keys.ts against keys made by the real ssh-keygen. */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  parseOpenSshPrivateKey,
  parseSshPublicLine,
  sshPublicLine,
} from "../lib/shared/openssh_key.ts";
import { parseAuthorizedKeyLines } from "../lib/shared/authorized_keys.ts";
import { generateKeys, loadAuthorizedKeys } from "../lib/shared/auth.ts";
import { tempDir } from "./_programs.ts";
import { haveOpenSsh, sshKeygen } from "./_ssh.ts";

const ignore = !(await haveOpenSsh());
// deno-lint-ignore no-console -- the reason a skipped test gives
if (ignore) console.warn("openssh_key_test: ssh-keygen is missing, skipped");

Deno.test({
  name:
    "an unencrypted ssh-keygen ed25519 key is read: its public key is the one of its .pub line",
  ignore,
  fn: async () => {
    await using dir = await tempDir();
    const file = await sshKeygen(dir.path, "id_ed25519", { comment: "a@b c" });
    const key = parseOpenSshPrivateKey(await Deno.readTextFile(file), file);
    const pub = (await Deno.readTextFile(`${file}.pub`)).trim();
    assert.equal(sshPublicLine(key.publicKey, key.comment), pub);
    assert.equal(key.seed.length, 32);
    // The seed is the key: it signs what the public key verifies.
    const line = parseSshPublicLine(pub);
    assert.ok(line?.ok);
    assert.deepEqual(line.raw, key.publicKey);
    assert.equal(line.comment, "a@b c");
  },
});

Deno.test({
  name:
    "an encrypted OpenSSH key and an rsa key are refused in one line naming the file",
  ignore,
  fn: async () => {
    await using dir = await tempDir();
    const enc = await sshKeygen(dir.path, "enc", { passphrase: "pass" });
    assert.throws(
      () => parseOpenSshPrivateKey(Deno.readTextFileSync(enc), enc),
      (e: Error) =>
        e.message ===
          `Cannot use Identity_file "${enc}": it is encrypted with a passphrase; add it to ssh-agent (ssh-add) and leave Identity_file unset, hsync then signs through the agent`,
    );
    const rsa = await sshKeygen(dir.path, "rsa", { type: "rsa" });
    assert.throws(
      () => parseOpenSshPrivateKey(Deno.readTextFileSync(rsa), rsa),
      (e: Error) =>
        e.message ===
          `Cannot use Identity_file "${rsa}": it is an ssh-rsa key; hsync signs with ed25519 keys only (make one with ssh-keygen -t ed25519)`,
    );
    const text = Deno.readTextFileSync(enc);
    assert.throws(
      () => parseOpenSshPrivateKey(text.slice(0, 200) + text.slice(-40), "t"),
      /^TypeError: Cannot use Identity_file "t": /,
    );
  },
});

Deno.test({
  name:
    "Authorized_keys takes ssh-ed25519 lines beside hsync's own and skips options and other types with one warning per line",
  ignore,
  fn: async () => {
    await using dir = await tempDir();
    const ed = (await Deno.readTextFile(
      `${await sshKeygen(dir.path, "ed")}.pub`,
    )).trim();
    const rsa = (await Deno.readTextFile(
      `${await sshKeygen(dir.path, "rsa", { type: "rsa" })}.pub`,
    )).trim();
    const own = (await generateKeys("me")).publicLine.trim();
    const text = [
      "# keys",
      ed,
      `from="10.0.0.0/8",command="echo hi there" ${ed}`,
      rsa,
      own,
      "",
    ].join("\n");
    const file = `${dir.path}/authorized_keys`;
    const parsed = parseAuthorizedKeyLines(text, file);
    const raw = (line: string) =>
      Buffer.from(
        (parseSshPublicLine(line) as { raw: Uint8Array }).raw,
      ).toString("base64");
    assert.deepEqual(parsed.keys, [
      { key: raw(ed), kind: "ssh" },
      { key: own.split(" ")[1], kind: "hsync" },
    ]);
    assert.deepEqual(parsed.warnings, [
      `Line 3 of Authorized_keys "${file}" is skipped: it has options before the key type, which hsync does not apply (remove them for hsync)`,
      `Line 4 of Authorized_keys "${file}" is skipped: its key type is ssh-rsa; hsync accepts ssh-ed25519 keys only`,
    ]);
    await Deno.writeTextFile(file, text, { mode: 0o600 });
    await Deno.chmod(dir.path, 0o700);
    const loaded = await loadAuthorizedKeys(file);
    assert.equal(loaded.keys, 2);
    assert.deepEqual(loaded.warnings, parsed.warnings);
    for (const bad of ["garbage here", "ssh-ed25519 AAAA damaged"]) {
      assert.throws(
        () => parseAuthorizedKeyLines(`# x\n${bad}\n`, file),
        /Invalid public key on line 2 of /,
      );
    }
  },
});
