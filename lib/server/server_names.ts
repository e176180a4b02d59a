/** The server a signed request is bound to: the origin a client signs, and the names hsyncd answers to (listen address, certificate, `Server_name`). */
import { X509Certificate } from "node:crypto";
import { isLoopbackHost } from "../shared/host_allow.ts";
import {
  type Authority,
  DEFAULT_PORTS,
  parseAuthority,
  type Scheme,
  type ServerNameEntry,
} from "../shared/server_origin.ts";

/**
 * The DNS names and IP addresses in a PEM certificate's Subject Alternative
 * Names (the first certificate of a chain). Wildcard names are left out: a
 * certificate for `*.example.com` shared by several servers would otherwise
 * let a signature for one be replayed to another. An unreadable certificate
 * gives none (serving it fails anyway).
 */
export function certificateNames(pem: string): string[] {
  let san: string | undefined;
  try {
    san = new X509Certificate(pem).subjectAltName;
  } catch {
    return [];
  }
  const names: string[] = [];
  for (const item of (san ?? "").split(/,\s*/)) {
    const m = /^(DNS|IP Address):(.+)$/.exec(item.trim());
    if (m === null || m[2].includes("*")) continue;
    const authority = parseAuthority(
      m[1] === "IP Address" && m[2].includes(":") ? `[${m[2]}]` : m[2],
    );
    if (authority !== undefined) names.push(authority.host);
  }
  return names;
}

/** Options of {@linkcode ServerNames}. */
export interface ServerNamesOptions {
  /** Whether hsyncd serves HTTPS. */
  tls: boolean;
  /** The address it listens on (`Host_ip`). */
  hostIp: string;
  /** The port it listens on. */
  port: number;
  /** This machine's host name, a name of a server listening on a wildcard address. */
  hostname?: string;
  /**
   * This machine's interface addresses, names of a server listening on a
   * wildcard address. Asked at start and again, at most every
   * {@linkcode ServerNamesOptions.refreshMs}, when a request names an
   * address not known yet (an interface that came up later). A throw counts
   * as no addresses.
   */
  interfaces?: () => string[];
  /** The PEM certificate served: its DNS and IP names are names. */
  certificate?: string;
  /** `Server_name`. */
  configured?: readonly ServerNameEntry[];
  /** Least milliseconds between two readings of `interfaces` (default 10 s). */
  refreshMs?: number;
  /** The clock (ms). */
  now?: () => number;
}

/**
 * The names hsyncd accepts a signature for, as origins
 * `scheme://host:port`. Names of this machine's loopback (`localhost`,
 * 127.0.0.0/8, `::1`) that come from the listen address, the host's
 * interfaces or the certificate count only for a peer on this machine: to a
 * client elsewhere, `localhost` is another machine. `Server_name` entries
 * count for every peer.
 */
export class ServerNames {
  /** The scheme hsyncd itself serves. */
  readonly scheme: Scheme;
  /** Whether hsyncd listens on a wildcard address (so its interface addresses are names). */
  readonly wildcard: boolean;
  readonly #port: number;
  /** origin -> whether it counts only for a loopback peer */
  readonly #fixed = new Map<string, boolean>();
  #interfaceNames = new Map<string, boolean>();
  readonly #interfaces?: () => string[];
  readonly #ipv4Only: boolean;
  readonly #refreshMs: number;
  readonly #now: () => number;
  #readAt = -Infinity;

  constructor(options: ServerNamesOptions) {
    this.scheme = options.tls ? "https" : "http";
    this.#port = options.port;
    this.#refreshMs = options.refreshMs ?? 10_000;
    this.#now = options.now ?? Date.now;
    const own = (host: string) => this.#add(this.#fixed, host);
    const listen = parseAuthority(
      options.hostIp.includes(":") && !options.hostIp.startsWith("[")
        ? `[${options.hostIp}]`
        : options.hostIp,
    );
    this.wildcard = listen?.host === "0.0.0.0" || listen?.host === "[::]";
    this.#ipv4Only = listen?.host === "0.0.0.0";
    if (this.wildcard) {
      for (const host of ["localhost", "127.0.0.1"]) own(host);
      if (!this.#ipv4Only) own("[::1]");
      const name = parseAuthority(options.hostname ?? "");
      if (name !== undefined) own(name.host);
      this.#interfaces = options.interfaces;
      this.#readInterfaces();
    } else if (listen !== undefined) {
      own(listen.host);
      // The name a client on this machine most often uses for it.
      if (isLoopbackHost(listen.host)) own("localhost");
    }
    for (const host of certificateNames(options.certificate ?? "")) own(host);
    for (const entry of options.configured ?? []) {
      const scheme = entry.scheme ?? this.scheme;
      const port = entry.port ??
        (entry.scheme === undefined ? this.#port : DEFAULT_PORTS[scheme]);
      this.#fixed.set(`${scheme}://${entry.host}:${port}`, false);
    }
  }

  /**
   * The origin a request for `authority` (its `Host`, or HTTP/2
   * `:authority`) is bound to, when that is one of this server's names: the
   * server's own scheme first, then the other (a `Server_name` entry with a
   * scheme). Undefined when it is not a name of this server for `peer`
   * (the client's address).
   */
  resolve(authority: string, peer: string): string | undefined {
    const parsed = parseAuthority(authority);
    if (parsed === undefined) return undefined;
    const fromLoopback = isLoopbackHost(peer);
    const found = this.#find(parsed, fromLoopback);
    if (found !== undefined || this.#interfaces === undefined) return found;
    if (this.#now() - this.#readAt < this.#refreshMs) return undefined;
    if (!/^[\d.]+$|^\[/.test(parsed.host)) return undefined;
    this.#readInterfaces();
    return this.#find(parsed, fromLoopback);
  }

  /** Every origin accepted now, sorted (for the start-up line). */
  list(): string[] {
    return [...new Set([...this.#fixed.keys(), ...this.#interfaceNames.keys()])]
      .sort();
  }

  #find(authority: Authority, fromLoopback: boolean): string | undefined {
    const other: Scheme = this.scheme === "https" ? "http" : "https";
    for (const scheme of [this.scheme, other]) {
      const origin = `${scheme}://${authority.host}:${
        authority.port ?? DEFAULT_PORTS[scheme]
      }`;
      const loopbackOnly = this.#fixed.get(origin) ??
        this.#interfaceNames.get(origin);
      if (loopbackOnly === false || (loopbackOnly === true && fromLoopback)) {
        return origin;
      }
    }
    return undefined;
  }

  #add(names: Map<string, boolean>, host: string): void {
    names.set(`${this.scheme}://${host}:${this.#port}`, isLoopbackHost(host));
  }

  #readInterfaces(): void {
    this.#readAt = this.#now();
    let addresses: string[] = [];
    try {
      addresses = this.#interfaces?.() ?? [];
    } catch {
      // Kept as before: the start-up check already said why.
      return;
    }
    const names = new Map<string, boolean>();
    for (const address of addresses) {
      const v6 = address.includes(":");
      if (v6 && this.#ipv4Only) continue;
      const parsed = parseAuthority(v6 ? `[${address}]` : address);
      if (parsed !== undefined) this.#add(names, parsed.host);
    }
    this.#interfaceNames = names;
  }
}

/**
 * The authority a request was sent to: its `Host` header, or (HTTP/2, which
 * has none) the `:authority` Deno put in `request.url`. Undefined when both
 * are there and differ (an absolute request target naming another server)
 * or when it is not a bare `host[:port]`.
 */
export function requestAuthority(request: Request): string | undefined {
  const href = request.url;
  const start = href.indexOf("://") + 3;
  let end = start;
  while (end < href.length && !"/?#".includes(href[end])) end++;
  const inUrl = href.slice(start, end);
  const host = request.headers.get("host");
  if (host !== null && host.toLowerCase() !== inUrl.toLowerCase()) {
    return undefined;
  }
  const authority = host ?? inUrl;
  return parseAuthority(authority) === undefined ? undefined : authority;
}
