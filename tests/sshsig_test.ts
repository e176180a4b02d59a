/** SSHSIG interoperability with the real ssh-keygen and ssh-agent: what `ssh-keygen -Y sign -n hsync` makes verifies, any other namespace is refused, and hsync's own SSHSIGs verify with `ssh-keygen -Y check-novalidate`. */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import fc from "fast-check";
import {
  createVerifier,
  generateKeys,
  parseAuthorizedKeys,
  signedText,
  SSH_SCHEME,
} from "../lib/shared/auth.ts";
import {
  armorSshsig,
  dearmorSshsig,
  signSshsig,
} from "../lib/shared/sshsig.ts";
import { parseOpenSshPrivateKey } from "../lib/shared/openssh_key.ts";
import {
  openSshIdentity,
  sshAuthorization,
} from "../lib/client/ssh_identity.ts";
import { SshAgent } from "../lib/client/ssh_agent.ts";
import { tempDir } from "./_programs.ts";
import { haveOpenSsh, run, sshKeygen, sshSign, startAgent } from "./_ssh.ts";

const ignore = !(await haveOpenSsh());
// deno-lint-ignore no-console -- the reason a skipped test gives
if (ignore) console.warn("sshsig_test: OpenSSH tools are missing, skipped");
const encoder = new TextEncoder();
const NOW = 1_700_000_000_000;
const NONCE = "AAAAAAAAAAAAAAAAAAAAAA==";

/** The request text of a GET of `/v1/stat?path=/x` to `http://h:1`, with a nonce of its own. */
function request(nonce = NONCE) {
  const fields = {
    method: "GET",
    server: "http://h:1",
    pathAndQuery: "/v1/stat?path=%2Fx",
    timestamp: NOW,
    nonce,
    bodySha256: "-",
  };
  return { fields, text: encoder.encode(signedText(fields)) };
}

/** A verifier of the ssh-keygen key `file` (its .pub line in Authorized_keys). */
async function verifierOf(file: string) {
  return await createVerifier(
    parseAuthorizedKeys(await Deno.readTextFile(`${file}.pub`), "ak"),
    { now: () => NOW },
  );
}

function header(raw: Uint8Array, sshsig: Uint8Array, nonce = NONCE): string {
  return `${SSH_SCHEME} key=${
    Buffer.from(raw).toString("base64")
  }, ts=${NOW}, nonce=${nonce}, sig=${Buffer.from(sshsig).toString("base64")}`;
}

Deno.test({
  name:
    "a signature by ssh-keygen -Y sign -n hsync over the request text is accepted; -n git and -n file are refused",
  ignore,
  fn: async () => {
    await using dir = await tempDir();
    const file = await sshKeygen(dir.path, "id_ed25519");
    const raw = parseOpenSshPrivateKey(await Deno.readTextFile(file), file)
      .publicKey;
    const verify = await verifierOf(file);
    let n = 0;
    for (const namespace of ["git", "file", "hsync"]) {
      const nonce = `nonce${n++}AAAAAAAAAAAAAAAAA`;
      const { fields, text } = request(nonce);
      const sig = dearmorSshsig(await sshSign(file, namespace, text));
      const verdict = await verify({
        ...fields,
        authorization: header(raw, sig, nonce),
      });
      assert.equal(verdict.ok, namespace === "hsync", JSON.stringify(verdict));
      if (!verdict.ok) assert.match(verdict.reason, /namespace "/);
    }
  },
});

Deno.test({
  name:
    "property: an SSHSIG by an authorised key in any namespace but hsync is refused",
  ignore,
  fn: async () => {
    await using dir = await tempDir();
    const file = await sshKeygen(dir.path, "id_ed25519");
    const identity = await openSshIdentity(await Deno.readTextFile(file), file);
    const verify = await verifierOf(file);
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.string({ minLength: 0, maxLength: 40 }).filter((s) => s !== "hsync"),
        async (namespace) => {
          const nonce = `p${String(n++).padStart(20, "0")}`;
          const { fields, text } = request(nonce);
          const sig = await signSshsig(
            identity.raw,
            text,
            identity.sign,
            namespace,
          );
          const verdict = await verify({
            ...fields,
            authorization: header(identity.raw, sig, nonce),
          });
          assert.equal(verdict.ok, false);
        },
      ),
      { numRuns: 200 },
    );
    // The same key in the hsync namespace passes, so the refusals are the namespace's.
    const { fields, text } = request();
    const good = await signSshsig(identity.raw, text, identity.sign);
    assert.ok(
      (await verify({ ...fields, authorization: header(identity.raw, good) }))
        .ok,
    );
  },
});

Deno.test({
  name:
    "hsync's SSHSIG of a request verifies with ssh-keygen -Y check-novalidate -n hsync, and is refused as another namespace",
  ignore,
  fn: async () => {
    await using dir = await tempDir();
    const file = await sshKeygen(dir.path, "id_ed25519");
    const identity = await openSshIdentity(await Deno.readTextFile(file), file);
    const value = await sshAuthorization(
      identity,
      "GET",
      new URL("http://h:1/v1/stat?path=%2Fx"),
      { now: NOW },
    );
    const fields = new Map(
      value.slice(SSH_SCHEME.length + 1).split(", ").map((p) => {
        const eq = p.indexOf("=");
        return [p.slice(0, eq), p.slice(eq + 1)] as [string, string];
      }),
    );
    const { text } = request(fields.get("nonce"));
    const sigFile = `${dir.path}/req.sig`;
    await Deno.writeTextFile(
      sigFile,
      armorSshsig(Buffer.from(fields.get("sig")!, "base64")),
    );
    const check = (namespace: string) =>
      run("ssh-keygen", [
        "-Y",
        "check-novalidate",
        "-n",
        namespace,
        "-s",
        sigFile,
      ], { stdin: text });
    assert.match(await check("hsync"), /Good "hsync" signature/);
    await assert.rejects(() => check("git"));
    assert.ok(
      (await (await verifierOf(file))({
        method: "GET",
        server: "http://h:1",
        pathAndQuery: "/v1/stat?path=%2Fx",
        authorization: value,
        bodySha256: "-",
      })).ok,
    );
  },
});

Deno.test({
  name: "an SSH key only signs in the SSHSIG form, an hsync key never does",
  ignore,
  fn: async () => {
    await using dir = await tempDir();
    const file = await sshKeygen(dir.path, "id_ed25519");
    const key = parseOpenSshPrivateKey(await Deno.readTextFile(file), file);
    const verify = await verifierOf(file);
    // A bare Ed25519 signature by the SSH key over the same text, in hsync's old scheme.
    const pkcs8 = Buffer.concat([
      Buffer.from("302e020100300506032b657004220420", "hex"),
      key.seed,
    ]);
    const priv = await crypto.subtle.importKey(
      "pkcs8",
      pkcs8,
      "Ed25519",
      false,
      ["sign"],
    );
    const { fields, text } = request();
    const bare = new Uint8Array(
      await crypto.subtle.sign("Ed25519", priv, text),
    );
    const verdict = await verify({
      ...fields,
      authorization: `HSync-Ed25519 key=${
        Buffer.from(key.publicKey).toString("base64")
      }, ts=${NOW}, nonce=${NONCE}, sig=${
        Buffer.from(bare).toString("base64")
      }`,
    });
    assert.equal(verdict.ok, false);
    // And an hsync key cannot use the SSHSIG scheme.
    const own = await generateKeys("x");
    const ownVerify = await createVerifier(
      parseAuthorizedKeys(own.publicLine, "ak"),
      { now: () => NOW },
    );
    const ownRaw = Buffer.from(own.publicLine.split(" ")[1], "base64");
    assert.equal(
      (await ownVerify({
        ...fields,
        authorization: header(ownRaw, new Uint8Array(10)),
      })).ok,
      false,
    );
  },
});

Deno.test({
  name:
    "the agent client lists a real ssh-agent's ed25519 keys (not its rsa one) and signs with them",
  ignore,
  fn: async () => {
    await using dir = await tempDir();
    const a = await sshKeygen(dir.path, "a");
    const rsa = await sshKeygen(dir.path, "rsa", { type: "rsa" });
    const b = await sshKeygen(dir.path, "b", { passphrase: "" });
    await using agent = await startAgent(dir.path);
    for (const k of [a, rsa, b]) await agent.add(k);
    const client = new SshAgent(agent.socket);
    const keys = await client.ed25519Keys();
    assert.deepEqual(keys.map((k) => k.comment), ["a@test", "b@test"]);
    const { fields, text } = request();
    const sig = await signSshsig(
      keys[0].raw,
      text,
      (data) => client.sign(keys[0], data),
    );
    const verdict = await (await verifierOf(a))({
      ...fields,
      authorization: header(keys[0].raw, sig),
    });
    assert.ok(verdict.ok, JSON.stringify(verdict));
    await assert.rejects(
      () => new SshAgent(`${dir.path}/nothing.sock`).ed25519Keys(),
    );
  },
});
