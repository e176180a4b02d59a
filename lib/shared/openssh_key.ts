/** OpenSSH key formats, ed25519 only: the `openssh-key-v1` private key file, `ssh-ed25519 AAAA...` public lines, and the SSH wire encoding they share. */
import { Buffer } from "node:buffer";
import { concatBytes } from "./bytes.ts";

/** SSH name of the one key type hsync signs with. */
export const SSH_ED25519 = "ssh-ed25519";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Reads the SSH wire encoding (RFC 4251 §5): big-endian uint32s and length-prefixed strings; throws `RangeError` past the end. */
export class SshReader {
  #at = 0;
  constructor(readonly bytes: Uint8Array) {}

  /** Whether every byte was read. */
  get done(): boolean {
    return this.#at === this.bytes.length;
  }

  /** A big-endian uint32. */
  uint32(): number {
    const b = this.take(4);
    return ((b[0] << 24) >>> 0) + (b[1] << 16) + (b[2] << 8) + b[3];
  }

  /** `n` raw bytes. */
  take(n: number): Uint8Array {
    if (n < 0 || this.#at + n > this.bytes.length) {
      throw new RangeError("Truncated SSH data");
    }
    const out = this.bytes.subarray(this.#at, this.#at + n);
    this.#at += n;
    return out;
  }

  /** A length-prefixed byte string. */
  string(): Uint8Array {
    return this.take(this.uint32());
  }

  /** A length-prefixed UTF-8 string. */
  text(): string {
    return decoder.decode(this.string());
  }
}

/** Big-endian uint32 as 4 bytes. */
export function sshUint32(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n);
  return out;
}

/** A length-prefixed SSH string of `value` (text is UTF-8). */
export function sshString(value: Uint8Array | string): Uint8Array {
  const bytes = typeof value === "string" ? encoder.encode(value) : value;
  return concatBytes(sshUint32(bytes.length), bytes);
}

/** The SSH public key blob of an ed25519 key: string "ssh-ed25519", string raw key. */
export function ed25519Blob(raw: Uint8Array): Uint8Array<ArrayBuffer> {
  return concatBytes(sshString(SSH_ED25519), sshString(raw));
}

/** The raw 32-byte key of an `ssh-ed25519` blob; undefined for any other blob. */
export function rawFromBlob(blob: Uint8Array): Uint8Array | undefined {
  try {
    const r = new SshReader(blob);
    if (r.text() !== SSH_ED25519) return undefined;
    const raw = r.string();
    return raw.length === 32 && r.done ? raw : undefined;
  } catch {
    return undefined;
  }
}

/** The `ssh-ed25519 AAAA... comment` line of a raw key, as ssh-keygen writes a .pub file. */
export function sshPublicLine(raw: Uint8Array, comment = ""): string {
  return `${SSH_ED25519} ${Buffer.from(ed25519Blob(raw)).toString("base64")} ${
    comment.replace(/[\r\n]/g, " ")
  }`.trim();
}

/** What one public key line of OpenSSH's form holds. */
export type SshPublicLine =
  | { ok: true; raw: Uint8Array; comment: string }
  | { ok: false; reason: string };

// Key types OpenSSH knows (ssh-keygen, sshd's AuthorizedKeysFile); a line naming one is an SSH key line.
const SSH_KEY_TYPE =
  /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com|ssh-xmss@openssh\.com|[a-z0-9-]+-cert-v0[01]@openssh\.com)$/;

/** Whether `word` names an OpenSSH key type. */
export function isSshKeyType(word: string): boolean {
  return SSH_KEY_TYPE.test(word);
}

/**
 * Parses one line of OpenSSH's public key form (`.pub` files, the lines of
 * `authorized_keys`). Only a plain `ssh-ed25519 BASE64 [comment]` line is
 * usable; a line with options before the key type, or another key type,
 * says why it is not. Undefined when the line is not of OpenSSH's form at all,
 * or its ed25519 key is damaged.
 */
export function parseSshPublicLine(line: string): SshPublicLine | undefined {
  const words = line.trim().split(/\s+/);
  if (!isSshKeyType(words[0] ?? "")) {
    // `from="10.0.0.0/8",no-pty ssh-ed25519 AAAA...`: options come first (they may hold quoted spaces).
    const at = words.findIndex((w) => isSshKeyType(w));
    if (at <= 0) return undefined;
    return {
      ok: false,
      reason:
        "it has options before the key type, which hsync does not apply (remove them for hsync)",
    };
  }
  if (words[0] !== SSH_ED25519) {
    return {
      ok: false,
      reason: `its key type is ${
        words[0]
      }; hsync accepts ${SSH_ED25519} keys only`,
    };
  }
  const text = words[1] ?? "";
  const raw = /^[A-Za-z0-9+/]+={0,2}$/.test(text)
    ? rawFromBlob(new Uint8Array(Buffer.from(text, "base64")))
    : undefined;
  // A damaged key is no line to skip quietly: the caller reports it as malformed.
  if (raw === undefined) return undefined;
  return { ok: true, raw, comment: words.slice(2).join(" ") };
}

/** An unencrypted OpenSSH ed25519 private key. */
export interface OpenSshKey {
  /** The 32-byte private seed. */
  seed: Uint8Array<ArrayBuffer>;
  /** The 32-byte public key. */
  publicKey: Uint8Array<ArrayBuffer>;
  comment: string;
}

const ARMOR =
  /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]+?)-----END OPENSSH PRIVATE KEY-----/;
const MAGIC = "openssh-key-v1\0";

/** Whether `text` is an OpenSSH private key file (any type, encrypted or not). */
export function isOpenSshPrivateKey(text: string): boolean {
  return ARMOR.test(text);
}

/**
 * Reads an `openssh-key-v1` file (what `ssh-keygen` writes) holding one
 * unencrypted ed25519 key. Throws `TypeError` with one line naming `source`
 * for an encrypted key (use ssh-agent), another key type, or a damaged file.
 */
export function parseOpenSshPrivateKey(
  text: string,
  source: string,
): OpenSshKey {
  const fail = (why: string) =>
    new TypeError(`Cannot use Identity_file "${source}": ${why}`);
  const m = ARMOR.exec(text);
  const body = m?.[1].replace(/\s+/g, "") ?? "";
  if (m === null || !/^[A-Za-z0-9+/]+={0,2}$/.test(body)) {
    throw fail("not an OpenSSH private key");
  }
  const bytes = new Uint8Array(Buffer.from(body, "base64"));
  try {
    if (decoder.decode(bytes.subarray(0, MAGIC.length)) !== MAGIC) {
      throw fail("not an openssh-key-v1 private key");
    }
    const r = new SshReader(bytes.subarray(MAGIC.length));
    const cipher = r.text();
    const kdf = r.text();
    r.string(); // kdf options
    if (cipher !== "none" || kdf !== "none") {
      throw fail(
        "it is encrypted with a passphrase; add it to ssh-agent (ssh-add) and leave Identity_file unset, hsync then signs through the agent",
      );
    }
    if (r.uint32() !== 1) throw fail("it holds more than one key");
    const publicBlob = r.string();
    const type = new SshReader(publicBlob).text();
    if (type !== SSH_ED25519) {
      throw fail(
        `it is an ${type} key; hsync signs with ed25519 keys only (make one with ssh-keygen -t ed25519)`,
      );
    }
    const p = new SshReader(r.string());
    if (p.uint32() !== p.uint32()) throw fail("its check bytes disagree");
    if (p.text() !== SSH_ED25519) throw fail("its private part is not ed25519");
    const publicKey = p.string();
    const secret = p.string(); // seed || public key
    const comment = p.text();
    if (
      publicKey.length !== 32 || secret.length !== 64 ||
      !sameBytes(secret.subarray(32), publicKey) ||
      !sameBytes(rawFromBlob(publicBlob) ?? new Uint8Array(), publicKey)
    ) throw fail("its ed25519 key is damaged");
    return {
      seed: secret.slice(0, 32),
      publicKey: publicKey.slice(),
      comment,
    };
  } catch (error) {
    if (error instanceof RangeError) throw fail("the key file is truncated");
    throw error;
  }
}

/** Whether two byte strings are equal. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

// PKCS#8 of an Ed25519 key (RFC 8410) up to the 32 bytes of the seed: WebCrypto imports no raw private key.
const PKCS8_ED25519 = Uint8Array.from([
  0x30,
  0x2e,
  0x02,
  0x01,
  0x00,
  0x30,
  0x05,
  0x06,
  0x03,
  0x2b,
  0x65,
  0x70,
  0x04,
  0x22,
  0x04,
  0x20,
]);

/** The WebCrypto signing key of a 32-byte ed25519 seed. */
export async function importSeed(seed: Uint8Array): Promise<CryptoKey> {
  return await crypto.subtle.importKey(
    "pkcs8",
    concatBytes(PKCS8_ED25519, seed),
    { name: "Ed25519" },
    false,
    ["sign"],
  );
}

/**
 * The public key of an OpenSSH private key file, read from its clear part
 * (so an encrypted key has one too; its comment is only in the encrypted
 * part). Why not, when it holds no single ed25519 key.
 */
export function publicKeyOfPrivateFile(
  text: string,
): { raw: Uint8Array; comment: string } | string {
  try {
    const key = parseOpenSshPrivateKey(text, "");
    return { raw: key.publicKey, comment: key.comment };
  } catch {
    // Encrypted, or not ed25519: the clear part says which.
  }
  const body = ARMOR.exec(text)?.[1].replace(/\s+/g, "") ?? "";
  const bytes = new Uint8Array(Buffer.from(body, "base64"));
  try {
    if (decoder.decode(bytes.subarray(0, MAGIC.length)) !== MAGIC) {
      return "not an openssh-key-v1 private key";
    }
    const r = new SshReader(bytes.subarray(MAGIC.length));
    r.string(); // cipher
    r.string(); // kdf
    r.string(); // kdf options
    if (r.uint32() !== 1) return "it holds more than one key";
    const blob = r.string();
    const raw = rawFromBlob(blob);
    if (raw !== undefined) return { raw, comment: "" };
    return `it is an ${
      new SshReader(blob).text()
    } key; hsync accepts ed25519 keys only`;
  } catch {
    return "the key file is truncated";
  }
}
