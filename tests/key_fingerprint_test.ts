/** Tests of lib/shared/key_fingerprint.ts: the fingerprint is the one ssh-keygen prints for the same key. */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { join } from "node:path";
import { generateKeys } from "../lib/shared/auth.ts";
import { ed25519Fingerprint } from "../lib/shared/key_fingerprint.ts";
import { tempDir } from "./_programs.ts";

Deno.test("ed25519Fingerprint() equals ssh-keygen -l of the same key as ssh-ed25519", async () => {
  await using tmp = await tempDir();
  const raw = (await generateKeys("")).publicLine.split(" ")[1].trim();
  const name = new TextEncoder().encode("ssh-ed25519");
  const key = Buffer.from(raw, "base64");
  const blob = Buffer.alloc(8 + name.length + key.length);
  blob.writeUInt32BE(name.length, 0);
  blob.set(name, 4);
  blob.writeUInt32BE(key.length, 4 + name.length);
  blob.set(key, 8 + name.length);
  const file = join(tmp.path, "k.pub");
  await Deno.writeTextFile(file, `ssh-ed25519 ${blob.toString("base64")} t\n`);
  const out = await new Deno.Command("ssh-keygen", { args: ["-lf", file] })
    .output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const printed = new TextDecoder().decode(out.stdout).split(" ")[1];
  assert.equal(ed25519Fingerprint(raw), printed);
});

Deno.test("ed25519Fingerprint() is undefined for text that is not a 32-byte key", () => {
  for (const text of ["", "abc", "A".repeat(44), "!".repeat(43) + "="]) {
    assert.equal(ed25519Fingerprint(text), undefined, text);
  }
});
