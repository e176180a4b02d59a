/**
 * OpenSSH's SSHSIG signatures (PROTOCOL.sshsig), as `ssh-keygen -Y sign`
 * makes them, for ed25519 keys. The key signs a blob naming a namespace and
 * the message's hash, never the message itself, so a signature made for one
 * namespace is no signature in another, nor an SSH login signature.
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { concatBytes } from "./bytes.ts";
import {
  ed25519Blob,
  rawFromBlob,
  sameBytes,
  SSH_ED25519,
  SshReader,
  sshString,
  sshUint32,
} from "./openssh_key.ts";

/** The namespace of every hsync signature (`ssh-keygen -Y sign -n hsync`). */
export const SSHSIG_NAMESPACE = "hsync";

const MAGIC = new TextEncoder().encode("SSHSIG");
const HASHES: Record<string, string> = { sha512: "sha512", sha256: "sha256" };

/** The blob the key signs: magic, namespace, reserved, hash algorithm, H(message). */
export function sshsigSignedData(
  namespace: string,
  message: Uint8Array,
  hashAlgorithm = "sha512",
): Uint8Array<ArrayBuffer> {
  const digest = createHash(HASHES[hashAlgorithm]).update(message).digest();
  return concatBytes(
    MAGIC,
    sshString(namespace),
    sshString(""),
    sshString(hashAlgorithm),
    sshString(new Uint8Array(digest)),
  );
}

/** Makes a raw 64-byte ed25519 signature over the bytes given (a key, or ssh-agent). */
export type RawSigner = (data: Uint8Array<ArrayBuffer>) => Promise<Uint8Array>;

/**
 * The binary SSHSIG (what `ssh-keygen -Y sign` armors) over `message` by the
 * ed25519 key `publicKey` (32 bytes), signed by `sign`.
 */
export async function signSshsig(
  publicKey: Uint8Array,
  message: Uint8Array,
  sign: RawSigner,
  namespace = SSHSIG_NAMESPACE,
): Promise<Uint8Array<ArrayBuffer>> {
  const signature = await sign(sshsigSignedData(namespace, message));
  return concatBytes(
    MAGIC,
    sshUint32(1),
    sshString(ed25519Blob(publicKey)),
    sshString(namespace),
    sshString(""),
    sshString("sha512"),
    sshString(concatBytes(sshString(SSH_ED25519), sshString(signature))),
  );
}

/** The parts of a binary SSHSIG. */
export interface Sshsig {
  publicKeyBlob: Uint8Array;
  namespace: string;
  hashAlgorithm: string;
  signatureBlob: Uint8Array;
}

/** Parses a binary SSHSIG; throws `TypeError` saying what is wrong. */
export function parseSshsig(bytes: Uint8Array): Sshsig {
  if (!sameBytes(bytes.subarray(0, MAGIC.length), MAGIC)) {
    throw new TypeError("not an SSHSIG signature");
  }
  try {
    const r = new SshReader(bytes.subarray(MAGIC.length));
    const version = r.uint32();
    if (version !== 1) throw new TypeError(`SSHSIG version ${version}`);
    const publicKeyBlob = r.string();
    const namespace = r.text();
    r.string(); // reserved
    const hashAlgorithm = r.text();
    const signatureBlob = r.string();
    if (!r.done) throw new TypeError("bytes after the SSHSIG signature");
    return { publicKeyBlob, namespace, hashAlgorithm, signatureBlob };
  } catch (error) {
    if (error instanceof RangeError) {
      throw new TypeError("truncated SSHSIG signature");
    }
    throw error;
  }
}

/**
 * Checks a binary SSHSIG over `message`: made by the ed25519 key `publicKey`
 * (32 bytes, imported as `key`), in `namespace`, with a hash OpenSSH
 * allows. Returns undefined when good, else why not.
 */
export async function verifySshsig(
  bytes: Uint8Array,
  message: Uint8Array,
  publicKey: Uint8Array,
  key: CryptoKey,
  namespace = SSHSIG_NAMESPACE,
): Promise<string | undefined> {
  let sig: Sshsig;
  try {
    sig = parseSshsig(bytes);
  } catch (error) {
    return (error as Error).message;
  }
  if (sig.namespace !== namespace) {
    return `SSHSIG namespace ${
      JSON.stringify(sig.namespace.slice(0, 100))
    } is not "${namespace}"`;
  }
  if (HASHES[sig.hashAlgorithm] === undefined) {
    return `SSHSIG hash ${JSON.stringify(sig.hashAlgorithm.slice(0, 100))}`;
  }
  const raw = rawFromBlob(sig.publicKeyBlob);
  if (raw === undefined || !sameBytes(raw, publicKey)) {
    return "SSHSIG made by another key than the one named";
  }
  let signature: Uint8Array<ArrayBuffer>;
  try {
    const r = new SshReader(sig.signatureBlob);
    if (r.text() !== SSH_ED25519) return "SSHSIG signature is not ed25519";
    signature = r.string().slice();
    if (signature.length !== 64 || !r.done) return "SSHSIG signature length";
  } catch {
    return "truncated SSHSIG signature";
  }
  const good = await crypto.subtle.verify(
    { name: "Ed25519" },
    key,
    signature,
    sshsigSignedData(namespace, message, sig.hashAlgorithm),
  );
  return good ? undefined : "bad SSHSIG signature";
}

/** The armored text of a binary SSHSIG, as `ssh-keygen -Y sign` writes it. */
export function armorSshsig(bytes: Uint8Array): string {
  const body = Buffer.from(bytes).toString("base64").replace(/(.{70})/g, "$1\n")
    .trim();
  return `-----BEGIN SSH SIGNATURE-----\n${body}\n-----END SSH SIGNATURE-----\n`;
}

/** The binary SSHSIG inside an armored one; throws `TypeError` when there is none. */
export function dearmorSshsig(text: string): Uint8Array<ArrayBuffer> {
  const m = /-----BEGIN SSH SIGNATURE-----([\s\S]+?)-----END SSH SIGNATURE-----/
    .exec(text);
  if (m === null) throw new TypeError("no SSH SIGNATURE block");
  return new Uint8Array(Buffer.from(m[1].replace(/\s+/g, ""), "base64"));
}
