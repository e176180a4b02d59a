/**
 * The request handler of hsyncd (DESIGN.md §5): a request flows one way,
 * Allowed_host -> size -> signature -> admission -> router -> endpoint ->
 * jail, and whatever it throws on the way is answered by the one map of
 * error_status.ts; then one access-log line.
 */
import { HttpError } from "../shared/errors.ts";
import { API, API_HEADER, API_VERSION, HEADER } from "../shared/wire.ts";
import { createHostMatcher, normalizeAddress } from "../shared/host_allow.ts";
import { admit, openTicket, settle } from "./admission.ts";
import { type ContextOptions, createContext } from "./context.ts";
import { errorResponse } from "./error_status.ts";
import type { ServerLimits } from "./limits.ts";
import { authenticate, type AuthOptions } from "./request_auth.ts";
import { overHttp1 } from "./http.ts";
import { route } from "./router.ts";

export { DEFAULT_LIMITS, type ServerLimits } from "./limits.ts";

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

/** Options of {@linkcode createHandler}. */
export interface HandlerOptions extends ContextOptions, AuthOptions {
  /** Called once per request, when the response headers are ready. */
  log?: (entry: AccessLogEntry) => void;
}

/** A `Deno.serve` handler. */
export type Handler = (
  request: Request,
  info: Deno.ServeHandlerInfo<Deno.NetAddr>,
) => Promise<Response>;

/**
 * Builds the handler of hsyncd. Resolves the configured directories once, so
 * a missing `Only_allowed_path` or an invalid `Allowed_host` pattern throws
 * `ConfigError` here, before the server listens. With `verifier`, every
 * request must carry a valid signature (`Authorization: HSync-Ed25519 ...`)
 * bound to one of `serverNames`, else 401.
 */
export async function createHandler(options: HandlerOptions): Promise<Handler> {
  const hostAllowed = createHostMatcher(options.settings.allowedHost);
  const ctx = await createContext(options);

  return async function handle(request: Request, info) {
    const started = performance.now();
    const time = new Date();
    const remote = normalizeAddress(info.remoteAddr.hostname);
    const url = new URL(request.url);
    const ticket = openTicket(ctx, request, remote, url.pathname);
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
      checkRequestSize(request, url, ctx.limits);
      if (
        options.verifier !== undefined &&
        !anonymousRead(options, request, url)
      ) {
        // A good signature is checked before the request is counted; the
        // signed body is read only once it is (`readBody` admits it first).
        await authenticate(options, request, url, remote, ctx.limits);
      }
      admit(ticket);
      response = await route(ctx, request, url);
    } catch (error) {
      response = errorResponse(error);
      if (response.status === 500) ctx.reportError(error, request);
      // Nothing is drained here: a refused peer, or a body left unread, is
      // told the connection ends (what Deno does with it: README "Bounded work").
      // Only over HTTP/1.x: HTTP/2 forbids the header (curl fails the stream).
      if (!overHttp1(request)) {
        // HTTP/2: the stream ends with the answer; nothing more to say.
      } else if (
        (request.body !== null && !ticket.bodyRead) ||
        (error instanceof HttpError &&
          (error.code === "host_not_allowed" || error.status === 401 ||
            error.status === 408))
      ) response.headers.set("connection", "close");
    }
    // A push's request done (its work is, the answer going now): counted
    // for the last requests of its run that wait on it (push_locks.ts).
    // Only an admitted one: a refused peer or signature counts for nothing.
    if (ticket.admitted) {
      ctx.pushLocks.completed(
        request.headers.get(HEADER.uploadSession),
        request.headers.get(HEADER.pushRun),
        response.status >= 400,
      );
    }
    // How hsync tells hsyncd from another HTTP server on this address.
    response.headers.set(API_HEADER, String(API_VERSION));
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

/** The endpoints that only read (a bundle is a read, though a POST). */
const READS = new Set<string>([
  API.health,
  API.stat,
  API.list,
  API.glob,
  API.file,
  API.hash,
  API.extents,
  API.watch,
  API.bundle,
]);

/**
 * Whether an unsigned request may go unchecked: with `Anonymous_read`, a
 * read that carries no signature. A signed request is always checked, and
 * a write always needs one.
 */
function anonymousRead(
  options: HandlerOptions,
  request: Request,
  url: URL,
): boolean {
  return options.settings.anonymousRead === true &&
    !request.headers.has("authorization") && READS.has(url.pathname) &&
    (request.method !== "POST" || url.pathname === API.bundle);
}

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
