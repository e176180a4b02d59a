/** The request handler of hsyncd: the v1 HTTP interface (DESIGN.md §5) behind Allowed_host and the path jail. */
import { createHash } from "node:crypto";
import { posix } from "node:path";
import {
  type BundleFrame,
  encodeFrame,
  encodeFrames,
} from "../shared/bundle_codec.ts";
import type { ServerSettings } from "../shared/config.ts";
import {
  BODY_DIGEST_HEADER,
  bodyDigest,
  type Verifier,
} from "../shared/auth.ts";
import { requestAuthority, type ServerNames } from "./server_names.ts";
import { HttpError } from "../shared/errors.ts";
import { etagFor, modeBits, mtimeMs } from "../shared/file_identity.ts";
import { createHostMatcher, normalizeAddress } from "../shared/host_allow.ts";
import {
  type CheckedPath,
  createPathGuard,
  type NamesCache,
  newSmallReadCache,
  type OpenedFile,
  type PathGuard,
} from "./jail/path_guard.ts";
import {
  KeyedLimiter,
  Limiter,
  LimitError,
  type Release,
} from "../shared/limiter.ts";
import {
  contentRange,
  parseRangeHeader,
  type RangeRequest,
} from "../shared/byte_range.ts";
import {
  relativeComponents,
  RelativePathError,
} from "../shared/relative_path.ts";
import { VERSION } from "../shared/version.ts";
import { WatchHub } from "./watch_hub.ts";
import {
  API,
  API_VERSION,
  type BundleHeader,
  type BundleRequest,
  type EntryType,
  type ErrorBody,
  type HashResult,
  type Health,
  type ListEntry,
  type StatEntry,
  type WatchResult,
} from "../shared/wire.ts";

/** One line of the access log. */
export interface AccessLogEntry {
  time: Date;
  /** Peer address, IPv4-mapped IPv6 shown as IPv4. */
  remote: string;
  method: string;
  /** Path and query of the request. */
  url: string;
  status: number;
  /** Body bytes announced by `Content-Length` (0 for HEAD), null when streamed without a known length. */
  bytes: number | null;
  /** Milliseconds until the response headers were ready. */
  ms: number;
}

/**
 * Bounds on the work one server does; every field has a default in
 * {@linkcode DEFAULT_LIMITS}. A `peer*` limit applies to each peer address
 * on its own, beside the limit for all peers together; a request refused by
 * any of them is answered 503 `busy` with `Retry-After` and the limit's name
 * in `x-hsync-limit`.
 */
export interface ServerLimits {
  /** Requests being answered at once (from admission until the body is sent), long-polls apart. */
  maxRequests: number;
  /** Requests of one peer being answered at once, long-polls apart. */
  peerRequests: number;
  /** Long-polls (`/v1/watch`) open at once. */
  maxWatches: number;
  /** Long-polls of one peer open at once. */
  peerWatches: number;
  /** Longest request target (path and query) in bytes; longer gets 414. */
  maxUrlBytes: number;
  /** Most bytes of request header names and values together; more gets 431. */
  maxHeaderBytes: number;
  /** Bytes of request bodies held in memory at once (claimed before the first byte is read, until the request completes). */
  bodyBytes: number;
  /** Bytes of request bodies of one peer held in memory at once. */
  peerBodyBytes: number;
  /** Milliseconds a request body may go without a byte before it is abandoned (408). */
  bodyIdleMs: number;
  /** Hash jobs running at once. */
  hashJobs: number;
  /** Hash jobs waiting for a slot; one more is answered 503 `busy`. */
  hashQueue: number;
  /** Hash jobs of one peer running, or waiting in the shared queue, at once. */
  peerHashJobs: number;
  /** Hash jobs of one peer waiting behind its `peerHashJobs`; one more is answered 503 `busy`. */
  peerHashQueue: number;
  /** Most bytes one hash request may cover; a longer span is refused (400 `too_large`), ask in pieces. */
  hashMaxBytes: number;
  /** Hash results remembered, by (etag, offset, length). */
  hashCacheEntries: number;
  /** Paths in one bundle request. */
  bundleMaxPaths: number;
  /** Largest file sent in a bundle; larger ones get a `too_large` error frame. */
  bundleMaxFileBytes: number;
  /** Largest JSON body of a bundle request. */
  bundleMaxBodyBytes: number;
  /** Files of a bundle read ahead concurrently. */
  bundleReadAhead: number;
  /**
   * Bytes of file data one bundle response holds read but not yet handed to
   * the connection (one file is always allowed, up to `bundleMaxFileBytes`):
   * what a slow client can make the server keep in memory.
   */
  bundleReadAheadBytes: number;
  /** Bundle responses streaming at once; more wait their turn, in order. */
  bundleJobs: number;
  /** Bundle requests waiting for a streaming slot; one more is answered 503 `busy`. */
  bundleQueue: number;
  /** Bundles of one peer streaming, or waiting in the shared queue, at once. */
  peerBundles: number;
  /** Bundles of one peer waiting behind its `peerBundles`; one more is answered 503 `busy`. */
  peerBundleQueue: number;
  /**
   * Listings streaming at once; more wait their turn, in order. A listing is
   * CPU-bound (an `lstat` per entry): a few at a time keep the event loop free
   * for every other request and bound the names held in memory.
   */
  listJobs: number;
  /** Listings waiting for a streaming slot; one more is answered 503 `busy`. */
  listQueue: number;
  /** Listings of one peer streaming at once. */
  peerListings: number;
  /** Listings of one peer waiting behind its `peerListings`; one more is answered 503 `busy`. */
  peerListQueue: number;
}

/** The limits used when {@linkcode HandlerOptions.limits} leaves a field out. */
export const DEFAULT_LIMITS: Readonly<ServerLimits> = {
  maxRequests: 512,
  // Three quarters: one address (many clients behind a NAT, or one host
  // running many pulls) never takes the last 128. 64 hsync pulls from one
  // address need about this many (bench/scale.ts: 64/64 done; 35/64 at 256).
  peerRequests: 384,
  maxWatches: 256,
  // One `hsync --sync` holds one long-poll; half, as for requests.
  peerWatches: 128,
  // A path of MAX_PATH_BYTES percent-encoded (3 characters per byte) still fits.
  maxUrlBytes: 16 * 1024,
  maxHeaderBytes: 16 * 1024,
  // Eight bundle bodies of the largest size; hsync's are a few hundred KiB.
  bodyBytes: 64 * 1024 * 1024,
  peerBodyBytes: 16 * 1024 * 1024,
  bodyIdleMs: 10_000,
  hashJobs: 2,
  hashQueue: 16,
  // One job per peer leaves the other slot to everyone else.
  peerHashJobs: 1,
  // hsync asks for at most 4 hashes at once; a few clients may share an address.
  peerHashQueue: 32,
  // hsync asks for spans of at most 64 MiB (pull.ts HASH_SPAN_BYTES): well under a second of hashing.
  hashMaxBytes: 64 * 1024 * 1024,
  hashCacheEntries: 1024,
  bundleMaxPaths: 10_000,
  bundleMaxFileBytes: 1024 * 1024,
  bundleMaxBodyBytes: 8 * 1024 * 1024,
  bundleReadAhead: 8,
  bundleReadAheadBytes: 2 * 1024 * 1024,
  // Each streaming bundle holds up to bundleReadAheadBytes plus what the
  // connection buffers; more of them at once only spreads the same CPU thinner.
  bundleJobs: 16,
  bundleQueue: 448,
  // Half of the streaming slots: another address always finds one free. One
  // hsync sends at most 4 bundles at once (pull.ts BUNDLE_SLOTS); the rest of
  // an address's bundles wait in its own line.
  peerBundles: 8,
  peerBundleQueue: 248,
  // Listings are CPU-bound (an lstat per entry) and hold a directory's
  // names: two at a time leave the event loop to everything else.
  listJobs: 2,
  listQueue: 64,
  peerListings: 1,
  peerListQueue: 16,
};

/** Options of {@linkcode createHandler}. */
export interface HandlerOptions {
  settings: ServerSettings;
  /** `HSYNC_DIR`: always refused, with everything under it. */
  hsyncDir: string;
  /** Host name reported by `/v1/health`. */
  hostname: string;
  /** Called once per request, when the response headers are ready. */
  log?: (entry: AccessLogEntry) => void;
  /** Called with each unexpected error (answered 500 or sent as an `internal` bundle frame). */
  onError?: (error: unknown, request: Request) => void;
  /** Overrides of {@linkcode DEFAULT_LIMITS}. */
  limits?: Partial<ServerLimits>;
  /** When set, every request must carry a valid signature (`Authorization: HSync-Ed25519 ...`), else 401. */
  verifier?: Verifier;
  /**
   * The names (and the scheme) a signature may be bound to: a signed request
   * whose `Host` is not one of them gets 401. Without it every signed
   * request is refused.
   */
  serverNames?: ServerNames;
  /** Called with the reason a request got 401 from {@linkcode HandlerOptions.verifier} (for the log; the client is told nothing). */
  onUnauthorized?: (reason: string, request: Request, remote: string) => void;
  /** The change feed behind `/v1/watch`; one is created when absent. */
  watchHub?: WatchHub;
}

/** A `Deno.serve` handler. */
export type Handler = (
  request: Request,
  info: Deno.ServeHandlerInfo<Deno.NetAddr>,
) => Promise<Response>;

interface Context {
  /** Reads of whole directories for listings, one at a time (see {@linkcode DirectoryReads}). */
  directoryReads: DirectoryReads;
  /** Listings streaming or waiting to: in all and per peer. */
  listings: KeyedLimiter;
  options: HandlerOptions;
  guard: PathGuard;
  limits: ServerLimits;
  /** Requests being answered, long-polls apart: in all and per peer. */
  requests: KeyedLimiter;
  /** Long-polls open: in all and per peer. */
  watches: KeyedLimiter;
  /** Bytes of request bodies held in memory: in all and per peer. */
  bodies: KeyedLimiter;
  /** Hash jobs running or waiting: in all and per peer. */
  hashJobs: KeyedLimiter;
  hashCache: Lru<HashResult>;
  /** Bundle responses streaming or waiting to: in all and per peer. */
  bundles: KeyedLimiter;
  /** File bodies streaming now. */
  fileBodies: { running: number };
  watchHub: WatchHub;
}

type Run = (ctx: Context, request: Request, url: URL) => Promise<Response>;

const ENDPOINTS = new Map<string, { methods: string[]; run: Run }>([
  [API.health, { methods: ["GET", "HEAD"], run: health }],
  [API.stat, { methods: ["GET", "HEAD"], run: stat }],
  [API.list, { methods: ["GET", "HEAD"], run: list }],
  [API.file, { methods: ["GET", "HEAD"], run: file }],
  [API.hash, { methods: ["GET", "HEAD"], run: hash }],
  [API.bundle, { methods: ["POST"], run: bundle }],
  [API.watch, { methods: ["GET"], run: watch }],
]);

/**
 * Bytes a file body reads at a time. Each chunk costs a round through the
 * response pipeline (measured here: 1 GiB at 128 KiB took the server 1.3 s of
 * CPU, at 512 KiB 0.8 s), while each streaming body holds a few chunks (the
 * connection's write buffer alone takes up to about 400 KiB): few bodies
 * stream in large chunks, many in small ones.
 */
const FILE_CHUNK_LARGE = 512 * 1024;
const FILE_CHUNK = 128 * 1024;
/** File bodies streaming at once up to which each reads `FILE_CHUNK_LARGE`: one hsync pull (8 ranges or 8 files). */
const LARGE_CHUNK_BODIES = 8;
const HASH_CHUNK = 1024 * 1024;
const LIST_BATCH = 256;
const BUNDLE_CHUNK = 256 * 1024;
/** Most paths one synchronous batch looks at (it stops earlier at BUNDLE_CHUNK bytes). */
const QUICK_BATCH = 128;
const encoder = new TextEncoder();

/**
 * Builds the handler of hsyncd. Resolves the configured directories once, so
 * a missing `Only_allowed_path` or an invalid `Allowed_host` pattern throws
 * `ConfigError` here, before the server listens.
 */
export async function createHandler(options: HandlerOptions): Promise<Handler> {
  const { settings } = options;
  const hostAllowed = createHostMatcher(settings.allowedHost);
  const guard = await createPathGuard({
    onlyAllowedPath: settings.onlyAllowedPath,
    forbiddenDir: settings.forbiddenDir,
    forbiddenFile: settings.forbiddenFile,
    alwaysDenied: [
      options.hsyncDir,
      settings.certFile,
      settings.keyFile,
      settings.authorizedKeys,
    ].filter((p) => p !== ""),
  });
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const keyed = (
    total: number,
    totalName: string,
    perKey: number,
    perKeyName: string,
    queues: { total?: number; perKey?: number } = { total: 0, perKey: 0 },
  ) =>
    new KeyedLimiter(
      new Limiter(total, { queue: queues.total, name: totalName }),
      { perKey, perKeyQueue: queues.perKey, name: perKeyName },
    );
  const ctx: Context = {
    options,
    guard,
    limits,
    requests: keyed(
      limits.maxRequests,
      "maxRequests",
      limits.peerRequests,
      "peerRequests",
    ),
    watches: keyed(
      limits.maxWatches,
      "maxWatches",
      limits.peerWatches,
      "peerWatches",
    ),
    bodies: keyed(
      limits.bodyBytes,
      "bodyBytes",
      limits.peerBodyBytes,
      "peerBodyBytes",
    ),
    hashJobs: keyed(
      limits.hashJobs,
      "hashQueue",
      limits.peerHashJobs,
      "peerHashQueue",
      { total: limits.hashQueue, perKey: limits.peerHashQueue },
    ),
    hashCache: new Lru(limits.hashCacheEntries),
    directoryReads: new DirectoryReads(),
    listings: keyed(
      limits.listJobs,
      "listQueue",
      limits.peerListings,
      "peerListQueue",
      { total: limits.listQueue, perKey: limits.peerListQueue },
    ),
    bundles: keyed(
      limits.bundleJobs,
      "bundleQueue",
      limits.peerBundles,
      "peerBundleQueue",
      { total: limits.bundleQueue, perKey: limits.peerBundleQueue },
    ),
    fileBodies: { running: 0 },
    watchHub: options.watchHub ?? new WatchHub(),
  };

  return async function handle(request: Request, info) {
    const started = performance.now();
    const time = new Date();
    const remote = normalizeAddress(info.remoteAddr.hostname);
    const url = new URL(request.url);
    const ticket = newTicket(ctx, remote, url.pathname);
    tickets.set(request, ticket);
    // What the request holds goes when its response has gone (or the connection dropped).
    info.completed.finally(() => settle(ticket)).catch(() => {});
    let response: Response;
    try {
      // A refused peer is turned away before it is counted anywhere, and
      // none of its body is read: no file-system, signature or body work.
      if (!hostAllowed(remote)) {
        throw new HttpError(
          403,
          "host_not_allowed",
          `Cannot serve ${remote}: refused by Allowed_host`,
        );
      }
      checkRequestSize(request, url, limits);
      if (options.verifier !== undefined) {
        // A good signature is checked before the request is counted; the
        // signed body is read only once it is (`readBody` admits it first).
        await authenticate(options, request, url, remote, limits);
      }
      admit(ticket);
      response = await route(ctx, request, url);
    } catch (error) {
      response = errorResponse(error);
      if (response.status === 500) reportError(ctx, error, request);
      if (error instanceof BusyError) {
        response.headers.set(LIMIT_HEADER, error.limit);
      }
      // Nothing is drained here: a refused peer, or a body left unread, is
      // told the connection ends (what Deno does with it: README "Bounded work").
      // Only over HTTP/1.x: HTTP/2 forbids the header (curl fails the stream),
      // and its requests carry no Host header (the authority is in the URL).
      if (!request.headers.has("host")) {
        // HTTP/2: the stream ends with the answer; nothing more to say.
      } else if (
        (request.body !== null && !ticket.bodyRead) ||
        (error instanceof HttpError &&
          (error.code === "host_not_allowed" || error.status === 401 ||
            error.status === 408))
      ) response.headers.set("connection", "close");
    }
    if (options.log !== undefined) {
      const length = response.headers.get("content-length");
      try {
        options.log({
          time,
          remote,
          method: request.method,
          url: url.pathname + url.search,
          status: response.status,
          bytes: request.method === "HEAD"
            ? 0
            : length === null
            ? null
            : Number(length),
          ms: performance.now() - started,
        });
      } catch {
        // A failing logger must not fail the request.
      }
    }
    return response;
  };
}

async function route(
  ctx: Context,
  request: Request,
  url: URL,
): Promise<Response> {
  // Deno builds the URL from the Host header and the request target: a Host
  // holding a path (`127.0.0.1/v1/file?path=...#`) would route the request
  // somewhere its request line does not say, past any proxy or firewall
  // that reads request lines. Only a bare host[:port] is taken.
  if (requestAuthority(request) === undefined) {
    throw new HttpError(
      400,
      "bad_request",
      `Cannot serve a request whose Host is not a host name or address with an optional port: ${
        JSON.stringify((request.headers.get("host") ?? "").slice(0, 100))
      }`,
    );
  }
  const endpoint = ENDPOINTS.get(url.pathname);
  if (endpoint === undefined) {
    throw new HttpError(
      404,
      "not_found",
      `No endpoint ${JSON.stringify(url.pathname)} in API v${API_VERSION}`,
    );
  }
  if (!endpoint.methods.includes(request.method)) {
    const response = errorResponse(
      new HttpError(
        405,
        "method_not_allowed",
        `Method ${request.method} is not allowed on ${url.pathname}: use ${
          endpoint.methods.join(" or ")
        }`,
      ),
    );
    response.headers.set("allow", endpoint.methods.join(", "));
    return response;
  }
  const response = await endpoint.run(ctx, request, url);
  if (request.method === "HEAD" && response.body !== null) {
    await response.body.cancel();
    return new Response(null, {
      status: response.status,
      headers: response.headers,
    });
  }
  return response;
}

// ---------------------------------------------------------------- limits, authentication

/** 414 for a request target over `maxUrlBytes`, 431 for headers over `maxHeaderBytes`. */
function checkRequestSize(
  request: Request,
  url: URL,
  limits: ServerLimits,
): void {
  // The path and query as sent are ASCII (percent-encoded), so length is bytes.
  if (url.pathname.length + url.search.length > limits.maxUrlBytes) {
    throw new HttpError(
      414,
      "uri_too_long",
      `Cannot serve a request target longer than ${limits.maxUrlBytes} bytes`,
    );
  }
  let bytes = 0;
  for (const [name, value] of request.headers) {
    bytes += name.length + value.length + 4;
    if (bytes > limits.maxHeaderBytes) {
      throw new HttpError(
        431,
        "headers_too_large",
        `Cannot serve a request with more than ${limits.maxHeaderBytes} bytes of headers`,
      );
    }
  }
}

/** Response header naming the limit behind a 503 `busy`. */
const LIMIT_HEADER = "x-hsync-limit";

/** 503 `busy`: a limit refused the request; `limit` names it (sent in {@linkcode LIMIT_HEADER}). */
class BusyError extends HttpError {
  readonly limit: string;
  constructor(limit: string, message: string) {
    super(503, "busy", message);
    this.limit = limit;
  }
}

/** What each limit bounds, for the message of a 503 `busy`. */
const LIMIT_TEXT: Readonly<Record<string, (l: ServerLimits) => string>> = {
  maxRequests: (l) => `${l.maxRequests} requests are being answered`,
  peerRequests: (l) =>
    `${l.peerRequests} requests of this address are being answered`,
  maxWatches: (l) => `${l.maxWatches} watches are open`,
  peerWatches: (l) => `${l.peerWatches} watches of this address are open`,
  bodyBytes: (l) => `${l.bodyBytes} bytes of request bodies are held`,
  peerBodyBytes: (l) =>
    `${l.peerBodyBytes} bytes of request bodies of this address are held`,
  hashQueue: (l) =>
    `${l.hashJobs} hash jobs are running and ${l.hashQueue} are waiting`,
  peerHashQueue: (l) =>
    `this address has ${l.peerHashJobs} hash jobs running and ${l.peerHashQueue} waiting`,
  bundleQueue: (l) =>
    `${l.bundleJobs} bundles are streaming and ${l.bundleQueue} are waiting`,
  peerBundleQueue: (l) =>
    `this address has ${l.peerBundles} bundles streaming or queued and ${l.peerBundleQueue} waiting`,
  listQueue: (l) =>
    `${l.listJobs} listings are streaming and ${l.listQueue} are waiting`,
  peerListQueue: (l) =>
    `this address has ${l.peerListings} listings streaming and ${l.peerListQueue} waiting`,
};

/** The 503 `busy` for a refusal by one of the limiters of `ctx`. */
function busy(ctx: Context, action: string, error: LimitError): BusyError {
  const what = LIMIT_TEXT[error.limit]?.(ctx.limits) ?? "the server is busy";
  return new BusyError(
    error.limit,
    `Cannot ${action} now: ${what} (limit ${error.limit}), retry later`,
  );
}

/** Runs `take`, turning a refusal into a 503 `busy`. */
function taking<T>(ctx: Context, action: string, take: () => T): T {
  try {
    return take();
  } catch (error) {
    if (error instanceof LimitError) throw busy(ctx, action, error);
    throw error;
  }
}

/**
 * What one request holds (its place among requests or watches, the bytes of
 * its body), given back together when the request completes. It is counted
 * only by {@linkcode admit}: after the Allowed_host, size and signature
 * checks, and before any byte of its body is read.
 */
interface Ticket {
  ctx: Context;
  peer: string;
  path: string;
  admitted: boolean;
  /** Whether the whole body was read (else the connection is not reused). */
  bodyRead: boolean;
  /** The request completed: whatever it takes from now on goes back at once. */
  settled: boolean;
  releases: Release[];
}

/** The ticket of each request being answered (`readBody` runs inside `authenticate`, which only has the request). */
const tickets = new WeakMap<Request, Ticket>();

function newTicket(ctx: Context, peer: string, path: string): Ticket {
  return {
    ctx,
    peer,
    path,
    admitted: false,
    bodyRead: false,
    settled: false,
    releases: [],
  };
}

function hold(ticket: Ticket, release: Release): void {
  if (ticket.settled) release();
  else ticket.releases.push(release);
}

function settle(ticket: Ticket): void {
  ticket.settled = true;
  for (const release of ticket.releases.splice(0)) release();
}

/** The peer address a request came from. */
function peerOf(request: Request): string {
  return tickets.get(request)?.peer ?? "";
}

/**
 * Counts the request (once): long-polls among watches, the others among
 * requests, each in all and for its peer; 503 `busy` when a limit is
 * reached. A bundle is also refused here, before its body is read, when it
 * could not wait for a streaming slot.
 */
function admit(ticket: Ticket): void {
  if (ticket.admitted) return;
  ticket.admitted = true;
  const { ctx, peer } = ticket;
  const watch = ticket.path === API.watch;
  const limiter = watch ? ctx.watches : ctx.requests;
  hold(
    ticket,
    taking(ctx, watch ? "watch" : "serve", () => limiter.take(peer)),
  );
  if (ticket.path === API.bundle) {
    const full = ctx.bundles.refusal(peer);
    if (full !== undefined) throw busy(ctx, "bundle", new LimitError(full));
  }
}

function unauthorized(): HttpError {
  return new HttpError(401, "unauthorized", "Authentication required");
}

/**
 * Verifies the request signature before any body is read: a request with a
 * body declares the body's SHA-256 in `x-hsync-content-sha256` (the value
 * the signature covers), so an unsigned or forged request costs no body
 * reading. The signature must be bound to the server the request was sent
 * to (its `Host`), and that must be one of this server's names, so a request
 * signed for another server is refused here. A signed body is then read
 * within the bundle body limit, checked against the declared digest and
 * kept in {@linkcode verifiedBodies} for the endpoint (the request itself,
 * and its signal, stay as they are). A refusal says nothing more than 401;
 * its reason goes to `onUnauthorized`.
 */
async function authenticate(
  options: HandlerOptions,
  request: Request,
  url: URL,
  remote: string,
  limits: ServerLimits,
): Promise<void> {
  const refuse = (reason: string) => {
    try {
      options.onUnauthorized?.(reason, request, remote);
    } catch {
      // A failing logger must not change the answer.
    }
    return unauthorized();
  };
  let declared = "-";
  if (request.body !== null) {
    declared = request.headers.get(BODY_DIGEST_HEADER) ?? "";
    if (!/^([0-9a-f]{64}|-)$/.test(declared)) {
      throw refuse(`malformed ${BODY_DIGEST_HEADER}`);
    }
  }
  const authority = requestAuthority(request);
  if (authority === undefined) {
    throw refuse(
      `Host ${
        JSON.stringify((request.headers.get("host") ?? "").slice(0, 300))
      } is not host[:port] or disagrees with the request target`,
    );
  }
  const server = options.serverNames?.resolve(authority, remote);
  if (server === undefined) {
    throw refuse(
      `Host "${authority}" is not one of this server's names (add it to Server_name if clients use it)`,
    );
  }
  const verdict = await options.verifier!({
    method: request.method,
    server,
    pathAndQuery: url.pathname + url.search,
    authorization: request.headers.get("authorization"),
    bodySha256: declared,
  });
  if (!verdict.ok) throw refuse(verdict.reason);
  if (request.body === null) return;
  const body = await readBody(request, limits.bundleMaxBodyBytes);
  if (bodyDigest(body) !== declared) {
    throw refuse("body does not match its declared digest");
  }
  verifiedBodies.set(request, body);
}

/** Bodies already read (and checked against their signature) by {@linkcode authenticate}. */
const verifiedBodies = new WeakMap<Request, Uint8Array<ArrayBuffer>>();

// ---------------------------------------------------------------- errors

/** The one place errors become a status and an `ErrorBody`. */
function describeError(error: unknown): { status: number; body: ErrorBody } {
  if (error instanceof HttpError) {
    return {
      status: error.status,
      body: { error: error.code, message: error.message },
    };
  }
  if (
    error instanceof Deno.errors.NotFound ||
    error instanceof Deno.errors.NotADirectory
  ) {
    return {
      status: 404,
      body: { error: "not_found", message: "No such file or directory" },
    };
  }
  if (
    error instanceof Deno.errors.PermissionDenied ||
    error instanceof Deno.errors.NotCapable
  ) {
    return {
      status: 403,
      body: { error: "permission_denied", message: "Permission denied" },
    };
  }
  return {
    status: 500,
    body: { error: "internal", message: "Internal server error" },
  };
}

function errorResponse(error: unknown, headers?: Headers): Response {
  const { status, body } = describeError(error);
  const response = json(body, status, headers);
  if (status === 503) response.headers.set("retry-after", "1");
  return response;
}

function reportError(ctx: Context, error: unknown, request: Request): void {
  try {
    ctx.options.onError?.(error, request);
  } catch {
    // Reporting must not fail the request.
  }
}

// ---------------------------------------------------------------- helpers

function baseHeaders(contentType: string, headers?: Headers): Headers {
  const out = new Headers(headers);
  out.set("content-type", contentType);
  out.set("x-content-type-options", "nosniff");
  return out;
}

function json(value: unknown, status = 200, headers?: Headers): Response {
  const bytes = encoder.encode(JSON.stringify(value));
  const out = baseHeaders("application/json; charset=utf-8", headers);
  out.set("cache-control", "no-store");
  out.set("content-length", String(bytes.length));
  return new Response(bytes, { status, headers: out });
}

function requirePath(url: URL): string {
  const path = url.searchParams.get("path");
  if (path === null) {
    throw new HttpError(
      400,
      "bad_request",
      'Missing query parameter "path"',
    );
  }
  return path;
}

function statEntry(info: Deno.FileInfo, type: EntryType): StatEntry {
  return {
    type,
    size: type === "dir" ? 0 : info.size,
    mtime: mtimeMs(info),
    mode: modeBits(info),
    etag: etagFor(info),
  };
}

function requireFile(checked: CheckedPath): void {
  if (checked.type !== "file") {
    throw new HttpError(
      400,
      "not_a_file",
      `Cannot read ${JSON.stringify(checked.path)}: it is a directory`,
    );
  }
}

// ---------------------------------------------------------------- health, stat

function health(ctx: Context): Promise<Response> {
  const body: Health = {
    name: "hsyncd",
    version: VERSION,
    api: API_VERSION,
    host: ctx.options.hostname,
  };
  return Promise.resolve(json(body));
}

async function stat(ctx: Context, _request: Request, url: URL) {
  const checked = await ctx.guard.check(requirePath(url));
  return json(statEntry(checked.info, checked.type));
}

// ---------------------------------------------------------------- list

async function list(ctx: Context, request: Request, url: URL) {
  const checked = await ctx.guard.check(requirePath(url));
  if (checked.type !== "dir") {
    throw new HttpError(
      400,
      "not_a_directory",
      `Cannot list ${JSON.stringify(checked.path)}: it is not a directory`,
    );
  }
  const after = listCursor(url.searchParams.get("after"));
  let release: Release;
  try {
    // Per peer first: one peer's listings wait in its own line.
    release = await ctx.listings.acquire(peerOf(request), request.signal);
  } catch (error) {
    if (error instanceof LimitError) throw busy(ctx, "list", error);
    throw clientGone();
  }
  try {
    const headers = baseHeaders("application/x-ndjson; charset=utf-8");
    headers.set("cache-control", "no-store");
    return new Response(
      listStream(ctx.guard, ctx.directoryReads, checked, after, release),
      { headers },
    );
  } catch (error) {
    release();
    throw error;
  }
}

/**
 * The `after` of a listing: the path (relative to the listed directory) of
 * the last entry a client got before the listing was cut, as components.
 */
function listCursor(after: string | null): string[] {
  return after === null
    ? []
    : checkRelative(after, "list after", "bad_request");
}

interface Pending {
  /** The kernel's path of the directory. */
  real: string;
  rel: string;
  /** `lstat` of the directory when it was found: it must still be that very directory when entered. */
  info: Deno.FileInfo;
  /** Where a resumed listing picks up inside this directory (see `listStream`). */
  after?: string[];
}

interface Level extends Pending {
  /** The directory's names, sorted (so a cut listing can resume). */
  names: string[];
  /** Next name to describe. */
  next: number;
  /** Subdirectories found, entered in order once every entry is listed. */
  subdirs: Pending[];
}

function identity(info: Deno.FileInfo): string {
  return `${info.dev}:${info.ino ?? 0}`;
}

/** One listed entry: its line, and the way down when it is a directory. */
interface Described {
  line: ListEntry;
  descend?: Pending;
}

/**
 * Whole-directory reads of the listings, one at a time, and the names they
 * read. Such a read is one synchronous call (the jail's proof needs the
 * working directory to stay put during it; 150,000 names take about 0.3 s
 * here), so after a long one the next waits as long again: the event loop is
 * then free for other requests at least half of the time. Listings of one
 * directory at about the same time share one read: its names are kept
 * (`NAMES_KEPT_MS`, at most `NAMES_KEPT` names in all) and used again while
 * the directory is the same inode with the same times.
 */
export class DirectoryReads implements NamesCache {
  #tail: Promise<void> = Promise.resolve();
  #kept = new Map<string, { names: string[]; at: number }>();
  #keptNames = 0;

  /** Runs `read` after the reads before it, and holds the next back by as long as it took. */
  run<T>(read: () => T): Promise<T> {
    const result = this.#tail.then(() => {
      const started = performance.now();
      const value = read();
      return { value, ms: performance.now() - started };
    });
    this.#tail = result.then(
      ({ ms }) =>
        ms < 5 ? undefined : new Promise((done) => setTimeout(done, ms)),
      () => undefined,
    );
    return result.then(({ value }) => value);
  }

  get(key: string): string[] | undefined {
    this.#expire();
    return this.#kept.get(key)?.names;
  }

  set(key: string, names: string[]): void {
    this.#expire();
    if (names.length < NAMES_WORTH_KEEPING || names.length > NAMES_KEPT) return;
    this.#kept.set(key, { names, at: Date.now() });
    this.#keptNames += names.length;
    for (const [k, v] of this.#kept) {
      if (this.#keptNames <= NAMES_KEPT) break;
      this.#kept.delete(k);
      this.#keptNames -= v.names.length;
    }
  }

  #expire(): void {
    const old = Date.now() - NAMES_KEPT_MS;
    for (const [k, v] of this.#kept) {
      if (v.at > old) break;
      this.#kept.delete(k);
      this.#keptNames -= v.names.length;
    }
  }
}

/** Directories smaller than this are read again each time (cheap). */
const NAMES_WORTH_KEEPING = 4096;
/** Names kept for other listings, over all directories. */
const NAMES_KEPT = 1_000_000;
/** How long names read for one listing serve others. */
const NAMES_KEPT_MS = 10_000;

/**
 * Walks a checked directory: all entries of a directory, sorted by name, in
 * batches, then each of its subdirectories the same way. Memory depends on
 * depth and on the names of the directories on the way, not on the size of
 * the tree. Refused entries, non-regular entries and symlinks that fail the
 * rules are left out; a symlink to a directory being walked (a loop) is left
 * out; unreadable directories are skipped.
 *
 * Every directory is read, and its entries looked at, through the jail's
 * proof (lib/server/jail/path_guard.ts): only when its path still leads to the very
 * directory that was found; a directory swapped for a symlink meanwhile is
 * listed as empty, never from where the link points.
 *
 * The order is fixed by the names, so `after` (the last path a client got)
 * says exactly what it has: every entry of each directory on the way to
 * `after` and the subdirectories before it, and in `after`'s own directory
 * the entries up to it. The walk resumes from there; entries that appeared
 * in that part since are not listed, like a snapshot.
 */
function listStream(
  guard: PathGuard,
  reads: DirectoryReads,
  root: CheckedPath,
  after: string[],
  release: Release,
): ReadableStream<Uint8Array> {
  const stack: Level[] = [];
  const onStack = new Set<string>();

  async function enter(p: Pending): Promise<void> {
    // Unreadable, vanished or swapped directory: listed empty.
    const names = await reads.run(() =>
      guard.readDirectory({ realPath: p.real, info: p.info }, reads) ?? []
    );
    const level: Level = { ...p, names, next: 0, subdirs: [] };
    const at = p.after?.[0];
    // An ancestor of the cut: its entries before the way down were listed
    // and walked, and so were their subdirectories.
    if (at !== undefined && p.after!.length > 1) {
      while (level.next < names.length && names[level.next] < at) {
        level.next++;
      }
    }
    stack.push(level);
    onStack.add(identity(p.info));
  }

  function leave(): void {
    const level = stack.pop();
    if (level !== undefined) onStack.delete(identity(level.info));
  }

  /** Whether the client already has the line of `name`, an entry of `level`. */
  function listedBefore(level: Level, name: string): boolean {
    const after = level.after;
    if (after === undefined) return false;
    return after.length > 1 || name <= after[0];
  }

  /** The line of one entry of `level` (and the way down when it is a directory); undefined when it is not listed. */
  function describe(
    level: Level,
    name: string,
    info: Deno.FileInfo | undefined,
  ): Described | undefined {
    if (info === undefined) return undefined;
    if (info.isSymlink) {
      try {
        const checked = guard.checkSync(
          level.real === "/" ? `/${name}` : `${level.real}/${name}`,
        );
        return lineOf(
          level,
          name,
          checked.info,
          checked.type,
          checked.realPath,
        );
      } catch {
        return undefined;
      }
    }
    if (!info.isFile && !info.isDirectory) return undefined;
    if (!guard.allowsEntry(level.real, name)) return undefined;
    const real = level.real === "/" ? `/${name}` : `${level.real}/${name}`;
    return lineOf(level, name, info, info.isFile ? "file" : "dir", real);
  }

  function lineOf(
    level: Level,
    name: string,
    info: Deno.FileInfo,
    type: EntryType,
    real: string,
  ): Described | undefined {
    const rel = level.rel === "" ? name : `${level.rel}/${name}`;
    const line: ListEntry = { path: rel, ...statEntry(info, type) };
    if (type !== "dir") return { line };
    if (onStack.has(identity(info))) return undefined;
    const descend: Pending = { real, rel, info };
    // The way down to the cut goes on inside this directory.
    const after = level.after;
    if (after !== undefined && after.length > 1 && name === after[0]) {
      descend.after = after.slice(1);
    }
    return { line, descend };
  }

  return new ReadableStream<Uint8Array>({
    async start() {
      await enter({
        real: root.realPath,
        rel: "",
        info: root.info,
        after: after.length > 0 ? after : undefined,
      });
    },
    async pull(controller) {
      while (stack.length > 0) {
        const top = stack[stack.length - 1];
        if (top.next >= top.names.length) {
          const sub = top.subdirs.shift();
          if (sub === undefined) leave();
          else if (!onStack.has(identity(sub.info))) await enter(sub);
          continue;
        }
        const batch = top.names.slice(top.next, top.next + LIST_BATCH);
        top.next += batch.length;
        const infos = guard.describeEntries(
          { realPath: top.real, info: top.info },
          batch,
        );
        if (infos === undefined) {
          // The directory is not what it was any more: nothing more from it.
          top.names = [];
          top.subdirs = [];
          continue;
        }
        let text = "";
        for (let i = 0; i < batch.length; i++) {
          const d = describe(top, batch[i], infos[i]);
          if (d === undefined) continue;
          if (!listedBefore(top, batch[i])) {
            text += JSON.stringify(d.line) + "\n";
          }
          if (d.descend !== undefined) top.subdirs.push(d.descend);
        }
        if (top.next >= top.names.length) top.names = [];
        if (text !== "") {
          controller.enqueue(encoder.encode(text));
          return;
        }
      }
      controller.close();
      release();
    },
    cancel() {
      stack.length = 0;
      onStack.clear();
      release();
    },
  });
}

// ---------------------------------------------------------------- file

async function file(ctx: Context, request: Request, url: URL) {
  const checked = await ctx.guard.check(requirePath(url));
  requireFile(checked);
  const head = request.method === "HEAD";
  // HEAD never opens the file: the checked lstat is enough for the headers.
  const opened = head ? undefined : await ctx.guard.openFile(checked);
  const info = opened?.info ?? checked.info;
  let handedOver = false;
  try {
    const size = info.size;
    const etag = etagFor(info);
    const headers = baseHeaders("application/octet-stream");
    headers.set("accept-ranges", "bytes");
    headers.set("etag", etag);
    headers.set("last-modified", new Date(mtimeMs(info)).toUTCString());

    const asked = request.headers.get("range");
    let range: RangeRequest = parseRangeHeader(asked, size);
    if (
      range.kind !== "none" &&
      !ifRangeHolds(request.headers.get("if-range"), etag, info)
    ) {
      range = { kind: "none" };
    }
    if (range.kind === "unsatisfiable") {
      headers.set("content-range", contentRange(undefined, size));
      const error = new HttpError(
        416,
        "bad_range",
        `Cannot serve ${JSON.stringify(asked)} of ${
          JSON.stringify(checked.path)
        }: the file has ${size} bytes`,
      );
      return errorResponse(error, headers);
    }
    headers.set(
      "content-disposition",
      contentDisposition(posix.basename(checked.path)),
    );
    const start = range.kind === "range" ? range.range.start : 0;
    const length = range.kind === "range"
      ? range.range.end - range.range.start
      : size;
    headers.set("content-length", String(length));
    let status = 200;
    if (range.kind === "range") {
      status = 206;
      headers.set("content-range", contentRange(range.range, size));
    }
    if (opened === undefined) return new Response(null, { status, headers });
    // Natively only to the end of the file: the body then holds exactly
    // `length` bytes unless the file grows meanwhile (see `nativeBody`).
    const native = length > 0 && start + length === size
      ? await nativeBody(opened, start)
      : undefined;
    if (native !== undefined) {
      return new Response(native, { status, headers });
    }
    handedOver = true;
    return new Response(fileBody(ctx.fileBodies, opened, start, length), {
      status,
      headers,
    });
  } finally {
    if (!handedOver) await opened?.close();
  }
}

/** `If-Range`: a strong ETag must match exactly; a date must equal `Last-Modified`. */
function ifRangeHolds(
  value: string | null,
  etag: string,
  info: Deno.FileInfo,
): boolean {
  if (value === null) return true;
  const v = value.trim();
  if (v.startsWith('"') || v.startsWith("W/")) return v === etag;
  const date = Date.parse(v);
  if (Number.isNaN(date)) return false;
  return date === Math.floor(mtimeMs(info) / 1000) * 1000;
}

/** `attachment` with an ASCII fallback name and the exact UTF-8 name (RFC 6266, RFC 8187). */
function contentDisposition(name: string): string {
  // deno-lint-ignore no-control-regex
  const fallback = name.replace(/[\x00-\x1f\x7f-\uffff"\\%]/g, "_");
  const exact = encodeURIComponent(name).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return `attachment; filename="${fallback}"; filename*=UTF-8''${exact}`;
}

/**
 * The file from `start` to its end as a resource-backed stream, which Deno
 * sends without passing the bytes through JavaScript: less CPU than
 * `fileBody`, and no JavaScript buffers per chunk (serving 100 files of
 * 10 MiB, 8 at a time, peaked at 66 MiB instead of 145). It reads on until the
 * end of the file, whatever that is by then; `Deno.serve` writes exactly
 * `content-length` bytes and stops reading there, so a file that grew sends
 * what its header said and no more (tests/e2e_server_test.ts holds Deno to
 * that); one that shrank ends the body early and the connection is closed,
 * as with `fileBody`. `undefined` when the file cannot be had that way.
 */
async function nativeBody(
  opened: OpenedFile,
  start: number,
): Promise<ReadableStream<Uint8Array> | undefined> {
  const file = await opened.native();
  if (file === undefined) return undefined;
  try {
    if (start > 0) await file.seek(start, Deno.SeekMode.Start);
    return file.readable;
  } catch {
    file.close();
    return undefined;
  }
}

/**
 * Exactly `length` bytes from `start`, never more even if the file grows; if
 * the file shrank the body ends early (the client sees a short body).
 */
function fileBody(
  bodies: { running: number },
  file: OpenedFile,
  start: number,
  length: number,
): ReadableStream<Uint8Array> {
  let position = start;
  let remaining = length;
  let counted = false;
  const end = async () => {
    if (counted) bodies.running--;
    counted = false;
    await file.close();
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!counted && remaining > 0) {
        counted = true;
        bodies.running++;
      }
      try {
        const chunk = bodies.running <= LARGE_CHUNK_BODIES
          ? FILE_CHUNK_LARGE
          : FILE_CHUNK;
        const buffer = new Uint8Array(Math.min(chunk, remaining));
        const n = remaining === 0 ? 0 : await file.read(buffer, position);
        if (n > 0) {
          position += n;
          remaining -= n;
          controller.enqueue(buffer.subarray(0, n));
        }
        if (n === 0 || remaining === 0) {
          await end();
          controller.close();
        }
      } catch (error) {
        await end();
        throw error;
      }
    },
    async cancel() {
      await end();
    },
  }, { highWaterMark: 0 });
}

// ---------------------------------------------------------------- hash

function optionalInteger(url: URL, name: string): number | undefined {
  const raw = url.searchParams.get(name);
  if (raw === null) return undefined;
  const n = Number(raw);
  if (!/^\d{1,16}$/.test(raw) || !Number.isSafeInteger(n)) {
    throw new HttpError(
      400,
      "bad_request",
      `Invalid query parameter ${name}=${
        JSON.stringify(raw)
      }: expected a whole number of bytes`,
    );
  }
  return n;
}

/** The span to hash: within the file (else 416), and at most `max` bytes (else 400 `too_large`). */
function hashSpan(
  path: string,
  size: number,
  offset: number | undefined,
  length: number | undefined,
  max: number,
): { offset: number; length: number } {
  const o = offset ?? 0;
  const l = length ?? Math.max(0, size - o);
  if (o + l > size) {
    throw new HttpError(
      416,
      "bad_range",
      `Cannot hash bytes ${o} to ${o + l} of ${
        JSON.stringify(path)
      }: the file has ${size} bytes`,
    );
  }
  if (l > max) {
    throw new HttpError(
      400,
      "too_large",
      `Cannot hash ${l} bytes of ${
        JSON.stringify(path)
      } in one request: at most ${max} (hashMaxBytes), ask for spans with offset and length`,
    );
  }
  return { offset: o, length: l };
}

async function hash(ctx: Context, request: Request, url: URL) {
  const checked = await ctx.guard.check(requirePath(url));
  requireFile(checked);
  const offset = optionalInteger(url, "offset");
  const length = optionalInteger(url, "length");
  const max = ctx.limits.hashMaxBytes;
  const first = hashSpan(checked.path, checked.info.size, offset, length, max);
  const cached = ctx.hashCache.get(
    cacheKey(etagFor(checked.info), first.offset, first.length),
  );
  if (cached !== undefined) return json(cached);

  let release: Release;
  try {
    // Per peer first: one peer's jobs wait in its own line, not in everyone's.
    release = await ctx.hashJobs.acquire(peerOf(request), request.signal);
  } catch (error) {
    if (error instanceof LimitError) throw busy(ctx, "hash", error);
    throw clientGone();
  }
  try {
    if (request.signal.aborted) throw clientGone();
    const opened = await ctx.guard.openFile(checked);
    try {
      const etag = etagFor(opened.info);
      const span = hashSpan(
        checked.path,
        opened.info.size,
        offset,
        length,
        max,
      );
      const key = cacheKey(etag, span.offset, span.length);
      const again = ctx.hashCache.get(key);
      if (again !== undefined) return json(again);
      const sha256 = await sha256Of(opened, span, request.signal, checked.path);
      const result: HashResult = { sha256, ...span, etag };
      // A file modified while being hashed is answered (the etag says what was seen) but not cached.
      if (etagFor(await opened.stat()) === etag) ctx.hashCache.set(key, result);
      return json(result);
    } finally {
      await opened.close();
    }
  } finally {
    release();
  }
}

function cacheKey(etag: string, offset: number, length: number): string {
  return `${etag} ${offset} ${length}`;
}

function clientGone(): HttpError {
  return new HttpError(499, "client_closed", "The client closed the request");
}

async function sha256Of(
  file: OpenedFile,
  span: { offset: number; length: number },
  signal: AbortSignal,
  path: string,
): Promise<string> {
  const digest = createHash("sha256");
  const buffer = new Uint8Array(Math.min(HASH_CHUNK, Math.max(span.length, 1)));
  let position = span.offset;
  let remaining = span.length;
  while (remaining > 0) {
    if (signal.aborted) throw clientGone();
    const view = remaining < buffer.length
      ? buffer.subarray(0, remaining)
      : buffer;
    const n = await file.read(view, position);
    if (n === 0) {
      throw new HttpError(
        409,
        "changed",
        `Cannot hash ${JSON.stringify(path)}: it shrank while being hashed`,
      );
    }
    digest.update(view.subarray(0, n));
    position += n;
    remaining -= n;
  }
  return digest.digest("hex");
}

/** A small least-recently-used map. */
class Lru<V> {
  #max: number;
  #map = new Map<string, V>();

  constructor(max: number) {
    this.#max = Math.max(1, max);
  }

  get(key: string): V | undefined {
    const value = this.#map.get(key);
    if (value !== undefined) {
      this.#map.delete(key);
      this.#map.set(key, value);
    }
    return value;
  }

  set(key: string, value: V): void {
    this.#map.delete(key);
    this.#map.set(key, value);
    if (this.#map.size > this.#max) {
      this.#map.delete(this.#map.keys().next().value as string);
    }
  }
}

// ---------------------------------------------------------------- watch

const WATCH_DEFAULT_TIMEOUT_S = 25;
const WATCH_MAX_TIMEOUT_S = 120;

async function watch(ctx: Context, request: Request, url: URL) {
  const checked = await ctx.guard.check(requirePath(url));
  const seconds = (
    name: string,
    fallback: number,
    min: number,
    max: number,
  ) => {
    const raw = url.searchParams.get(name);
    if (raw === null) return fallback;
    const n = Number(raw);
    if (raw === "" || !Number.isFinite(n) || n < min || n > max) {
      throw new HttpError(
        400,
        "bad_request",
        `Invalid ${name} ${
          JSON.stringify(raw)
        }: expected seconds from ${min} to ${max}`,
      );
    }
    return n;
  };
  const timeoutMs = 1000 *
    seconds("timeout", WATCH_DEFAULT_TIMEOUT_S, 0, WATCH_MAX_TIMEOUT_S);
  const pollMs = 1000 * seconds("interval", 2, 0.05, 3600);
  const stopping = () =>
    new HttpError(503, "stopping", "The server is stopping, retry later");
  // A closed hub means hsyncd is stopping: polls end now instead of holding the stop.
  if (ctx.watchHub.closed) throw stopping();
  const result = await ctx.watchHub.wait(
    checked.realPath,
    checked.type === "dir",
    url.searchParams.get("cursor"),
    { timeoutMs, pollMs, signal: request.signal },
  );
  if (ctx.watchHub.closed) throw stopping();
  // A name is told only when the jail finds it now, allowed, under the
  // watched directory: the watcher follows names and may have been raced
  // onto another directory, and a name that cannot be found cannot be told
  // apart from one of that other directory's. A removed file is therefore not
  // reported; its replacement is, once it exists.
  const visible: string[] = [];
  for (const rel of result.changed) {
    if (rel === "") {
      visible.push(rel);
      continue;
    }
    try {
      ctx.guard.checkSync(posix.join(checked.path, rel));
      visible.push(rel);
    } catch {
      // refused, missing or changed: not told
    }
  }
  const body: WatchResult = { ...result, changed: visible };
  return json(body);
}

// ---------------------------------------------------------------- bundle

async function bundle(ctx: Context, request: Request) {
  const body = await readJsonBody(request, ctx.limits.bundleMaxBodyBytes);
  const req = parseBundleRequest(body, ctx.limits.bundleMaxPaths);
  const root = await ctx.guard.check(req.root);
  if (root.type !== "dir") {
    throw new HttpError(
      400,
      "not_a_directory",
      `Cannot bundle from ${JSON.stringify(root.path)}: it is not a directory`,
    );
  }
  // Whether it may wait was checked before its body was read (`admit`);
  // the queues may have filled since. The body's bytes stay counted while
  // it waits and streams (the paths are held until the end).
  let release: Release;
  try {
    release = await ctx.bundles.acquire(peerOf(request), request.signal);
  } catch (error) {
    if (error instanceof LimitError) throw busy(ctx, "bundle", error);
    throw new HttpError(
      503,
      "busy",
      "Cannot bundle: the client went away while its bundle waited for a slot",
    );
  }
  try {
    const headers = baseHeaders("application/octet-stream");
    headers.set("cache-control", "no-store");
    return new Response(bundleStream(ctx, request, root, req.paths, release), {
      headers,
    });
  } catch (error) {
    release();
    throw error;
  }
}

async function readJsonBody(request: Request, max: number): Promise<unknown> {
  let bytes = verifiedBodies.get(request);
  // Parsed once: the raw bytes need not stay beside what they parse into.
  verifiedBodies.delete(request);
  if (bytes === undefined) {
    if (request.body === null) {
      throw new HttpError(400, "bad_request", "Missing JSON request body");
    }
    bytes = await readBody(request, max);
  }
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new HttpError(
      400,
      "bad_request",
      "Cannot parse the request body: it is not JSON",
    );
  }
}

/**
 * The whole request body, refused with 413 as soon as it passes `max` bytes
 * (never buffered beyond). The request is admitted first (`authenticate`
 * reads a signed body through here too). Its bytes count against the
 * request-body budgets from before the first is read until the request
 * completes (503 `busy` past them). A body that goes `bodyIdleMs` without a
 * byte is abandoned (408).
 */
async function readBody(
  request: Request,
  max: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const ticket = tickets.get(request);
  if (ticket !== undefined) admit(ticket);
  const tooLarge = () =>
    new HttpError(
      413,
      "too_large",
      `Cannot read the request body: it is larger than ${max} bytes`,
    );
  const declared = request.headers.get("content-length");
  const length = declared === null ? undefined : Number(declared);
  if (length !== undefined && !(length <= max)) throw tooLarge();
  if (request.body === null) return new Uint8Array(0);
  // Claimed before the first byte is read (a body of unknown length claims
  // the most it may be, within the budgets, and more as it comes): bodies
  // read at once never share out the budget so that none can complete.
  let releases: Release[] = [];
  let claimed = 0;
  const claim = (bytes: number) => {
    if (ticket === undefined || bytes <= 0) return;
    const { ctx, peer } = ticket;
    releases.push(
      taking(ctx, "read the request body", () => ctx.bodies.take(peer, bytes)),
    );
    claimed += bytes;
  };
  const unclaim = () => {
    for (const release of releases) release();
    releases = [];
    claimed = 0;
  };
  const limits = ticket?.ctx.limits ?? DEFAULT_LIMITS;
  claim(
    length !== undefined && Number.isSafeInteger(length)
      ? length
      : Math.min(max, limits.peerBodyBytes, limits.bodyBytes),
  );
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = request.body.getReader();
  let idle = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    while (true) {
      clearTimeout(timer);
      timer = setTimeout(() => {
        idle = true;
        reader.cancel().catch(() => {});
      }, limits.bodyIdleMs);
      const { done, value } = await reader.read();
      if (idle) {
        throw new HttpError(
          408,
          "timeout",
          `Cannot read the request body: no byte arrived for ${
            limits.bodyIdleMs / 1000
          } s`,
        );
      }
      if (done) break;
      total += value.length;
      if (total > max) throw tooLarge();
      if (total > claimed) claim(total - claimed);
      chunks.push(value);
    }
  } catch (error) {
    unclaim();
    await reader.cancel().catch(() => {});
    throw error;
  } finally {
    clearTimeout(timer);
  }
  // Only what arrived stays claimed (no more than before: this cannot fail).
  unclaim();
  claim(total);
  if (ticket !== undefined) {
    for (const release of releases) hold(ticket, release);
    ticket.bodyRead = true;
  }
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return bytes;
}

function parseBundleRequest(body: unknown, maxPaths: number): BundleRequest {
  const bad = (why: string) =>
    new HttpError(400, "bad_request", `Invalid bundle request: ${why}`);
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw bad("expected a JSON object with root and paths");
  }
  const { root, paths } = body as Record<string, unknown>;
  if (typeof root !== "string") throw bad("root must be a string");
  if (!Array.isArray(paths) || !paths.every((p) => typeof p === "string")) {
    throw bad("paths must be an array of strings");
  }
  if (paths.length > maxPaths) {
    throw bad(`${paths.length} paths, at most ${maxPaths} are allowed`);
  }
  return { root, paths };
}

/**
 * The components of a path relative to a root (a bundle's, or a listing's
 * `after`), by the one rule of shared/relative_path.ts; a refusal is a 400
 * (`code`) naming `action`.
 */
function checkRelative(
  rel: string,
  action = "bundle",
  code = "bad_path",
): string[] {
  try {
    return relativeComponents(rel);
  } catch (error) {
    if (!(error instanceof RelativePathError)) throw error;
    throw new HttpError(
      400,
      code,
      `Cannot ${action} ${JSON.stringify(rel)}: ${error.why}`,
    );
  }
}

/**
 * One frame for one path; never rejects (failures become error frames).
 * `reserve(size)` is awaited exactly once, before the file's bytes are read
 * (with 0 when no bytes will be read), so the stream can bound what it holds.
 */
async function bundleFrame(
  ctx: Context,
  request: Request,
  root: CheckedPath,
  rel: string,
  reserve: (size: number) => Promise<void>,
): Promise<Uint8Array> {
  let reserved = false;
  try {
    checkRelative(rel);
    const checked = await ctx.guard.check(
      root.path === "/" ? `/${rel}` : `${root.path}/${rel}`,
    );
    requireFile(checked);
    const max = ctx.limits.bundleMaxFileBytes;
    const tooLarge = (size: number) =>
      new HttpError(
        413,
        "too_large",
        `Cannot bundle ${
          JSON.stringify(rel)
        }: ${size} bytes is above the bundle limit of ${max}, fetch it with ${API.file}`,
      );
    if (checked.info.size > max) throw tooLarge(checked.info.size);
    reserved = true;
    await reserve(checked.info.size);
    const opened = await ctx.guard.openFile(checked);
    try {
      const info = opened.info;
      if (info.size > max) throw tooLarge(info.size);
      const data = new Uint8Array(info.size);
      let at = 0;
      while (at < data.length) {
        const n = await opened.read(data.subarray(at), at);
        if (n === 0) break;
        at += n;
      }
      if (at < data.length) {
        throw new HttpError(
          409,
          "changed",
          `Cannot bundle ${JSON.stringify(rel)}: it shrank while being read`,
        );
      }
      const header: BundleHeader = {
        path: rel,
        size: data.length,
        mtime: mtimeMs(info),
        mode: modeBits(info),
        etag: etagFor(info),
      };
      return encodeFrame(header, data);
    } finally {
      await opened.close();
    }
  } catch (error) {
    if (!reserved) await reserve(0);
    const { status, body } = describeError(error);
    if (status === 500) reportError(ctx, error, request);
    return encodeFrame({ path: rel, error: body.error, message: body.message });
  }
}

/**
 * The read-ahead budget of one bundle response: reservations are granted in
 * path order, each once the bytes held (read, not yet handed to the
 * connection) leave room for it, or when nothing is held (so one file larger
 * than the budget still goes). Granting in order means the frame the stream
 * waits for next is never kept waiting by later ones.
 */
class ReadAheadBudget {
  #limit: number;
  #held = 0;
  #next = 0;
  #waiting = new Map<number, { size: number; grant: () => void }>();

  constructor(limit: number) {
    this.#limit = limit;
  }

  reserve(index: number, size: number): Promise<void> {
    return new Promise((grant) => {
      this.#waiting.set(index, { size, grant });
      this.#pump();
    });
  }

  release(size: number): void {
    this.#held -= size;
    this.#pump();
  }

  #pump(): void {
    while (true) {
      const w = this.#waiting.get(this.#next);
      if (w === undefined) return;
      if (this.#held > 0 && this.#held + w.size > this.#limit) return;
      this.#waiting.delete(this.#next);
      this.#next++;
      this.#held += w.size;
      w.grant();
    }
  }
}

/**
 * Frames in request order, a few files read ahead concurrently; frames that
 * are already read are sent together in one chunk.
 */
function bundleStream(
  ctx: Context,
  request: Request,
  root: CheckedPath,
  paths: string[],
  release: Release,
): ReadableStream<Uint8Array> {
  interface Slot {
    done: Promise<Uint8Array>;
    frame?: Uint8Array;
    /** Bytes reserved in the budget for this frame. */
    reserved: number;
  }
  const ahead: Slot[] = [];
  const budget = new ReadAheadBudget(ctx.limits.bundleReadAheadBytes);
  let next = 0;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    release();
    // Frames still being read complete into the void; their reservations go with the stream.
  };

  function fill(): void {
    while (
      !finished && ahead.length < ctx.limits.bundleReadAhead &&
      next < paths.length
    ) {
      const index = next++;
      const slot: Slot = {
        done: Promise.resolve(new Uint8Array()),
        reserved: 0,
      };
      slot.done = bundleFrame(ctx, request, root, paths[index], (size) => {
        slot.reserved = size;
        return budget.reserve(index, size);
      });
      slot.done.then((frame) => slot.frame = frame);
      ahead.push(slot);
    }
  }

  /** Takes the first slot's frame off the read-ahead (its bytes are now the stream's, one chunk at most). */
  function take(slot: Slot, frame: Uint8Array): Uint8Array {
    budget.release(slot.reserved);
    return frame;
  }

  const cache = newSmallReadCache();
  const prefix = root.path === "/" ? "/" : `${root.path}/`;
  /** Paths before this index passed `checkRelative` (a batch may look further than it reads). */
  let checkedUpTo = 0;
  /**
   * Frames read synchronously while nothing is pending, up to one chunk: for
   * small files the asynchronous open/stat/read/close round trips cost more
   * than the reads themselves. Stops at the first path that needs the long way.
   */
  function quick(): BundleFrame[] {
    const frames: BundleFrame[] = [];
    if (finished || ahead.length > 0 || next >= paths.length) return frames;
    const batch: string[] = [];
    for (let i = next; i < paths.length && batch.length < QUICK_BATCH; i++) {
      if (i >= checkedUpTo) {
        try {
          checkRelative(paths[i]);
        } catch {
          break;
        }
        checkedUpTo = i + 1;
      }
      batch.push(prefix + paths[i]);
    }
    const files = ctx.guard.readSmallBatchSync(
      batch,
      ctx.limits.bundleMaxFileBytes,
      BUNDLE_CHUNK,
      cache,
    );
    for (const got of files) {
      const rel = paths[next];
      // Its turn in the read-ahead order, with nothing held (already read).
      void budget.reserve(next, 0);
      next++;
      frames.push({
        header: {
          path: rel,
          size: got.data.length,
          mtime: mtimeMs(got.info),
          mode: modeBits(got.info),
          etag: etagFor(got.info),
        },
        data: got.data,
      });
    }
    return frames;
  }

  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const fast = quick();
        if (fast.length > 0) {
          // The end frame goes out on a later pull, once this chunk is taken:
          // until then the bundle counts as streaming (bundleJobs).
          controller.enqueue(encodeFrames(fast));
          return;
        }
        fill();
        const first = ahead.shift();
        if (first === undefined) {
          controller.enqueue(encodeFrame({ end: true }));
          controller.close();
          finish();
          return;
        }
        const frames = [take(first, await first.done)];
        let size = frames[0].length;
        fill();
        while (ahead.length > 0 && ahead[0].frame !== undefined) {
          const slot = ahead.shift()!;
          const frame = take(slot, slot.frame!);
          frames.push(frame);
          size += frame.length;
          fill();
          if (size >= BUNDLE_CHUNK) break;
        }
        if (next >= paths.length && ahead.length === 0) {
          frames.push(encodeFrame({ end: true }));
          size += frames[frames.length - 1].length;
          controller.enqueue(concat(frames, size));
          controller.close();
          finish();
          return;
        }
        controller.enqueue(concat(frames, size));
      } catch (error) {
        finish();
        throw error;
      }
    },
    cancel() {
      finish();
    },
  });
}

function concat(parts: Uint8Array[], size: number): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
