/** Ed25519 key authentication: key files, request signing (client) and verification with replay protection (server). */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { ConfigError } from "./errors.ts";
import { reason } from "./local_path.ts";

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64");
}

function unb64(text: string): Uint8Array<ArrayBuffer> {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text)) throw new TypeError("Bad base64");
  return new Uint8Array(Buffer.from(text, "base64"));
}

/** Scheme name in the `Authorization` header and prefix of public key lines. */
export const SCHEME = "HSync-Ed25519";
const KEY_PREFIX = "hsync-ed25519";
/** Default accepted clock difference between client and server. */
export const DEFAULT_SKEW_MS = 5 * 60 * 1000;

const encoder = new TextEncoder();

/** A client's signing identity. */
export interface Identity {
  /** Base64 of the raw 32-byte public key. */
  publicKey: string;
  privateKey: CryptoKey;
}

/** A freshly generated key pair, serialised for the two files `hsync keygen` writes. */
export interface GeneratedKeys {
  /** PKCS#8 PEM of the private key (file mode 0600). */
  privatePem: string;
  /** One line: `hsync-ed25519 BASE64 COMMENT`, appendable to an authorized-keys file as it is. */
  publicLine: string;
}

/** Generates an Ed25519 key pair. */
export async function generateKeys(comment: string): Promise<GeneratedKeys> {
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const raw = new Uint8Array(
    await crypto.subtle.exportKey("raw", pair.publicKey),
  );
  const pkcs8 = new Uint8Array(
    await crypto.subtle.exportKey("pkcs8", pair.privateKey),
  );
  const body = b64(pkcs8).replace(/(.{64})/g, "$1\n").trim();
  return {
    privatePem:
      `-----BEGIN PRIVATE KEY-----\n${body}\n-----END PRIVATE KEY-----\n`,
    publicLine: `${KEY_PREFIX} ${b64(raw)} ${comment}`.trim() + "\n",
  };
}

/** Reads a private key file written by `hsync keygen` (PKCS#8 PEM) and derives its public key. */
export async function loadIdentity(
  pem: string,
  source: string,
): Promise<Identity> {
  const m = /-----BEGIN PRIVATE KEY-----([\s\S]+?)-----END PRIVATE KEY-----/
    .exec(pem);
  if (m === null) {
    throw new TypeError(
      `Cannot use Identity_file "${source}": not a PEM private key (make one with hsync keygen)`,
    );
  }
  let pkcs8: Uint8Array<ArrayBuffer>;
  try {
    pkcs8 = unb64(m[1].replace(/\s+/g, ""));
  } catch {
    throw new TypeError(
      `Cannot use Identity_file "${source}": its PEM body is not base64`,
    );
  }
  try {
    const privateKey = await crypto.subtle.importKey(
      "pkcs8",
      pkcs8,
      { name: "Ed25519" },
      true,
      ["sign"],
    );
    const jwk = await crypto.subtle.exportKey("jwk", privateKey);
    const raw = new Uint8Array(Buffer.from(jwk.x ?? "", "base64url"));
    return { publicKey: b64(raw), privateKey };
  } catch {
    throw new TypeError(
      `Cannot use Identity_file "${source}": not an Ed25519 private key`,
    );
  }
}

/** The exact bytes that are signed for one request. */
export function signedText(
  method: string,
  pathAndQuery: string,
  timestamp: number,
  nonce: string,
  bodySha256: string,
): string {
  return `hsync-v1\n${method.toUpperCase()}\n${pathAndQuery}\n${timestamp}\n${nonce}\n${bodySha256}`;
}

/** Header carrying {@linkcode bodyDigest} of a signed request's body, so the server checks the signature before reading the body. */
export const BODY_DIGEST_HEADER = "x-hsync-content-sha256";

/** Hex SHA-256 of a request body (`-` when there is none). */
export function bodyDigest(
  body: Uint8Array | undefined,
): string {
  if (body === undefined || body.length === 0) return "-";
  return createHash("sha256").update(body).digest("hex");
}

/** Builds the `Authorization` header value for a request. */
export async function signRequest(
  identity: Identity,
  method: string,
  url: URL,
  options: { body?: Uint8Array<ArrayBuffer>; now?: number } = {},
): Promise<string> {
  const ts = options.now ?? Date.now();
  const nonce = b64(crypto.getRandomValues(new Uint8Array(16)));
  const text = signedText(
    method,
    url.pathname + url.search,
    ts,
    nonce,
    bodyDigest(options.body),
  );
  const sig = new Uint8Array(
    await crypto.subtle.sign(
      { name: "Ed25519" },
      identity.privateKey,
      encoder.encode(text),
    ),
  );
  return `${SCHEME} key=${identity.publicKey}, ts=${ts}, nonce=${nonce}, sig=${
    b64(sig)
  }`;
}

/** Parses an authorized-keys text: one `hsync-ed25519 BASE64 [comment]` per line, `#` comments. */
export function parseAuthorizedKeys(text: string, source: string): string[] {
  const keys: string[] = [];
  text.split("\n").forEach((line, i) => {
    const t = line.trim();
    if (t === "" || t.startsWith("#")) return;
    const [kind, key] = t.split(/\s+/);
    let raw: Uint8Array | undefined;
    try {
      raw = kind === KEY_PREFIX ? unb64(key ?? "") : undefined;
    } catch {
      raw = undefined;
    }
    if (raw === undefined || raw.length !== 32) {
      throw new TypeError(
        `Invalid public key on line ${
          i + 1
        } of "${source}": expected "${KEY_PREFIX} BASE64 [comment]"`,
      );
    }
    keys.push(key);
  });
  return keys;
}

/** Options of {@linkcode createVerifier}. */
export interface VerifierOptions {
  /** Accepted clock difference in milliseconds. */
  skewMs?: number;
  /** The clock (ms since epoch). */
  now?: () => number;
  /** Most nonces remembered at once; past this, requests are refused until old ones expire. */
  maxNonces?: number;
}

/** Checks one request; true when it carries a fresh, valid signature by an authorised key. */
export type Verifier = (
  method: string,
  pathAndQuery: string,
  header: string | null,
  bodySha256: string,
) => Promise<boolean>;

/** Creates the server-side verifier for a list of authorised public keys (base64). */
export async function createVerifier(
  publicKeys: string[],
  options: VerifierOptions = {},
): Promise<Verifier> {
  const skew = options.skewMs ?? DEFAULT_SKEW_MS;
  const now = options.now ?? Date.now;
  const maxNonces = options.maxNonces ?? 1_000_000;
  const keys = new Map<string, CryptoKey>();
  for (const k of publicKeys) {
    keys.set(
      k,
      await crypto.subtle.importKey(
        "raw",
        unb64(k),
        { name: "Ed25519" },
        false,
        [
          "verify",
        ],
      ),
    );
  }
  // nonce -> expiry; insertion order is time order, so expiry is a scan from the front.
  const seen = new Map<string, number>();
  return async (method, pathAndQuery, header, bodySha256) => {
    if (header === null || !header.startsWith(SCHEME + " ")) return false;
    const fields = new Map<string, string>();
    for (const part of header.slice(SCHEME.length + 1).split(",")) {
      const eq = part.indexOf("=");
      if (eq > 0) {
        fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
      }
    }
    const key = keys.get(fields.get("key") ?? "");
    const ts = Number(fields.get("ts"));
    const nonce = fields.get("nonce") ?? "";
    const sig = fields.get("sig") ?? "";
    if (
      key === undefined || !Number.isSafeInteger(ts) || nonce.length < 16 ||
      nonce.length > 64
    ) {
      return false;
    }
    const t = now();
    if (Math.abs(t - ts) > skew) return false;
    for (const [n, expiry] of seen) {
      if (expiry > t) break;
      seen.delete(n);
    }
    if (seen.has(nonce) || seen.size >= maxNonces) return false;
    let sigBytes: Uint8Array<ArrayBuffer>;
    try {
      sigBytes = unb64(sig);
    } catch {
      return false;
    }
    const ok = await crypto.subtle.verify(
      { name: "Ed25519" },
      key,
      sigBytes,
      encoder.encode(signedText(method, pathAndQuery, ts, nonce, bodySha256)),
    );
    if (ok) seen.set(nonce, Math.max(t, ts) + skew);
    return ok;
  };
}

/** Reads the server's `Authorized_keys` file into a verifier; `ConfigError` naming the file (and line) when it cannot be used. */
export async function loadAuthorizedKeys(
  path: string,
  options: VerifierOptions & {
    readTextFile?: (path: string) => Promise<string>;
  } = {},
): Promise<{ verifier: Verifier; keys: number }> {
  let text: string;
  try {
    text = await (options.readTextFile ?? Deno.readTextFile)(path);
  } catch (error) {
    throw new ConfigError(
      `Cannot read Authorized_keys "${path}": ${reason(error)}`,
    );
  }
  let keys: string[];
  try {
    keys = parseAuthorizedKeys(text, path);
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
  if (keys.length === 0) {
    // An empty list would refuse everyone: almost certainly a mistake, so say so instead of starting.
    throw new ConfigError(
      `Cannot use Authorized_keys "${path}": it holds no public key (add the line printed by hsync keygen)`,
    );
  }
  return { verifier: await createVerifier(keys, options), keys: keys.length };
}

/** Where {@linkcode writeKeyPair} wrote the keys. */
export interface WrittenKeys {
  privateFile: string;
  publicFile: string;
  /** The public key line (without newline), to append to the server's Authorized_keys. */
  publicLine: string;
}

/**
 * `hsync keygen`: writes `id_ed25519` (mode 0600) and `id_ed25519.pub` into
 * `dir`, creating `dir` with mode 0700 if missing. Refuses to replace an
 * existing key unless `force`. Every failure is a `ConfigError` naming the
 * file.
 */
export async function writeKeyPair(
  dir: string,
  options: { force?: boolean; comment?: string } = {},
): Promise<WrittenKeys> {
  const privateFile = join(dir, "id_ed25519");
  const publicFile = `${privateFile}.pub`;
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new ConfigError(
      `Cannot create directory "${dir}": ${reason(error)}`,
    );
  }
  for (const file of [privateFile, publicFile]) {
    let exists = true;
    try {
      await Deno.lstat(file);
    } catch {
      exists = false;
    }
    if (!exists) continue;
    if (!options.force) {
      throw new ConfigError(
        `Refusing to overwrite "${file}": a key is already there (use --force to replace it)`,
      );
    }
    try {
      // Removed, not truncated: the new file is created with mode 0600 whatever the old one had.
      await Deno.remove(file);
    } catch (error) {
      throw new ConfigError(`Cannot replace "${file}": ${reason(error)}`);
    }
  }
  const keys = await generateKeys(options.comment ?? "");
  const write = async (file: string, text: string, mode: number) => {
    try {
      await Deno.writeTextFile(file, text, { createNew: true, mode });
      await Deno.chmod(file, mode); // the umask may have taken bits away from 0644; never adds any to 0600
    } catch (error) {
      throw new ConfigError(`Cannot write "${file}": ${reason(error)}`);
    }
  };
  await write(privateFile, keys.privatePem, 0o600);
  await write(publicFile, keys.publicLine, 0o644);
  return { privateFile, publicFile, publicLine: keys.publicLine.trim() };
}
