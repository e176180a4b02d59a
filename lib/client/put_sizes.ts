/**
 * How many bytes each PUT of a push carries, how many go at once, and the
 * buffers they are read into.
 */

/**
 * Bytes one PUT carries (hsyncd takes at most 8 MiB per range). hsyncd
 * writes a range as it arrives, so a large one costs it no wait, and each
 * PUT costs both sides a request: pushing 1 GiB on loopback, 15 interleaved
 * runs, 2 MiB PUTs took 1.385 s (client CPU 1.23 s, hsyncd 1.11 s) and
 * 8 MiB ones 1.118 s (0.91 s, 0.87 s).
 */
export const PUT_MAX_BYTES = 8 * 1024 * 1024;
/**
 * PUTs of one push in flight at once (each is read into memory before it is
 * sent: 64 MiB). 1 GiB on loopback goes in 16 ranges: with a PUT of each in
 * flight, 1211 ms at a client peak of 198 MiB of RSS; with 8, 1106 ms at 132
 * MiB (11 interleaved runs); 256 MiB through 10 and 50 ms (8 ranges) alike.
 */
export const PUTS_IN_FLIGHT = 8;
/** Bytes of answered PUT buffers kept for the next PUTs (as many as are in flight). */
const KEPT_BYTES = PUTS_IN_FLIGHT * PUT_MAX_BYTES;

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
