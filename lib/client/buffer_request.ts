/**
 * Requests whose body is one buffer already in memory (a push's PUT of a
 * read range), sent through the runtime's `node:http`/`node:https` client
 * instead of `fetch`: Deno's fetch copies such a body twice before it
 * reaches the socket (the Request takes a copy, then the copy is copied
 * into the runtime), where node's client writes the buffer itself.
 * Pushing 1 GiB on loopback in 2 MiB PUTs over 4 connections took the
 * client 1.07-1.36 s of CPU through fetch and 0.69-0.79 s through this.
 * The answer comes back as a standard `Response`, so what reads it is the
 * same for both.
 */
import { Buffer } from "node:buffer";
import * as http from "node:http";
import * as https from "node:https";
import { isIP } from "node:net";
import type { Duplex } from "node:stream";
import { joinBytes } from "../shared/bytes.ts";

/** Bytes written to the socket at a time (each told to `onPiece`). */
const PIECE_BYTES = 256 * 1024;
/** Pieces handed to the socket before the first of them is written. */
const PIECES_QUEUED = 2;

/** Options of {@linkcode BufferRequests}. */
export interface BufferRequestOptions {
  /** Extra certificates (PEM) trusted beside the default roots, for `https:` (CA_file). */
  caCerts?: string[];
}

/** Sends bodies held in memory over kept-alive connections to one server. */
export class BufferRequests {
  readonly #agent: InstanceType<typeof AheadHttpAgent>;
  readonly #tls: boolean;
  readonly #url: URL;

  /** A sender for requests to `baseUrl`'s scheme (`http:` or `https:`). */
  constructor(baseUrl: string, options: BufferRequestOptions = {}) {
    this.#url = new URL(baseUrl);
    this.#tls = this.#url.protocol === "https:";
    this.#agent = this.#tls
      ? new AheadHttpsAgent({
        keepAlive: true,
        // Deno adds these to its default roots, as fetch's caCerts.
        ...(options.caCerts === undefined ? {} : { ca: options.caCerts }),
      })
      : new AheadHttpAgent({ keepAlive: true });
  }

  /**
   * Opens `count` connections (and their TLS handshakes) ahead of need,
   * without a request on them: the first bodies then go the moment they
   * are read. Opened with a request (a `GET /v1/health` each), a connection
   * was busy with it for a round trip just when the first bundles were
   * ready, and they opened connections of their own (2,000 files through a
   * 50 ms round trip: the first bundle reached hsyncd 82 ms after it was
   * sent, 30 ms now). A connection that fails meanwhile is dropped when
   * taken.
   */
  connectAhead(count: number): void {
    const hostname = this.#url.hostname.replace(/^\[(.*)\]$/, "$1");
    const port = Number(this.#url.port || (this.#tls ? 443 : 80));
    for (let i = 0; i < count; i++) {
      this.#agent.openAhead({
        host: hostname,
        port,
        ...(this.#tls && !isIP(hostname) ? { servername: hostname } : {}),
      });
    }
  }

  /**
   * Sends `request` (its method, URL, headers and signal; its own body is
   * ignored) with `body` as its body, written in pieces of
   * {@linkcode PIECE_BYTES}: `onPiece` is told each piece the socket took
   * (a sign of life for an idle timer, and progress), and `beforePiece`,
   * when given, is awaited before each piece is written (a bandwidth
   * limit). Resolves to the answer, read whole. Rejects with a `TypeError`
   * carrying the network's reason when no answer comes, and with the
   * signal's reason when it aborts.
   */
  send(
    request: Request,
    body: Uint8Array,
    pace: {
      beforePiece?: (bytes: number) => Promise<void>;
      onPiece?: (bytes: number) => void;
    } = {},
  ): Promise<Response> {
    const url = new URL(request.url);
    const signal = request.signal;
    if (signal.aborted) return Promise.reject(signal.reason);
    const headers: Record<string, string> = {};
    request.headers.forEach((value, name) => headers[name] = value);
    headers["content-length"] = String(body.byteLength);
    return new Promise<Response>((resolve, reject) => {
      let settled = false;
      // Settled here, not by the request's own "error": node's client in
      // Deno emits none for a request destroyed on a reused connection
      // before its answer (a push stopped with Ctrl-C hung so).
      const onAbort = () => {
        settle(signal.reason);
        outgoing.destroy(signal.reason);
      };
      const settle = (error: unknown, response?: Response) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener("abort", onAbort);
        if (response !== undefined) resolve(response);
        else reject(signal.aborted ? signal.reason : networkError(error));
      };
      const outgoing = (this.#tls ? https : http).request({
        protocol: url.protocol,
        hostname: url.hostname.replace(/^\[(.*)\]$/, "$1"),
        port: url.port === "" ? undefined : Number(url.port),
        method: request.method,
        path: url.pathname + url.search,
        headers,
        agent: this.#agent,
      }, (incoming) => {
        const pieces: Buffer[] = [];
        incoming.on("data", (piece: Buffer) => pieces.push(piece));
        incoming.on("error", (error) => settle(error));
        incoming.on(
          "end",
          () => settle(undefined, responseOf(incoming, pieces)),
        );
      });
      outgoing.on("error", (error) => settle(error));
      signal.addEventListener("abort", onAbort, { once: true });
      const whole = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
      // A few pieces queued at once (views, not copies) keep the socket
      // busy; each is told once written. Node's stream writes what queued
      // meanwhile in one go and tells those only when all are written.
      (async () => {
        const queued: Promise<void>[] = [];
        for (let at = 0; at < whole.length && !settled; at += PIECE_BYTES) {
          const piece = whole.subarray(at, at + PIECE_BYTES);
          await pace.beforePiece?.(piece.length);
          if (settled) return;
          queued.push(
            new Promise<void>((done) =>
              outgoing.write(piece, (error) => {
                if (error) settle(error);
                else if (!settled) pace.onPiece?.(piece.length);
                done();
              })
            ),
          );
          if (queued.length >= PIECES_QUEUED) await queued.shift();
        }
        outgoing.end();
      })().catch((error) => {
        settle(error);
        outgoing.destroy();
      });
    });
  }

  /** Closes the kept-alive connections (and those opened ahead). */
  close(): void {
    this.#agent.dropAhead();
    this.#agent.destroy();
  }
}

/** Errors of a connection opened ahead before a request takes it: the request that takes it hears of them. */
function ignore(): void {}

/**
 * `Base` (node's http or https agent) whose new connections are taken from
 * those opened ahead ({@linkcode openAhead}) while any is left.
 * `createConnection` is the agent's documented way to make one.
 */
// deno-lint-ignore no-explicit-any
function withAhead<T extends new (...args: any[]) => http.Agent>(Base: T) {
  return class extends Base {
    readonly #ahead: Duplex[] = [];

    /** Opens a connection the agent's own way (TLS with its certificates), kept for a request. */
    openAhead(options: { host: string; port: number; servername?: string }) {
      const socket = super.createConnection({
        ...(this as unknown as { options: object }).options,
        ...options,
      }) as Duplex;
      socket.on("error", ignore);
      this.#ahead.push(socket);
    }

    /** Closes the connections opened ahead that no request took. */
    dropAhead(): void {
      for (const socket of this.#ahead.splice(0)) socket.destroy();
    }

    // deno-lint-ignore no-explicit-any
    override createConnection(...args: any[]) {
      while (this.#ahead.length > 0) {
        const socket = this.#ahead.shift()!;
        socket.removeListener("error", ignore);
        if (!socket.destroyed && socket.writable) return socket;
        socket.destroy();
      }
      // deno-lint-ignore no-explicit-any
      return (super.createConnection as any)(...args);
    }
  };
}

const AheadHttpAgent = withAhead(http.Agent);
const AheadHttpsAgent = withAhead(https.Agent);

/** The answer read whole, as a standard Response. */
function responseOf(
  incoming: http.IncomingMessage,
  pieces: Buffer[],
): Response {
  const status = incoming.statusCode ?? 0;
  const headers = new Headers();
  for (const [name, value] of Object.entries(incoming.headers)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) {
      headers.append(name, v);
    }
  }
  return new Response(
    status === 204 || status === 304 ? null : joinBytes(pieces),
    { status, statusText: incoming.statusMessage ?? "", headers },
  );
}

/** A failure with no answer, worded as fetch words its own (what `unreachableError` reads). */
function networkError(error: unknown): TypeError {
  const code = (error as { code?: string })?.code;
  const reason = code === "ECONNREFUSED"
    ? "Connection refused"
    : code === "ECONNRESET" || code === "EPIPE"
    ? "Connection reset by peer"
    : error instanceof Error
    ? error.message
    : String(error);
  return new TypeError("error sending request", {
    cause: new Error(reason, { cause: error }),
  });
}
