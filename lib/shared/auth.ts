/** Ed25519 key authentication: key files, request signing (client) and verification with replay protection (server). */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { dirname, join, resolve } from "node:path";
import { ConfigError } from "./errors.ts";
import { reason } from "./errors.ts";
import { ed25519Fingerprint } from "./key_fingerprint.ts";
import { serverOrigin } from "./server_origin.ts";
import {
  type AuthorizedKey,
  HSYNC_KEY_PREFIX as KEY_PREFIX,
  parseAuthorizedKeyLines,
} from "./authorized_keys.ts";
import { isOpenSshPrivateKey } from "./openssh_key.ts";
import { verifySshsig } from "./sshsig.ts";
import { NonceCache } from "./nonce_cache.ts";
import { DEFAULT_SKEW_MS } from "./wire.ts";

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64");
}

function unb64(text: string): Uint8Array<ArrayBuffer> {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text)) throw new TypeError("Bad base64");
  return new Uint8Array(Buffer.from(text, "base64"));
}

/** Scheme name in the `Authorization` header and prefix of public key lines. */
export const SCHEME = "HSync-Ed25519";
/** Scheme of a request signed in OpenSSH's SSHSIG form (namespace `hsync`) by an SSH key: same fields, `sig` is the binary SSHSIG. */
export const SSH_SCHEME = "HSync-SSHSIG";

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
      `Cannot use Identity_file "${source}": not a PEM private key (make one with hsync keygen)${
        isOpenSshPrivateKey(pem) ? " but an OpenSSH one" : ""
      }`,
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

/** Version tag that starts the signed text; bumped whenever its fields change. */
export const SIGNED_VERSION = "hsync-v2";

/** What a signature covers. */
export interface SignedFields {
  method: string;
  /** The server the request is meant for: `scheme://host:port` ({@linkcode serverOrigin}). */
  server: string;
  /** Path and query exactly as sent. */
  pathAndQuery: string;
  /** Milliseconds since the epoch. */
  timestamp: number;
  nonce: string;
  /** {@linkcode bodyDigest} of the body. */
  bodySha256: string;
}

/** The exact bytes that are signed for one request. */
export function signedText(fields: SignedFields): string {
  return [
    SIGNED_VERSION,
    fields.method.toUpperCase(),
    fields.server,
    fields.pathAndQuery,
    fields.timestamp,
    fields.nonce,
    fields.bodySha256,
  ].join("\n");
}

/** Hex SHA-256 of a request body (`-` when there is none). */
export function bodyDigest(
  body: Uint8Array | undefined,
): string {
  if (body === undefined || body.length === 0) return "-";
  return createHash("sha256").update(body).digest("hex");
}

/**
 * Builds the `Authorization` header value for a request to `url`: the
 * signature covers the server it names (scheme, host, port), so it is good
 * for that server only. The body's digest is `bodySha256` when given (a body
 * streamed from a file, hashed by the caller), else that of `body`.
 */
export async function signRequest(
  identity: Identity,
  method: string,
  url: URL,
  options: {
    body?: Uint8Array<ArrayBuffer>;
    bodySha256?: string;
    now?: number;
  } = {},
): Promise<string> {
  return await authorization(
    SCHEME,
    identity.publicKey,
    method,
    url,
    options,
    async (text) =>
      new Uint8Array(
        await crypto.subtle.sign(
          { name: "Ed25519" },
          identity.privateKey,
          text,
        ),
      ),
  );
}

/**
 * An `Authorization` header value of `scheme` for a request to `url` by the
 * key `publicKey` (base64 of its raw bytes): a fresh timestamp and nonce,
 * and `sign`'s signature over {@linkcode signedText}.
 */
export async function authorization(
  scheme: string,
  publicKey: string,
  method: string,
  url: URL,
  options: { body?: Uint8Array; bodySha256?: string; now?: number },
  sign: (text: Uint8Array<ArrayBuffer>) => Promise<Uint8Array>,
): Promise<string> {
  const ts = options.now ?? Date.now();
  const nonce = b64(crypto.getRandomValues(new Uint8Array(16)));
  const text = signedText({
    method,
    server: serverOrigin(url),
    pathAndQuery: url.pathname + url.search,
    timestamp: ts,
    nonce,
    bodySha256: options.bodySha256 ?? bodyDigest(options.body),
  });
  const sig = await sign(encoder.encode(text));
  return `${scheme} key=${publicKey}, ts=${ts}, nonce=${nonce}, sig=${
    b64(sig)
  }`;
}

/** The keys of an authorized-keys text (see {@linkcode parseAuthorizedKeyLines}); lines skipped are not reported. */
export function parseAuthorizedKeys(
  text: string,
  source: string,
): AuthorizedKey[] {
  return parseAuthorizedKeyLines(text, source).keys;
}

/** Options of {@linkcode createVerifier}. */
export interface VerifierOptions {
  /** Accepted clock difference in milliseconds. */
  skewMs?: number;
  /** The clock (ms since epoch). */
  now?: () => number;
  /** Most nonces remembered at once, over all keys (default {@linkcode MAX_NONCES}). */
  maxNonces?: number;
  /** Most nonces remembered for one key (default {@linkcode MAX_NONCES_PER_KEY}). */
  maxNoncesPerKey?: number;
}

/** Default of {@linkcode VerifierOptions.maxNonces}. */
export const MAX_NONCES = 1_000_000;
/**
 * Default of {@linkcode VerifierOptions.maxNoncesPerKey}: a nonce is kept
 * about 5 minutes, so a key signing over 300 requests a second all the time
 * reaches it (and then only requests signed before its oldest kept one are
 * refused).
 */
export const MAX_NONCES_PER_KEY = 100_000;

/** One request as the server checks it. */
export interface SignedRequest {
  method: string;
  /** The server it was sent to, one of hsyncd's own names: `scheme://host:port` (see `ServerNames.resolve`). */
  server: string;
  /** Path and query as received. */
  pathAndQuery: string;
  /** The `Authorization` header, null when absent. */
  authorization: string | null;
  /** The body digest the request declares (`-` without a body). */
  bodySha256: string;
}

/** The verdict on one request; `reason` is for the server's log, never for the client. */
export type Verdict = { ok: true } | { ok: false; reason: string };

/**
 * Checks one request: a fresh, valid signature by an authorised key over
 * exactly this request to exactly this server, with a nonce not seen before.
 */
export type Verifier = (request: SignedRequest) => Promise<Verdict>;

function refuse(reason: string): Verdict {
  return { ok: false, reason };
}

/**
 * Creates the server-side verifier for a list of authorised public keys
 * (base64 of the raw key: an hsync key; or with their kind). An hsync key
 * signs with {@linkcode SCHEME}, an SSH key with {@linkcode SSH_SCHEME} only.
 */
export async function createVerifier(
  publicKeys: Array<string | AuthorizedKey>,
  options: VerifierOptions = {},
): Promise<Verifier> {
  const skew = options.skewMs ?? DEFAULT_SKEW_MS;
  const now = options.now ?? Date.now;
  const nonces = new NonceCache(
    options.maxNonces ?? MAX_NONCES,
    options.maxNoncesPerKey ?? MAX_NONCES_PER_KEY,
  );
  const keys = new Map<
    string,
    { key: CryptoKey; raw: Uint8Array; schemes: Set<string> }
  >();
  for (const entry of publicKeys) {
    const { key: k, kind } = typeof entry === "string"
      ? { key: entry, kind: "hsync" }
      : entry;
    const raw = unb64(k);
    const known = keys.get(k) ?? {
      key: await crypto.subtle.importKey(
        "raw",
        raw,
        { name: "Ed25519" },
        false,
        ["verify"],
      ),
      raw,
      schemes: new Set<string>(),
    };
    known.schemes.add(kind === "ssh" ? SSH_SCHEME : SCHEME);
    keys.set(k, known);
  }
  // Everything up to the nonce being taken runs without an await, so copies
  // of one request arriving together cannot all get past the replay check.
  return async (request) => {
    const header = request.authorization;
    const scheme = [SCHEME, SSH_SCHEME].find((s) =>
      header?.startsWith(s + " ")
    );
    if (header === null || scheme === undefined) {
      return refuse(
        `no signature (no ${SCHEME} or ${SSH_SCHEME} Authorization header)`,
      );
    }
    const fields = new Map<string, string>();
    for (const part of header.slice(scheme.length + 1).split(",")) {
      const eq = part.indexOf("=");
      if (eq > 0) {
        fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
      }
    }
    const keyText = fields.get("key") ?? "";
    const known = keys.get(keyText);
    if (known === undefined) {
      return refuse(
        `unknown key ${
          ed25519Fingerprint(keyText) ?? "(malformed)"
        } (not in Authorized_keys)`,
      );
    }
    if (!known.schemes.has(scheme)) {
      return refuse(
        `key in Authorized_keys as ${
          scheme === SCHEME ? "an SSH" : "an hsync"
        } key signs with ${scheme === SCHEME ? SSH_SCHEME : SCHEME} only`,
      );
    }
    const ts = Number(fields.get("ts"));
    const nonce = fields.get("nonce") ?? "";
    let sig: Uint8Array<ArrayBuffer>;
    try {
      sig = unb64(fields.get("sig") ?? "");
    } catch {
      return refuse("signature is not base64");
    }
    if (!Number.isSafeInteger(ts) || !/^[A-Za-z0-9+/=]{16,64}$/.test(nonce)) {
      return refuse("malformed ts or nonce");
    }
    const t = now();
    if (Math.abs(t - ts) > skew) {
      return refuse(
        `stale time: timestamp ${
          Math.round((ts - t) / 1000)
        } s from the server's clock`,
      );
    }
    const taken = nonces.take(keyText, nonce, ts, Math.max(t, ts) + skew, t);
    if (taken !== undefined) return refuse(taken);
    const text = encoder.encode(signedText({
      method: request.method,
      server: request.server,
      pathAndQuery: request.pathAndQuery,
      timestamp: ts,
      nonce,
      bodySha256: request.bodySha256,
    }));
    let ok: boolean;
    let why = "";
    if (scheme === SSH_SCHEME) {
      why = await verifySshsig(sig, text, known.raw, known.key) ?? "";
      ok = why === "";
    } else {
      try {
        ok = await crypto.subtle.verify(
          { name: "Ed25519" },
          known.key,
          sig,
          text,
        );
      } catch {
        ok = false; // a signature of the wrong length
      }
    }
    if (ok) nonces.confirm(keyText, nonce);
    else nonces.release(keyText, nonce);
    return ok ? { ok } : refuse(
      `bad signature (not over this method, server ${request.server}, path and body${
        why === "" ? "" : `: ${why}`
      })`,
    );
  };
}

/** A loaded `Authorized_keys` file. */
export interface AuthorizedKeys {
  verifier: Verifier;
  /** Number of keys. */
  keys: number;
  /** Warnings to log (the file or its directory writable by others). */
  warnings: string[];
}

/**
 * Reads the server's `Authorized_keys` file into a verifier; `ConfigError`
 * naming the file (and line) when it cannot be used. Warns when the file, or
 * a directory holding it, can be written by group or others: whoever can
 * write there can add a key.
 */
export async function loadAuthorizedKeys(
  path: string,
  options: VerifierOptions & {
    readTextFile?: (path: string) => Promise<string>;
    stat?: (path: string) => Promise<{ mode: number | null }>;
    realPath?: (path: string) => Promise<string>;
  } = {},
): Promise<AuthorizedKeys> {
  let text: string;
  try {
    text = await (options.readTextFile ?? Deno.readTextFile)(path);
  } catch (error) {
    throw new ConfigError(
      `Cannot read Authorized_keys "${path}": ${reason(error)}`,
    );
  }
  let parsed: ReturnType<typeof parseAuthorizedKeyLines>;
  try {
    parsed = parseAuthorizedKeyLines(text, path);
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
  const keys = parsed.keys;
  if (keys.length === 0) {
    // An empty list would refuse everyone: almost certainly a mistake, so say so instead of starting.
    throw new ConfigError(
      `Cannot use Authorized_keys "${path}": it holds no public key (add the line printed by hsync keygen)`,
    );
  }
  return {
    verifier: await createVerifier(keys, options),
    keys: keys.length,
    warnings: [
      ...parsed.warnings,
      ...await writableWarnings(
        path,
        options.stat ?? Deno.stat,
        options.realPath ?? Deno.realPath,
      ),
    ],
  };
}

/** One line per path (the file, its directory, the real file's directory) that group or others can write. */
async function writableWarnings(
  path: string,
  stat: (path: string) => Promise<{ mode: number | null }>,
  realPath: (path: string) => Promise<string>,
): Promise<string[]> {
  const absolute = resolve(path);
  const dirs = [dirname(absolute)];
  try {
    const real = dirname(await realPath(absolute));
    if (real !== dirs[0]) dirs.push(real);
  } catch {
    // Read a moment ago; a failure now leaves only the named directory to check.
  }
  const warnings: string[] = [];
  for (const target of [absolute, ...dirs]) {
    let mode: number | null;
    try {
      mode = (await stat(target)).mode;
    } catch {
      continue;
    }
    if (mode === null || (mode & 0o022) === 0) continue;
    const octal = (mode & 0o7777).toString(8).padStart(4, "0");
    warnings.push(
      target === absolute
        ? `Authorized_keys "${path}" is writable by group or others (mode ${octal}): whoever can write it can add a key; run chmod go-w on it`
        : `Authorized_keys "${path}" is in directory "${target}", writable by group or others (mode ${octal}): whoever can write there can replace the file; run chmod go-w on it`,
    );
  }
  return warnings;
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
