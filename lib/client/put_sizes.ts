/**
 * How many bytes each PUT of a push carries: 2 MiB near, larger far away
 * (where each PUT waits a round trip for its answer), told by measurement.
 */
import type { Remote } from "./remote.ts";
import { FAR_RTT_MS } from "./stream_governor.ts";

/**
 * Most bytes one PUT carries (hsyncd reads a range whole, at most 8 MiB): it
 * is read into memory before it is sent, and a PUT cut off costs no more
 * than this when the push is resumed. Pushing 1 GiB on loopback (3 runs
 * each, bodies written by node:http): 2 MiB took 1.47-1.85 s at a client peak
 * of 92-103 MiB, 4 MiB 1.50-1.69 s at 107-118 MiB, 8 MiB 1.65-1.84 s at
 * 142-156 MiB.
 */
export const PUT_MAX_BYTES = 2 * 1024 * 1024;
/**
 * Bytes of a PUT to a far server ({@linkcode FAR_RTT_MS}): each waits a
 * round trip for its answer, so far away fewer, larger ones carry more per
 * round trip (hsyncd takes at most 8 MiB per range).
 */
const FAR_PUT_BYTES = 8 * 1024 * 1024;
/**
 * Bytes of PUT bodies in flight at most for far PUTs: hsyncd holds 64 MiB
 * of request bodies per peer and answers 503 past it.
 */
const FAR_IN_FLIGHT_BYTES = 64 * 1024 * 1024;

/** The size of the next PUT of one push, from the round trip to the server. */
export class PutSizes {
  readonly #remote: Remote;
  /** The size near (and everywhere when it was asked for). */
  readonly near: number;
  /** PUTs may grow far away (not when a size was asked for). */
  readonly #scalable: boolean;
  /** Streams of PUTs running now. */
  #streams = 0;

  /** Sizes for PUTs to `remote`; `asked` pins them (tests). */
  constructor(remote: Remote, asked?: number) {
    this.#remote = remote;
    this.near = asked ?? PUT_MAX_BYTES;
    this.#scalable = asked === undefined;
  }

  /**
   * Bytes of the next PUT: near, {@linkcode PUT_MAX_BYTES}; far (a round
   * trip, {@linkcode RoundTrips.pathMs}, of {@linkcode FAR_RTT_MS} or
   * more), as
   * many as let every stream's PUT fit in what hsyncd takes from one peer,
   * up to {@linkcode FAR_PUT_BYTES}. (The wait for a PUT's own answer cannot
   * tell: on loopback it took 9-137 ms behind the other streams' bodies.)
   */
  next(): number {
    const far = (this.#remote.trips.pathMs ?? 0) >= FAR_RTT_MS;
    if (!this.#scalable || !far) return this.near;
    const share = Math.floor(FAR_IN_FLIGHT_BYTES / Math.max(1, this.#streams));
    return Math.max(this.near, Math.min(FAR_PUT_BYTES, share));
  }

  /** A stream of PUTs starts; the function returned ends it (called once). */
  stream(): () => void {
    this.#streams++;
    return () => this.#streams--;
  }
}
