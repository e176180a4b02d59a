/**
 * How many bytes each PUT of a push carries: as many as hsyncd takes in
 * one range, fewer when many streams share what a push holds in flight.
 */

/**
 * Most bytes one PUT carries (hsyncd takes at most 8 MiB per range). hsyncd
 * writes a range as it arrives, so a large one costs it no wait, and each
 * PUT costs both sides a request: pushing 1 GiB on loopback, 15 interleaved
 * runs, 2 MiB PUTs took 1.385 s (client CPU 1.23 s, hsyncd 1.11 s) and
 * 8 MiB ones 1.118 s (0.91 s, 0.87 s).
 */
export const PUT_MAX_BYTES = 8 * 1024 * 1024;
/**
 * Bytes of PUT bodies in flight at most, over every stream of a push: each
 * is read into memory before it is sent. 1 GiB on loopback goes in 16
 * streams: 8 MiB each took 1375 ms at a client peak of 198 MiB of RSS, 4 MiB
 * each (a bound of 64 MiB) 1474 ms at 146-161 MiB (13 interleaved runs).
 */
const IN_FLIGHT_BYTES = 128 * 1024 * 1024;
/** Fewest bytes of a PUT the in-flight bound makes (a power of two, as every size). */
const PUT_MIN_BYTES = 2 * 1024 * 1024;

/** The size of the next PUT of one push, from the streams of PUTs running. */
export class PutSizes {
  /** The size asked for (tests), else undefined. */
  readonly #asked: number | undefined;
  /** Streams of PUTs running now. */
  #streams = 0;

  /** Sizes for PUTs of one push; `asked` pins them (tests). */
  constructor(asked?: number) {
    this.#asked = asked;
  }

  /**
   * Bytes of the next PUT: {@linkcode PUT_MAX_BYTES} while every stream's
   * PUT fits in {@linkcode IN_FLIGHT_BYTES}, else the power of two that
   * does (at least {@linkcode PUT_MIN_BYTES}); a few sizes only, so the
   * buffers read into are used again.
   */
  next(): number {
    if (this.#asked !== undefined) return this.#asked;
    let size = PUT_MAX_BYTES;
    while (size > PUT_MIN_BYTES && size * this.#streams > IN_FLIGHT_BYTES) {
      size /= 2;
    }
    return size;
  }

  /** A stream of PUTs starts; the function returned ends it (called once). */
  stream(): () => void {
    this.#streams++;
    return () => this.#streams--;
  }
}

/** Bytes of answered PUT buffers kept for the next PUTs (as many as a push holds in flight). */
const KEPT_BYTES = IN_FLIGHT_BYTES;

/**
 * The buffers PUTs are read into, used again once their PUT is answered:
 * sizes are powers of two (at least 64 KiB), so a buffer fits the next PUT
 * of its size class.
 */
export class PutBuffers {
  readonly #free = new Map<number, Uint8Array<ArrayBuffer>[]>();
  #freeBytes = 0;

  /** A buffer of exactly `bytes` (a view of a kept or new one). */
  take(bytes: number): Uint8Array<ArrayBuffer> {
    let size = 64 * 1024;
    while (size < bytes) size *= 2;
    const kept = this.#free.get(size)?.pop();
    if (kept !== undefined) this.#freeBytes -= size;
    return (kept ?? new Uint8Array(size)).subarray(0, bytes);
  }

  /** Keeps `buffer` (from {@linkcode take}, its PUT answered) for the next PUTs, within {@linkcode KEPT_BYTES}. */
  give(buffer: Uint8Array<ArrayBuffer>): void {
    const whole = new Uint8Array(buffer.buffer);
    const size = whole.length;
    if (this.#freeBytes + size > KEPT_BYTES) return;
    const pool = this.#free.get(size) ?? [];
    this.#free.set(size, pool);
    pool.push(whole);
    this.#freeBytes += size;
  }
}
