/** Key fingerprints as ssh prints them (`SHA256:` and the unpadded base64 of the SHA-256 of the key's wire blob), for messages and logs. */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { ed25519Blob } from "./openssh_key.ts";

/** `SHA256:...` of an OpenSSH public key blob, as `ssh-keygen -l` prints it. */
export function blobFingerprint(blob: Uint8Array): string {
  const digest = createHash("sha256").update(blob).digest("base64");
  return `SHA256:${digest.replace(/=+$/, "")}`;
}

/**
 * The fingerprint of a raw Ed25519 public key given in base64 (hsync's own
 * key lines): the same as ssh prints for that key as `ssh-ed25519`.
 * Undefined when the text is not the base64 of 32 bytes.
 */
export function ed25519Fingerprint(base64: string): string | undefined {
  if (!/^[A-Za-z0-9+/]{43}=$/.test(base64)) return undefined;
  const raw = new Uint8Array(Buffer.from(base64, "base64"));
  return raw.length === 32 ? blobFingerprint(ed25519Blob(raw)) : undefined;
}
