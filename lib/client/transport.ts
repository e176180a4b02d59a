/** How the client reaches the server: the HTTP client (TLS trust) and the request signer (key authentication). */
import { isAbsolute, join } from "node:path";
import type { ClientSettings } from "../shared/config.ts";
import { ConfigError, reason } from "../shared/errors.ts";

/** What every request of a run goes through. */
export interface Transport {
  /** HTTP client of a TLS run (HTTP/1.1 only, and the trusted CA); undefined without TLS. */
  client?: Deno.HttpClient;
  /** CA_file's certificates (PEM) that `client` trusts, for senders other than fetch. */
  caCerts?: string[];
  /** Signs a request before it is sent; undefined without an identity. */
  sign?: RequestSigner;
  /** The identity file used for signing, if any (for messages). */
  identityFile?: string;
  /** `SHA256:...` of the signing key, as ssh prints it (for messages). */
  fingerprint?: string;
}

/**
 * The sign hook of a run; with ssh-agent's keys, `retryUnauthorized` says
 * whether a request refused with 401 should be sent again (signed by the
 * next key).
 */
export type RequestSigner = ((request: Request) => Promise<void> | void) & {
  retryUnauthorized?: (request: Request) => boolean;
};

/** File name of the default identity in `HSYNC_DIR`, written by `hsync keygen`. */
export const DEFAULT_IDENTITY = "id_ed25519";

/** Seams of {@linkcode openTransport} (tests replace the file reads). */
export interface TransportOptions {
  readTextFile?: (path: string) => Promise<string>;
  /** `lstat`-like: mode bits of a file, or throws `NotFound`. */
  stat?: (path: string) => Promise<{ mode: number | null }>;
  /** `SSH_AUTH_SOCK`: with no identity file, requests are signed by the agent's ed25519 keys. */
  sshAuthSock?: string;
}

/**
 * Builds the transport of a run from its settings. With `Tls` and a
 * `CA_file`, the HTTP client also trusts that CA (its certificates are
 * added to the default roots); without `CA_file` the default trust store is
 * used. Over TLS the client speaks HTTP/1.1 only: HTTP/2 would carry every
 * stream of a run on one connection, within one connection's window (a
 * 256 MiB file 50 ms away: 5.2 s over HTTP/2, 1.2 s over HTTP/1.1
 * connections, as without TLS). Host names are always checked by the TLS
 * stack. With an `Identity_file` (or `$HSYNC_DIR/id_ed25519` when it exists),
 * every request is signed. Relative paths are resolved against `HSYNC_DIR`.
 * Throws `ConfigError` with one line naming the file when it cannot be used.
 */
export async function openTransport(
  settings: ClientSettings,
  hsyncDir: string,
  options: TransportOptions = {},
): Promise<Transport> {
  const read = options.readTextFile ?? Deno.readTextFile;
  const stat = options.stat ?? Deno.stat;
  const transport: Transport = {};

  if (settings.tls && settings.caFile === "") {
    transport.client = Deno.createHttpClient({ http2: false });
  }
  if (settings.tls && settings.caFile !== "") {
    const caFile = resolveIn(hsyncDir, settings.caFile);
    const pem = await readConfigured(read, "CA_file", caFile);
    if (
      !/-----BEGIN CERTIFICATE-----[\s\S]+-----END CERTIFICATE-----/.test(pem)
    ) {
      throw new ConfigError(
        `Cannot use CA_file "${caFile}": it holds no PEM certificate`,
      );
    }
    try {
      transport.client = Deno.createHttpClient({
        caCerts: [pem],
        http2: false,
      });
      transport.caCerts = [pem];
    } catch (error) {
      throw new ConfigError(
        `Cannot use CA_file "${caFile}": ${
          error instanceof Error ? error.message : String(error)
        }`,
      );
    }
  }

  // The signing code (node's crypto among it) is loaded only for a run that
  // signs: an unsigned one starts sooner without it.
  const identityFile = await identityFileOf(settings, hsyncDir, stat);
  if (identityFile !== undefined) {
    const signing = await import("./request_signer.ts");
    const pem = await readIdentityText(read, stat, identityFile);
    const signer = await signing.identitySigner(pem, identityFile);
    transport.identityFile = identityFile;
    transport.fingerprint = signer.fingerprint;
    transport.sign = signer.sign;
  } else if (options.sshAuthSock) {
    const signing = await import("./request_signer.ts");
    transport.sign = await signing.agentSigner(options.sshAuthSock);
  }
  return transport;
}

/**
 * The key file a run signs with: `Identity_file` (relative to `HSYNC_DIR`),
 * else `$HSYNC_DIR/id_ed25519` when it exists; undefined when requests go
 * unsigned. Used by `openTransport` and shown by `hsync echo-config`.
 */
export async function identityFileOf(
  settings: Pick<ClientSettings, "identityFile">,
  hsyncDir: string,
  stat: (path: string) => Promise<unknown> = Deno.stat,
): Promise<string | undefined> {
  if (settings.identityFile !== "") {
    return resolveIn(hsyncDir, settings.identityFile);
  }
  const fallback = join(hsyncDir, DEFAULT_IDENTITY);
  try {
    await stat(fallback);
    return fallback;
  } catch (error) {
    // No default key: requests go unsigned. Any other failure is reported when reading it.
    return error instanceof Deno.errors.NotFound ? undefined : fallback;
  }
}

/** The text of the key file at `path`, refused when other users can read it (as ssh does). */
async function readIdentityText(
  read: (path: string) => Promise<string>,
  stat: (path: string) => Promise<{ mode: number | null }>,
  path: string,
): Promise<string> {
  let mode: number | null;
  try {
    mode = (await stat(path)).mode;
  } catch (error) {
    throw new ConfigError(
      `Cannot read Identity_file "${path}": ${reason(error)}`,
    );
  }
  // Like ssh: a private key others can read is not a secret any more.
  if (mode !== null && (mode & 0o077) !== 0) {
    throw new ConfigError(
      `Cannot use Identity_file "${path}": it is readable by other users (mode ${
        (mode & 0o777).toString(8).padStart(4, "0")
      }); run chmod 600 on it`,
    );
  }
  return await readConfigured(read, "Identity_file", path);
}

async function readConfigured(
  read: (path: string) => Promise<string>,
  key: string,
  path: string,
): Promise<string> {
  try {
    return await read(path);
  } catch (error) {
    throw new ConfigError(`Cannot read ${key} "${path}": ${reason(error)}`);
  }
}

function resolveIn(hsyncDir: string, path: string): string {
  return isAbsolute(path) ? path : join(hsyncDir, path);
}

/**
 * A plain-words reason for a TLS or protocol failure in a fetch error's text
 * (rustls and hyper wording), or undefined when the text is about something
 * else. Tells the user which setting to look at.
 */
export function tlsReason(text: string): string | undefined {
  if (/UnknownIssuer|unknown ?issuer|self[- ]signed/i.test(text)) {
    return "the server's certificate is not signed by a trusted CA (set CA_file to the CA that signed it)";
  }
  const name = /certificate not valid for name "([^"]*)"/.exec(text);
  if (name !== null || /NotValidForName/i.test(text)) {
    return `the server's certificate is not valid for the host name${
      name === null ? "" : ` "${name[1]}"`
    } (connect with a name the certificate lists)`;
  }
  if (/certificate.*expired|Expired/i.test(text)) {
    return "the server's certificate has expired or is not valid yet";
  }
  if (/invalid peer certificate/i.test(text)) {
    return `the server's certificate is refused: ${
      text.slice(text.search(/invalid peer certificate/i) + 25).trim()
    }`;
  }
  if (/InvalidContentType|corrupt message/i.test(text)) {
    return "the server does not speak HTTPS";
  }
  if (/invalid HTTP version parsed/i.test(text)) {
    return "the server does not speak HTTP";
  }
  return undefined;
}
