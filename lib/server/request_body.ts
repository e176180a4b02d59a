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
  return joinBytes(await readPieces(request, max));
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
  return chunks;
}
