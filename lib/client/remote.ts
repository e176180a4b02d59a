/** The client side of the v1 HTTP interface: URLs, signing, timeouts, JSON errors and the streamed listing. */
import { rangeHeader } from "../shared/byte_range.ts";
import { ConnectError, HttpError, ProtocolError } from "../shared/errors.ts";
import type { RequestSigner } from "./transport.ts";
import {
  answerError,
  foreignSuccess,
  type Listener,
  probeListener,
  unreachableError,
} from "./server_probe.ts";
import { throttled, type TokenBucket } from "./bandwidth.ts";
import { jsonOrNull, validExtents } from "./answers.ts";
import type { BufferRequests } from "./buffer_request.ts";
import { parseGlobLine, parseListLine, splitLines } from "./ndjson_lines.ts";
import { sleep } from "../shared/sleep.ts";
import { busyPause } from "./busy_server.ts";
import { RoundTrips } from "./round_trips.ts";
import {
  API,
  BODY_DIGEST_HEADER,
  type BundleRequest,
  type Extents,
  type GlobMatch,
  type HashResult,
  type ListLine,
  type StatEntry,
  type WatchResult,
} from "../shared/wire.ts";

export { errorFrom } from "./server_probe.ts";

/** Options of {@linkcode Remote}. */
export interface RemoteOptions {
  /** `http://127.0.0.1:10808` (a trailing `/` is ignored). */
  baseUrl: string;
  /** HTTP client for TLS settings; passed to every `fetch`. */
  client?: Deno.HttpClient;
  /** Called on every request before it is sent (request signing). */
  sign?: (request: Request) => Promise<void> | void;
  /** Milliseconds a request may wait for headers or data before it is aborted (default 30 s). */
  idleTimeoutMs?: number;
  /**
   * Called, before it is thrown, with an error after which nothing more
   * should be asked of this server (a redirect): the caller stops its run.
   */
  onRefuse?: (error: ConnectError) => void;
  /** `--bwlimit`: every body sent and received passes through it (one bucket for the whole run). */
  bandwidth?: TokenBucket;
  /** CA_file's certificates (PEM), trusted beside the default roots by the sender of byte bodies. */
  caCerts?: string[];
}

/** The server answered with a redirect, which hsync never follows (exit code 3). */
export class RedirectRefused extends ConnectError {
  constructor(message: string) {
    super(message, { refused: true });
    this.name = "RedirectRefused";
  }
}

/** A request aborted because no data came for the idle timeout. */
export class TimeoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TimeoutError";
  }
}

/** A request in flight: its response, and the idle timer that guards its body. */
export interface Exchange {
  response: Response;
  /** The request's own signal (aborted on idle timeout or when the caller's signal aborts). */
  signal: AbortSignal;
  /** Tells the idle timer data arrived. */
  kick(): void;
  /** Stops the idle timer (call when the body is consumed or abandoned). */
  done(): void;
  /** The body passes through `--bwlimit` (a stream made in JavaScript, not fetch's own). */
  throttled?: boolean;
}

/** Options of one request. */
export interface SendOptions {
  method?: string;
  headers?: HeadersInit;
  /**
   * The body: bytes are written in pieces, each a sign of life for the idle
   * timer (a send that stalls times out like a response that does) and
   * told to `onBodySent`; each piece passes `--bwlimit` on its way.
   */
  body?: string | Uint8Array<ArrayBuffer>;
  /**
   * Told the bytes of a `Uint8Array` body as the socket takes them, and
   * told them back (negative) when the request is sent again.
   */
  onBodySent?: (bytes: number) => void;
  signal?: AbortSignal;
  /** Statuses returned as they are instead of thrown as errors (2xx always are). */
  accept?: number[];
}

/** One hsyncd server, addressed by base URL. */
export class Remote {
  /** Base URL without a trailing slash. */
  readonly baseUrl: string;
  /** `host:port`, for messages. */
  readonly host: string;
  readonly #client?: Deno.HttpClient;
  readonly #sign?: (request: Request) => Promise<void> | void;
  readonly #idleMs: number;
  /** The round trips its answers told. */
  readonly trips = new RoundTrips();
  #onRefuse?: (error: ConnectError) => void;
  /** The first refusal, told to a handler set after it came. */
  #refused?: ConnectError;
  /** What listens on the server's port, asked once when a request got no HTTP answer. */
  #probe?: Promise<Listener | undefined>;
  readonly #bandwidth?: TokenBucket;
  readonly #caCerts?: string[];
  #bufferRequests?: Promise<BufferRequests>;

  constructor(options: RemoteOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.host = new URL(this.baseUrl).host;
    this.#client = options.client;
    this.#sign = options.sign;
    this.#idleMs = options.idleTimeoutMs ?? 30_000;
    this.#onRefuse = options.onRefuse;
    this.#bandwidth = options.bandwidth;
    this.#caCerts = options.caCerts;
  }

  #retryUnauthorized(request: Request): boolean {
    const sign = this.#sign as RequestSigner | undefined;
    return sign?.retryUnauthorized?.(request) ?? false;
  }

  /** Whether every request is signed (a body then declares its SHA-256). */
  get signs(): boolean {
    return this.#sign !== undefined;
  }

  /** How long a request may go without a byte either way before it times out. */
  get idleMs(): number {
    return this.#idleMs;
  }

  /** The URL of an endpoint with `path=P` (and more) as query values. */
  url(endpoint: string, query: Record<string, string> = {}): URL {
    const url = new URL(this.baseUrl + endpoint);
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    return url;
  }

  /**
   * Sends one request under an idle timer. Redirects are never followed:
   * one throws {@linkcode RedirectRefused} naming the URL and the
   * Location (a signed request must not travel to another host, and a
   * server must not point hsync elsewhere). Throws `ConnectError` when the
   * server cannot be reached, `HttpError` (with the server's code and
   * message) for an error status, `TimeoutError` when nothing arrives in time,
   * and the caller's abort reason when its signal aborts. A 503 `busy` from
   * one of hsyncd's limits is waited for (its `Retry-After` at a time, for
   * as long as the idle timeout) and the request sent again.
   */
  send(url: URL, options: SendOptions = {}): Promise<Exchange> {
    return this.#send(url, options, undefined);
  }

  async #send(
    url: URL,
    options: SendOptions,
    busySince: number | undefined,
  ): Promise<Exchange> {
    const controller = new AbortController();
    const outer = options.signal;
    const onAbort = () => controller.abort(outer!.reason);
    if (outer?.aborted) throw outer.reason;
    const bucket = this.#bandwidth;
    // Bytes go through node's client, unread by the Request (their digest
    // is declared when requests are signed), piece by piece.
    const buffered = options.body instanceof Uint8Array
      ? options.body
      : undefined;
    // A text body waits its turn before the idle timer starts.
    if (typeof options.body === "string" && bucket !== undefined) {
      await bucket.take(options.body.length, outer);
    }
    outer?.addEventListener("abort", onAbort, { once: true });
    // Bytes of the body told to onBodySent by this attempt.
    let told = 0;
    const idleMs = this.#idleMs;
    let last = performance.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const arm = (ms: number) => {
      timer = setTimeout(() => {
        const idle = performance.now() - last;
        if (idle + 1 >= idleMs) {
          controller.abort(
            new TimeoutError(
              `No data from ${this.host} for ${
                Math.round(idleMs / 1000)
              } seconds`,
            ),
          );
        } else arm(idleMs - idle);
      }, ms);
    };
    arm(idleMs);
    const done = () => {
      clearTimeout(timer);
      outer?.removeEventListener("abort", onAbort);
    };
    const exchange = (response: Response): Exchange => ({
      response: bucket === undefined || response.body === null
        ? response
        : new Response(
          throttled(response.body, bucket, () => last = performance.now()),
          response,
        ),
      signal: controller.signal,
      kick: () => last = performance.now(),
      done,
      throttled: bucket !== undefined && response.body !== null,
    });
    try {
      const request = new Request(url, {
        method: options.method ?? "GET",
        headers: options.headers,
        body: buffered !== undefined ? undefined : options.body,
        signal: controller.signal,
        redirect: "manual",
      });
      if (
        buffered !== undefined && this.#sign !== undefined &&
        !request.headers.has(BODY_DIGEST_HEADER)
      ) {
        const { bodyDigest } = await import("../shared/auth.ts");
        request.headers.set(BODY_DIGEST_HEADER, bodyDigest(buffered));
      }
      if (this.#sign !== undefined) await this.#sign(request);
      let response: Response;
      // When the request went (after fetch's own start, the first call's
      // 3-5 ms of setting itself up, which is no part of a round trip).
      let sent = performance.now();
      const opening = this.trips.opening;
      try {
        if (buffered !== undefined) {
          response = await (await this.#buffers()).send(request, buffered, {
            beforePiece: bucket === undefined ? undefined : async (n) => {
              await bucket.take(n, controller.signal);
              last = performance.now();
            },
            onPiece: (n) => {
              last = performance.now();
              told += n;
              options.onBodySent?.(n);
            },
          });
        } else {
          const answer = fetch(request, { client: this.#client });
          sent = performance.now();
          response = await answer;
        }
      } catch (error) {
        if (controller.signal.aborted) throw controller.signal.reason;
        throw await unreachableError(
          error,
          url,
          () => this.#probe ??= probeListener(url),
        );
      }
      // A request without a body answered: its wait is about a round trip.
      this.trips.answered(
        opening,
        options.body === undefined ? performance.now() - sent : undefined,
      );
      last = performance.now();
      if (
        response.status === 401 && options.body === undefined &&
        this.#retryUnauthorized(request)
      ) {
        // Another of ssh-agent's keys, as ssh tries each in turn; a request with a body is never sent twice.
        await response.body?.cancel().catch(() => {});
        done();
        return await this.send(url, options);
      }
      const busy = busyPause(response, busySince, this.#idleMs);
      if (busy !== undefined) {
        // The server is at one of its limits: its turn comes, the file is
        // not failed for it.
        await response.body?.cancel().catch(() => {});
        done();
        // The body goes again: what of it was told counts no more.
        if (told > 0) options.onBodySent?.(-told);
        await sleep(busy.pauseMs, outer);
        return await this.#send(url, options, busy.since);
      }
      const location = response.headers.get("location");
      if (
        response.status >= 300 && response.status < 400 && location !== null
      ) {
        await response.body?.cancel().catch(() => {});
        const refused = new RedirectRefused(
          `Server ${this.host} redirected ${JSON.stringify(url.href)} to ${
            JSON.stringify(location)
          }: hsync does not follow redirects`,
        );
        this.#refused ??= refused;
        this.#onRefuse?.(refused);
        throw refused;
      }
      if (response.ok || options.accept?.includes(response.status)) {
        const foreign = foreignSuccess(response, url);
        if (foreign === undefined) return exchange(response);
        await response.body?.cancel().catch(() => {});
        throw foreign;
      }
      throw await answerError(response, url);
    } catch (error) {
      done();
      throw error;
    }
  }

  /**
   * Tells `handler` (instead of `RemoteOptions.onRefuse`) of an answer after
   * which nothing more should be asked of this server: at once when one came
   * already, for a run that takes over requests sent before it existed.
   */
  onRefuse(handler: (error: ConnectError) => void): void {
    this.#onRefuse = handler;
    if (this.#refused !== undefined) handler(this.#refused);
  }

  /**
   * The sender of byte bodies, made at the first (its module, node's HTTP
   * client, is loaded only then: a pull starts without it).
   */
  #buffers(): Promise<BufferRequests> {
    return this.#bufferRequests ??= import("./buffer_request.ts").then((m) =>
      new m.BufferRequests(this.baseUrl, { caCerts: this.#caCerts })
    );
  }

  /** Closes the connections kept for byte bodies (fetch's close by themselves). */
  close(): void {
    this.#bufferRequests?.then((sender) => sender.close(), () => {});
    this.#bufferRequests = undefined;
  }

  /**
   * Opens `count` more connections ahead of need. For fetch's pool, a `GET
   * /v1/health` on each, its answer read whole so that the connection goes
   * back to the pool; with `bodies`, connections for the byte bodies (a
   * push's bundles and ranges) opened with no request on them
   * (`BufferRequests.connectAhead`). A request that later needs a connection
   * of its own then finds one open instead of waiting a round trip for it.
   * Failures are ignored: the requests that matter report their own.
   */
  warm(count: number, signal?: AbortSignal, bodies = false): void {
    if (bodies) {
      this.#buffers().then((sender) => sender.connectAhead(count), () => {});
      return;
    }
    const url = this.url(API.health);
    for (let i = 0; i < count; i++) {
      const read = this.send(url, { signal }).then(async (ex) => {
        try {
          await ex.response.arrayBuffer();
        } finally {
          ex.done();
        }
      });
      read.catch(() => {});
    }
  }

  /** `GET /v1/stat`: one entry. */
  async stat(path: string, signal?: AbortSignal): Promise<StatEntry> {
    const ex = await this.send(this.url(API.stat, { path }), { signal });
    try {
      return await ex.response.json() as StatEntry;
    } finally {
      ex.done();
    }
  }

  /** Sends `GET /v1/list` (read by {@linkcode list}, which can be given it: a listing asked for before it is known to be wanted). */
  startList(
    path: string,
    signal?: AbortSignal,
    query: ListQuery = {},
  ): Promise<Exchange> {
    const q: Record<string, string> = { path };
    if (query.after !== undefined) q.after = query.after;
    if (query.links) q.links = "1";
    if (query.hardLinks) q.hardlinks = "1";
    if (query.ifDir) q.ifdir = "1";
    return this.send(this.url(API.list, q), { signal });
  }

  /**
   * `GET /v1/list`: the tree under a directory, line by line, in constant
   * memory: entries and omissions (see `isOmission`). `query.after` (the
   * path of the last entry received before a listing was cut) asks for the
   * rest; `links` and `hardLinks` ask for `symlink` entries and `inode`
   * tags (a `symlink` line is refused as malformed unless asked for).
   * `started` is the request already sent by {@linkcode startList}.
   */
  async *list(
    path: string,
    signal?: AbortSignal,
    query: ListQuery = {},
    started?: Promise<Exchange>,
  ): AsyncGenerator<ListLine> {
    const ex = await (started ?? this.startList(path, signal, query));
    try {
      if (ex.response.status === 204) {
        // Asked with `ifDir`: the path is not a directory (any more).
        throw new HttpError(
          400,
          "not_a_directory",
          `Cannot list ${JSON.stringify(path)}: it is not a directory`,
        );
      }
      const body = ex.response.body;
      if (body === null) return;
      for await (const line of splitLines(body, ex.kick)) {
        if (line.trim() === "") continue;
        yield parseListLine(line, this.host, query.links ?? false);
      }
    } finally {
      ex.done();
    }
  }

  /**
   * `GET /v1/glob`: the entries an absolute glob names on the server,
   * line by line (sorted by the server). A malformed line is a
   * `ProtocolError`; 404 (nothing matches) and 413 (too many) are thrown
   * as `HttpError`s for the caller to word.
   */
  async *glob(
    pattern: string,
    signal?: AbortSignal,
    maxEntries?: number,
  ): AsyncGenerator<GlobMatch> {
    const query: Record<string, string> = { pattern };
    // The server stops at this many (413) instead of sending more than the run takes.
    if (maxEntries !== undefined) query.maxEntries = String(maxEntries);
    const ex = await this.send(this.url(API.glob, query), { signal });
    try {
      const body = ex.response.body;
      if (body === null) return;
      for await (const line of splitLines(body, ex.kick)) {
        if (line.trim() === "") continue;
        yield parseGlobLine(line, this.host);
      }
    } finally {
      ex.done();
    }
  }

  /**
   * `GET /v1/extents`: where a sparse file's data is. A malformed answer
   * (ranges unsorted, overlapping or outside the size) is a `ProtocolError`.
   */
  async extents(path: string, signal?: AbortSignal): Promise<Extents> {
    const ex = await this.send(this.url(API.extents, { path }), { signal });
    const body = await jsonOrNull(ex) as Partial<Extents> | null;
    if (!validExtents(body)) {
      throw new ProtocolError(`Extents answer from ${this.host} is malformed`);
    }
    return body;
  }

  /** `POST /v1/bundle`: the response (frames, to decode with `decodeFrames`) under an idle timer. */
  bundle(
    root: string,
    paths: string[],
    signal?: AbortSignal,
  ): Promise<Exchange> {
    const body: BundleRequest = { root, paths };
    return this.send(this.url(API.bundle), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal,
    });
  }

  /**
   * `GET /v1/hash`: SHA-256 of a file, or of `length` bytes from `offset`.
   * A malformed answer throws an `Error` naming the server.
   */
  async hash(
    path: string,
    options: { offset?: number; length?: number; signal?: AbortSignal } = {},
  ): Promise<HashResult> {
    const query: Record<string, string> = { path };
    if (options.offset !== undefined) query.offset = String(options.offset);
    if (options.length !== undefined) query.length = String(options.length);
    const ex = await this.send(this.url(API.hash, query), {
      signal: options.signal,
    });
    const body = await jsonOrNull(ex) as Partial<HashResult> | null;
    if (
      typeof body?.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(body.sha256) ||
      typeof body.etag !== "string" || !Number.isSafeInteger(body.offset) ||
      !Number.isSafeInteger(body.length)
    ) {
      throw new Error(`Hash answer from ${this.host} is malformed`);
    }
    return body as HashResult;
  }

  /**
   * `GET /v1/file`, whole or of `range` (an open end asks to the end of the
   * file), with `If-Range` when given. A 200 or 416 is returned as is (the
   * caller decides what it means); other errors throw.
   */
  file(
    path: string,
    options: {
      range?: { start: number; end?: number };
      ifRange?: string;
      /** `iffile=1`: a directory answers 204 (asked before the stat tells). */
      ifFile?: boolean;
      signal?: AbortSignal;
    } = {},
  ): Promise<Exchange> {
    const headers = new Headers({ "accept-encoding": "identity" });
    if (options.range !== undefined) {
      headers.set("range", rangeHeader(options.range));
      if (options.ifRange !== undefined) {
        headers.set("if-range", options.ifRange);
      }
    }
    const query: Record<string, string> = { path };
    if (options.ifFile) query.iffile = "1";
    return this.send(this.url(API.file, query), {
      headers,
      signal: options.signal,
      accept: [416],
    });
  }

  /**
   * `GET /v1/watch`: a long-poll answered at once without a cursor (with
   * `rescan`), else when something under `path` changes or after `timeout`
   * seconds; `interval` is the server's stat-poll period where it cannot
   * watch. A malformed answer is a `ProtocolError`.
   */
  async watch(
    path: string,
    options: {
      cursor: string | null;
      timeout: number;
      interval: number;
      signal?: AbortSignal;
    },
  ): Promise<WatchResult> {
    const query: Record<string, string> = {
      path,
      timeout: String(options.timeout),
      interval: String(options.interval),
    };
    if (options.cursor !== null) query.cursor = options.cursor;
    const ex = await this.send(this.url(API.watch, query), {
      signal: options.signal,
    });
    try {
      const body = await ex.response.json() as WatchResult;
      if (
        typeof body?.cursor !== "string" || !Array.isArray(body.changed) ||
        typeof body.rescan !== "boolean"
      ) throw new ProtocolError("Malformed watch answer");
      return body;
    } finally {
      ex.done();
    }
  }
}

/** What a listing asks for besides the path (see {@linkcode Remote.list}). */
export interface ListQuery {
  /** Resume after this entry's path. */
  after?: string;
  /** `links=1`: symbolic links listed as `symlink` entries. */
  links?: boolean;
  /** `hardlinks=1`: names of one file tagged with one `inode`. */
  hardLinks?: boolean;
  /** `ifdir=1`: a path that is not a directory answers 204 (a listing asked for with the stat). */
  ifDir?: boolean;
}
