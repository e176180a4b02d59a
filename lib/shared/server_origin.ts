/** The origin a signed request is meant for (`scheme://host:port`), and host[:port] text as a `Host` header or a `Server_name` entry holds it. */

/** The schemes a signature can name. */
export type Scheme = "http" | "https";

/** The port a URL without one means, by scheme. */
export const DEFAULT_PORTS: Readonly<Record<Scheme, number>> = {
  http: 80,
  https: 443,
};

/**
 * The server a request to `url` is meant for, as it is signed:
 * `scheme://host:port`, the host as the URL parser writes it (lower case,
 * IPv6 in brackets, IPv4 in dotted decimal), the port always written (a URL
 * without one means the scheme's default).
 */
export function serverOrigin(url: URL): string {
  const scheme = url.protocol.slice(0, -1);
  if (scheme !== "http" && scheme !== "https") {
    throw new TypeError(
      `Cannot sign a request to "${url.href}": only http and https URLs can be signed`,
    );
  }
  const port = url.port === "" ? DEFAULT_PORTS[scheme] : Number(url.port);
  return `${scheme}://${url.hostname}:${port}`;
}

/** A host and optional port, canonical as in {@linkcode serverOrigin}. */
export interface Authority {
  host: string;
  port?: number;
}

// A DNS name or IPv4 address, or an IPv6 address in brackets; then an optional port.
const AUTHORITY = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$/;

/**
 * Parses `host` or `host:port` (IPv6 in brackets), as a `Host` header or a
 * `Server_name` entry holds it; undefined for anything else (a path, user
 * info, spaces, a port outside 1-65535).
 */
export function parseAuthority(text: string): Authority | undefined {
  const m = AUTHORITY.exec(text);
  if (m === null) return undefined;
  const port = m[2] === undefined ? undefined : Number(m[2]);
  if (port !== undefined && (port < 1 || port > 65535)) return undefined;
  let host: string;
  try {
    host = new URL(`http://${m[1]}/`).hostname;
  } catch {
    return undefined;
  }
  return port === undefined ? { host } : { host, port };
}

/**
 * One entry of `Server_name`: `host` (that host on the server's own port),
 * `host:port`, or `scheme://host[:port]` for a proxy that changes the
 * scheme (a missing port then means the scheme's default, as in a URL).
 */
export interface ServerNameEntry {
  scheme?: Scheme;
  host: string;
  port?: number;
}

/** Parses one `Server_name` entry; a `TypeError` saying why when it is malformed. */
export function parseServerName(entry: string): ServerNameEntry {
  const text = entry.trim();
  const m = /^(https?):\/\/(.*)$/i.exec(text);
  const authority = parseAuthority(m === null ? text : m[2]);
  if (authority === undefined) {
    throw new TypeError(
      `"${text}" is not host, host:port or https://host[:port] (an IPv6 address goes in brackets: [::1]:10808)`,
    );
  }
  if (m === null) return authority;
  return { scheme: m[1].toLowerCase() as Scheme, ...authority };
}
