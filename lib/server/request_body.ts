/**
 * Request bodies of hsyncd: read whole within a size, or (an upload range)
 * streamed piece by piece to its endpoint; counted against the body budgets
 * (in all and per peer) from before the first byte, abandoned when idle. A
 * signed body read whole is read once, by the signature check, and kept for
 * its endpoint; a streamed one is checked against its signed digest once it
 * has all come.
 */
import { joinBytes } from "../shared/bytes.ts";
import { HttpError } from "../shared/errors.ts";
import { createHash } from "node:crypto";
import type { Release } from "../shared/limiter.ts";
import { admit, hold, taking, type Ticket, ticketOf } from "./admission.ts";
import { DEFAULT_LIMITS } from "./limits.ts";
import {
  giveBodyBuffer,
  lendBodyBuffer,
  takeBodyBuffer,
} from "./body_buffers.ts";

/** Bodies already read (and checked against their signature) by `authenticate`. */
const verifiedBodies = new WeakMap<Request, Uint8Array<ArrayBuffer>>();

/** Digests a signature covers of bodies `authenticate` left unread, for {@linkcode streamBody}'s caller. */
const signedDigests = new WeakMap<Request, string>();

/** Keeps the digest `authenticate` checked the signature of, for a body streamed by its endpoint (checked once read). */
export function keepSignedDigest(request: Request, digest: string): void {
  signedDigests.set(request, digest);
}

/** The SHA-256 a streamed body must have: the one its signature covers, undefined for an unsigned request. */
export function signedDigestOf(request: Request): string | undefined {
  return signedDigests.get(request);
}

/** Keeps the body `authenticate` read and verified, for {@linkcode readJsonBody}. */
export function keepVerifiedBody(
  request: Request,
  body: Uint8Array<ArrayBuffer>,
): void {
  verifiedBodies.set(request, body);
}

/**
 * The request body as bytes (at most `max`): the one `authenticate` read and
 * checked against its signature, or read now (a server without keys).
 */
export async function readRawBody(
  request: Request,
  max: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const verified = verifiedBodies.get(request);
  verifiedBodies.delete(request);
  return verified ?? await readBody(request, max);
}

/** The request body parsed as JSON (at most `max` bytes; 400 when it is not JSON). */
export async function readJsonBody(
  request: Request,
  max: number,
): Promise<unknown> {
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
export async function readBody(
  request: Request,
  max: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const pieces = await readPieces(request, max);
  // A body of a declared length is one piece already.
  return pieces.length === 1
    ? pieces[0] as Uint8Array<ArrayBuffer>
    : joinBytes(pieces);
}

/** A body that stopped before its declared length without an error. */
function cut(total: number): HttpError {
  return new HttpError(
    400,
    "bad_request",
    `Cannot read the request body: it ended after ${total} bytes, short of its Content-Length`,
  );
}

/** {@linkcode readBody}'s work, leaving the body in the pieces it arrived in. */
async function readPieces(
  request: Request,
  max: number,
): Promise<Uint8Array[]> {
  const ticket = ticketOf(request);
  if (ticket !== undefined) admit(ticket);
  const declared = request.headers.get("content-length");
  const length = declared === null ? undefined : Number(declared);
  if (length !== undefined && !(length <= max)) throw tooLarge(max);
  if (request.body === null) return [];
  const limits = ticket?.ctx.limits ?? DEFAULT_LIMITS;
  // Claimed before the first byte is read (a body of unknown length claims
  // the most it may be, within the budgets, and more as it comes): bodies
  // read at once never share out the budget so that none can complete.
  const claims = new BodyClaims(ticket);
  claims.claim(
    length !== undefined && Number.isSafeInteger(length)
      ? length
      : Math.min(max, limits.peerBodyBytes, limits.bodyBytes),
  );
  const chunks: Uint8Array[] = [];
  let total = 0;
  // A body of a declared length is read into one buffer of that length (a
  // kept one for a large body); any other in the pieces it arrives in.
  // (Deno hands some bodies, those it has whole already, as a plain stream.)
  // Read with the default reader, each piece is a view of a new 64 KiB
  // buffer, even for a bundle request's few hundred bytes of JSON: serving
  // bench/memory.ts's 64 clients, hsyncd peaked at 2.12-2.59x the rsync
  // daemon's memory that way (3 rounds), 1.66-1.98x this way (5 rounds).
  let buffer: ArrayBuffer | undefined;
  let reader:
    | ReadableStreamBYOBReader
    | ReadableStreamDefaultReader<Uint8Array>
    | undefined;
  if (length !== undefined && length > 0) {
    try {
      reader = request.body.getReader({ mode: "byob" });
      buffer = takeBodyBuffer(length);
    } catch (error) {
      if (!(error instanceof TypeError)) throw error;
    }
  }
  reader ??= request.body.getReader();
  const idle = new IdleWatch(reader, limits.bodyIdleMs);
  try {
    while (true) {
      let got: ReadableStreamReadResult<Uint8Array>;
      if (buffer === undefined) {
        got = await (reader as ReadableStreamDefaultReader<Uint8Array>)
          .read();
      } else {
        // Past the declared length, one byte more is asked for: a body that
        // has it is too large, whatever it declared.
        const view = total < length!
          ? new Uint8Array(buffer, total, length! - total)
          : new Uint8Array(1);
        got = await (reader as ReadableStreamBYOBReader).read(view);
        if (total < length!) {
          // The memory read into comes back as a new ArrayBuffer (none
          // when the stream was cancelled: the body is given up then).
          if (got.value === undefined && !idle.fired) throw cut(total);
          if (got.value !== undefined) buffer = got.value.buffer as ArrayBuffer;
        }
      }
      idle.check();
      const { done, value } = got;
      if (done) break;
      idle.touch();
      total += value.length;
      if (total > max) throw tooLarge(max);
      if (length !== undefined && total > length) throw tooLong(length);
      claims.atLeast(total);
      if (buffer === undefined) chunks.push(value);
    }
  } catch (error) {
    claims.unclaim();
    await reader.cancel().catch(() => {});
    throw error;
  } finally {
    idle.stop();
  }
  if (buffer !== undefined) {
    lendBodyBuffer(buffer);
    chunks.push(new Uint8Array(buffer, 0, total));
  }
  // Only what arrived stays claimed (no more than before: this cannot fail).
  claims.unclaim();
  claims.claim(total);
  claims.holdUntilDone();
  if (ticket !== undefined) ticket.bodyRead = true;
  return chunks;
}

/**
 * A streamed body whose bytes must count for nothing: longer than its
 * length, or not the bytes its signature covers (the pieces handed on
 * before it showed are not the ones meant).
 */
export class BodyRefused extends HttpError {
  constructor(status: number, code: string, message: string) {
    super(status, code, message);
    this.name = "BodyRefused";
  }
}

/** Bytes of a streamed body read at a time (into one kept buffer). */
export const STREAM_PIECE_BYTES = 1024 * 1024;

/** Options of {@linkcode streamBody}. */
export interface StreamOptions {
  /** The body's bytes, exactly: fewer or more is a 400. */
  length: number;
  /** Told each piece as it arrives, in order; what it throws stops the body. */
  sink: (piece: Uint8Array) => void;
  /** The lower-case hex SHA-256 the body must have (a signed body's declared digest): checked once it has all arrived. */
  digest?: string;
}

/**
 * Reads the body of `request`, exactly `length` bytes, piece by piece into
 * one kept buffer of at most {@linkcode STREAM_PIECE_BYTES}, handing each
 * piece to `sink` as it arrives: a large body is never whole in memory, and
 * its bytes are written out while they are still in the processor's cache
 * (pushing 1 GiB in 2 MiB ranges on loopback, 11 interleaved runs: hsyncd's
 * CPU 1.44 s read whole, 1.16 s streamed). Admitted and counted as
 * {@linkcode readBody}'s (the buffer's bytes, not the body's); 408 after
 * `bodyIdleMs` without a byte, 400 when the body ends short of `length`;
 * {@linkcode BodyRefused} (400) when it is longer and (401) when it does
 * not have `digest`: its pieces were handed on already, and must not count.
 * Resolves once the whole body is read and checked.
 */
export async function streamBody(
  request: Request,
  options: StreamOptions,
): Promise<void> {
  const ticket = ticketOf(request);
  if (ticket !== undefined) admit(ticket);
  const { length, sink } = options;
  if (request.body === null) {
    if (length === 0) return;
    throw cut(0);
  }
  const limits = ticket?.ctx.limits ?? DEFAULT_LIMITS;
  const claims = new BodyClaims(ticket);
  let buffer = takeBodyBuffer(
    Math.max(1, Math.min(length, STREAM_PIECE_BYTES)),
  );
  claims.claim(buffer.byteLength);
  const hash = options.digest === undefined ? undefined : createHash("sha256");
  // (Deno hands some bodies, those it has whole already, as a plain
  // stream: their pieces are handed on as they are.)
  let reader:
    | ReadableStreamBYOBReader
    | ReadableStreamDefaultReader<Uint8Array>;
  try {
    reader = request.body.getReader({ mode: "byob" });
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    reader = request.body.getReader();
  }
  const byob = reader instanceof ReadableStreamBYOBReader;
  const idle = new IdleWatch(reader, limits.bodyIdleMs);
  let total = 0;
  try {
    while (true) {
      // Past the length, one byte more is asked for: a body that has it is
      // too long, whatever it declared.
      const want = Math.min(buffer.byteLength, length - total);
      const got = byob
        ? await (reader as ReadableStreamBYOBReader).read(
          want > 0 ? new Uint8Array(buffer, 0, want) : new Uint8Array(1),
        )
        : await (reader as ReadableStreamDefaultReader<Uint8Array>).read();
      idle.check();
      if (got.done) {
        if (byob && got.value !== undefined && want > 0) {
          buffer = got.value.buffer as ArrayBuffer;
        }
        if (total < length) throw cut(total);
        break;
      }
      const piece = got.value;
      if (byob) buffer = piece.buffer as ArrayBuffer;
      if (total + piece.length > length) {
        const { status, code, message } = tooLong(length);
        throw new BodyRefused(status, code, message);
      }
      idle.touch();
      hash?.update(piece);
      sink(piece);
      total += piece.length;
    }
  } catch (error) {
    await reader.cancel().catch(() => {});
    throw error;
  } finally {
    idle.stop();
    claims.unclaim();
    lendBodyBuffer(buffer);
    giveBodyBuffer([new Uint8Array(buffer)]);
  }
  if (ticket !== undefined) ticket.bodyRead = true;
  if (hash !== undefined && hash.digest("hex") !== options.digest) {
    throw new BodyRefused(401, "unauthorized", "Authentication required");
  }
}

function tooLarge(max: number): HttpError {
  return new HttpError(
    413,
    "too_large",
    `Cannot read the request body: it is larger than ${max} bytes`,
  );
}

function tooLong(length: number): HttpError {
  return new HttpError(
    400,
    "bad_request",
    `Cannot read the request body: it is longer than its Content-Length (${length} bytes)`,
  );
}

/**
 * The bytes one request's body holds of the request-body budgets (in all
 * and for its peer): taken before they are read, 503 `busy` past them.
 */
class BodyClaims {
  readonly #ticket: Ticket | undefined;
  #releases: Release[] = [];
  #claimed = 0;

  constructor(ticket: Ticket | undefined) {
    this.#ticket = ticket;
  }

  /** Claims `bytes` more. */
  claim(bytes: number): void {
    const ticket = this.#ticket;
    if (ticket === undefined || bytes <= 0) return;
    const { ctx, peer } = ticket;
    this.#releases.push(
      taking(ctx, "read the request body", () => ctx.bodies.take(peer, bytes)),
    );
    this.#claimed += bytes;
  }

  /** Claims up to `total` bytes in all. */
  atLeast(total: number): void {
    if (total > this.#claimed) this.claim(total - this.#claimed);
  }

  /** Gives back all that was claimed. */
  unclaim(): void {
    for (const release of this.#releases) release();
    this.#releases = [];
    this.#claimed = 0;
  }

  /** Keeps what is claimed until the request completes. */
  holdUntilDone(): void {
    const ticket = this.#ticket;
    if (ticket === undefined) return;
    for (const release of this.#releases) hold(ticket, release);
    this.#releases = [];
  }
}

/**
 * Abandons a body that goes `ms` without a byte (408): one timer for the
 * whole body, looking again when it fires (a timer per read is thousands
 * per 8 MiB body).
 */
class IdleWatch {
  readonly #ms: number;
  readonly #reader: { cancel(): Promise<void> };
  #lastByteAt = performance.now();
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** The body went quiet too long and was cancelled. */
  fired = false;

  constructor(reader: { cancel(): Promise<void> }, ms: number) {
    this.#reader = reader;
    this.#ms = ms;
    this.#watch(ms);
  }

  #watch(ms: number): void {
    this.#timer = setTimeout(() => {
      const quiet = performance.now() - this.#lastByteAt;
      if (quiet < this.#ms) return this.#watch(this.#ms - quiet);
      this.fired = true;
      this.#reader.cancel().catch(() => {});
    }, ms);
  }

  /** A byte arrived. */
  touch(): void {
    this.#lastByteAt = performance.now();
  }

  /** Throws the 408 once the body was abandoned. */
  check(): void {
    if (!this.fired) return;
    throw new HttpError(
      408,
      "timeout",
      `Cannot read the request body: no byte arrived for ${this.#ms / 1000} s`,
    );
  }

  stop(): void {
    clearTimeout(this.#timer);
  }
}
