/**
 * `--bwlimit`: one token bucket shared by every connection of a run, both
 * directions, and the stream wrapper that makes bodies pass through it.
 */
import { parseBytes } from "../shared/byte_units.ts";
import { sleep } from "../shared/sleep.ts";

/** Options of {@linkcode TokenBucket}. */
export interface TokenBucketOptions {
  /** Clock in milliseconds (default `performance.now`). */
  now?: () => number;
  /** Most bytes that may pass at once after a pause (default: an eighth of a second's worth, 4 KiB to 256 KiB). */
  burst?: number;
}

/**
 * Bytes per second over all its callers. A caller reserves its bytes at
 * once and is told how long to wait, so callers are served in the order they
 * asked and the rate holds however many connections share it.
 */
export class TokenBucket {
  /** Bytes per second. */
  readonly rate: number;
  /** Most bytes that pass without waiting after a pause; bigger chunks are cut to it. */
  readonly burst: number;
  readonly #now: () => number;
  #tokens: number;
  #last: number;

  constructor(bytesPerSecond: number, options: TokenBucketOptions = {}) {
    if (!(bytesPerSecond > 0)) {
      throw new RangeError(`Invalid rate ${bytesPerSecond}`);
    }
    this.rate = bytesPerSecond;
    this.burst = Math.floor(
      options.burst ??
        Math.min(256 * 1024, Math.max(4096, bytesPerSecond / 8)),
    );
    this.#now = options.now ?? (() => performance.now());
    this.#tokens = this.burst;
    this.#last = this.#now();
  }

  /** Reserves `bytes` and returns the milliseconds to wait before they may pass (0: now). */
  reserve(bytes: number): number {
    const t = this.#now();
    this.#tokens = Math.min(
      this.burst,
      this.#tokens + (t - this.#last) * this.rate / 1000,
    );
    this.#last = t;
    this.#tokens -= bytes;
    return this.#tokens >= 0 ? 0 : -this.#tokens / this.rate * 1000;
  }

  /** Waits until `bytes` may pass (rejects with the signal's reason when it aborts). */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    // Within the budget it goes on at once, not after a timer turn.
    const wait = this.reserve(bytes);
    if (wait > 0) await sleep(wait, signal);
  }
}

/**
 * `stream` passed through `bucket`: chunks are cut to the bucket's burst and
 * each piece waits its turn. `onPass` is called as each piece goes on (the
 * caller's idle timer: waiting in the bucket is not a silent server).
 */
export function throttled(
  stream: ReadableStream<Uint8Array>,
  bucket: TokenBucket,
  onPass?: () => void,
): ReadableStream<Uint8Array> {
  const reader = stream.getReader();
  let pending: Uint8Array | undefined;
  const stop = new AbortController();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (pending === undefined || pending.length === 0) {
        const { done, value } = await reader.read();
        if (done) {
          controller.close();
          return;
        }
        pending = value;
      }
      const piece = pending.subarray(0, bucket.burst);
      pending = pending.subarray(piece.length);
      try {
        await bucket.take(piece.length, stop.signal);
      } catch {
        return; // cancelled while waiting
      }
      onPass?.();
      controller.enqueue(piece);
    },
    async cancel(reason) {
      stop.abort(reason);
      await reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

/**
 * A rate as rsync's `--bwlimit` writes it: plain bytes per second, or with
 * K, M or G (powers of 1024; a trailing `B`, `/s` and a fraction allowed:
 * `1.5M`, `500K`, `10MB/s`). Undefined when `text` is not one, or not above 0.
 */
export function parseRate(text: string): number | undefined {
  const bytes = parseBytes(text.trim().replace(/\/s$/i, ""), {
    fraction: true,
  });
  return bytes !== undefined && bytes >= 1 ? bytes : undefined;
}
