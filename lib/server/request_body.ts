/**
 * Request bodies of hsyncd: read whole within a size, counted against the
 * body budgets (in all and per peer) from before the first byte until the
 * request completes, abandoned when idle; a signed body is read once, by the
 * signature check, and kept for its endpoint.
 */
import { joinBytes } from "../shared/bytes.ts";
import { HttpError } from "../shared/errors.ts";
import type { Release } from "../shared/limiter.ts";
import { admit, hold, taking, ticketOf } from "./admission.ts";
import { DEFAULT_LIMITS } from "./limits.ts";
import { lendBodyBuffer, takeBodyBuffer } from "./body_buffers.ts";

/** Bodies already read (and checked against their signature) by `authenticate`. */
const verifiedBodies = new WeakMap<Request, Uint8Array<ArrayBuffer>>();

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

/**
 * The request body as the pieces it arrived in (at most `max` bytes in
 * all), for a caller that writes them out as they are: no copy into one
 * buffer. A body `authenticate` read and checked is one piece.
 */
export async function readRawPieces(
  request: Request,
  max: number,
): Promise<Uint8Array[]> {
  const verified = verifiedBodies.get(request);
  verifiedBodies.delete(request);
  return verified !== undefined ? [verified] : await readPieces(request, max);
}

/** Bytes in all of `pieces` (a body read by {@linkcode readRawPieces}). */
export function piecesLength(pieces: readonly Uint8Array[]): number {
  let n = 0;
  for (const piece of pieces) n += piece.length;
  return n;
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
  const tooLarge = () =>
    new HttpError(
      413,
      "too_large",
      `Cannot read the request body: it is larger than ${max} bytes`,
    );
  const declared = request.headers.get("content-length");
  const length = declared === null ? undefined : Number(declared);
  if (length !== undefined && !(length <= max)) throw tooLarge();
  if (request.body === null) return [];
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
  // One timer for the whole body, looking again when it fires: a timer per
  // read is thousands per 8 MiB body.
  let lastByteAt = performance.now();
  let idle = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const watch = (ms: number) => {
    timer = setTimeout(() => {
      const quiet = performance.now() - lastByteAt;
      if (quiet < limits.bodyIdleMs) return watch(limits.bodyIdleMs - quiet);
      idle = true;
      reader.cancel().catch(() => {});
    }, ms);
  };
  watch(limits.bodyIdleMs);
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
          if (got.value === undefined && !idle) throw cut(total);
          if (got.value !== undefined) buffer = got.value.buffer as ArrayBuffer;
        }
      }
      if (idle) {
        throw new HttpError(
          408,
          "timeout",
          `Cannot read the request body: no byte arrived for ${
            limits.bodyIdleMs / 1000
          } s`,
        );
      }
      const { done, value } = got;
      if (done) break;
      lastByteAt = performance.now();
      total += value.length;
      if (total > max) throw tooLarge();
      if (length !== undefined && total > length) {
        throw new HttpError(
          400,
          "bad_request",
          `Cannot read the request body: it is longer than its Content-Length (${length} bytes)`,
        );
      }
      if (total > claimed) claim(total - claimed);
      if (buffer === undefined) chunks.push(value);
    }
  } catch (error) {
    unclaim();
    await reader.cancel().catch(() => {});
    throw error;
  } finally {
    clearTimeout(timer);
  }
  if (buffer !== undefined) {
    lendBodyBuffer(buffer);
    chunks.push(new Uint8Array(buffer, 0, total));
  }
  // Only what arrived stays claimed (no more than before: this cannot fail).
  unclaim();
  claim(total);
  if (ticket !== undefined) {
    for (const release of releases) hold(ticket, release);
    ticket.bodyRead = true;
  }
  return chunks;
}
