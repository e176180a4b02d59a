/**
 * How many streams one big file gets, decided by measurement: a run starts
 * with one (sixteen when the first round trip is long), multiplies them
 * while that raised the run's throughput, and steps back to the last count
 * that paid once it did not. Over a long path
 * (a window per connection, a round trip per request) more streams add
 * throughput; to a server whose cores or disk are the limit they do not,
 * and the first try shows it. The same rule holds for any address: no host
 * is assumed near or far.
 */

/** Bytes of the smallest piece one request of a split file asks for. */
export const MIN_PIECE_BYTES = 4 * 1024 * 1024;
/** Shortest measuring period (ms); longer with a long round trip. */
const MIN_PERIOD_MS = 150;
/** Round trips per measuring period. */
const PERIOD_RTTS = 3;
/** Round trips after a change before its effect is measured (new streams connect and ask first). */
const WARMUP_RTTS = 2;
/** Milliseconds added to the warm-up (the bytes of a stream are told every 50 ms). */
const WARMUP_MS = 100;
/** Streams are multiplied by this at each try (few tries: a big file is soon done). */
const STEP = 4;
/**
 * A round trip this long (ms) is a far server. A first one this long starts a
 * big file with {@linkcode FAR_START} streams (far away one stream waits a
 * round trip per window, and the tries that would find more cost several
 * round trips each).
 */
export const FAR_RTT_MS = 8;
/**
 * Streams a big file starts with after a long first round trip (at most
 * `Max_part_num`), as aria2c's `-x16` opens its connections at once. Pulling
 * 256 MiB through bench/_link.ts at a 50 ms round trip, a 4 MiB window per
 * connection, 3 interleaved runs each: starting at 4 and trying 8 took
 * 1.19-1.27 s, starting at 8 (the bound then) 1.05-1.09 s, starting at 16
 * 0.77-0.90 s, against aria2c -x16's 0.70-0.85 s.
 */
const FAR_START = STEP * STEP;
/** Throughput ratio a try must reach to be kept. */
const GAIN = 1.25;
/** Minimum pieces in one piece of a decided count before any rate is known. */
const FIRST_SETTLED_PIECES = 4;
/** Seconds of transfer one piece of a settled file carries at most (the tail evens out within that). */
const SETTLED_PIECE_S = 2;

/** Options of {@linkcode StreamGovernor}. */
export interface GovernorOptions {
  /** Most streams per file (`Max_part_num`). */
  max: number;
  /** Clock in ms (tests). */
  now?: () => number;
}

/** Decides the streams per split file of one run from the bytes it sees arrive. */
export class StreamGovernor {
  readonly #max: number;
  readonly #now: () => number;
  #target = 1;
  #settled: boolean;
  #periodStart: number | undefined;
  #periodBytes = 0;
  #lastRate: number | undefined;
  /** The count before the last try, while its effect is measured. */
  #raisedFrom: number | undefined;
  #rttMs: number | undefined;
  #rate = 0;
  #firstAt: number | undefined;
  #total = 0;
  readonly #listeners = new Set<() => void>();

  constructor(options: GovernorOptions) {
    this.#max = Math.max(1, options.max);
    this.#now = options.now ?? (() => performance.now());
    this.#settled = this.#max === 1;
  }

  /** Streams a split file should have now. */
  get target(): number {
    return this.#target;
  }

  /** Whether the count is decided (no larger count is being tried). */
  get settled(): boolean {
    return this.#settled;
  }

  /** The run's throughput in the last measuring period (bytes per ms), 0 before one ended. */
  get rate(): number {
    return this.#rate;
  }

  /** Calls `listener` whenever the target changes; returns the function that stops it. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * The round trip to the server is about `ms` (the shortest wait for an
   * answer so far). The first one told, when long, is a measurement
   * already: one stream far away waits a round trip per window, so the
   * first try starts at once instead of after a period of one stream.
   */
  roundTrip(ms: number): void {
    const first = this.#rttMs === undefined;
    if (this.#rttMs === undefined || ms < this.#rttMs) this.#rttMs = ms;
    if (
      first && ms >= FAR_RTT_MS && !this.#settled && this.#target === 1 &&
      this.#periodStart === undefined
    ) {
      // No one-stream rate to compare with: the next try is measured
      // against this count.
      this.#target = Math.min(this.#max, FAR_START);
      if (this.#target >= this.#max) this.#settled = true;
      for (const listener of [...this.#listeners]) listener();
    }
  }

  /** `n` bytes of a split file arrived. */
  bytes(n: number): void {
    const now = this.#now();
    this.#firstAt ??= now;
    this.#total += n;
    // Still warming up after a change: its bytes say nothing of it yet.
    if (this.#periodStart !== undefined && now < this.#periodStart) return;
    if (this.#periodStart === undefined) {
      this.#periodStart = now;
      this.#periodBytes = 0;
    }
    this.#periodBytes += n;
    const elapsed = now - this.#periodStart;
    if (elapsed >= this.#periodMs()) {
      this.#evaluate(this.#periodBytes / elapsed);
    }
  }

  /**
   * Bytes the next piece of a file should ask for, given what is left of it
   * to hand out, how many streams work on it and the bytes they hold (asked
   * for, not arrived): while the count is being tried, about one measuring
   * period of a stream's share (so new streams find work); once decided, a
   * share of the file's bytes still to come, those held included (so
   * streams starting together get equal pieces, not each a share of what
   * the ones before left), at most a few seconds' worth.
   */
  pieceBytes(remaining: number, streams: number, held = 0): number {
    const rate = this.#rate > 0 ? this.#rate : this.#liveRate();
    const perStream = rate / Math.max(1, streams);
    const ms = this.#settled
      ? SETTLED_PIECE_S * 1000
      : this.#periodMs() + this.#warmupMs();
    // While trying, the streams a try may add must find work left.
    const sharers = this.#settled
      ? this.#target
      : Math.min(this.#max, this.#target * STEP);
    const share = Math.ceil((remaining + held) / Math.max(1, sharers));
    // No rate yet: a decided count (far away, at once) asks for a few
    // minimum pieces at a time, each costing a round trip; else the minimum.
    const wanted = perStream > 0
      ? perStream * ms
      : this.#settled
      ? FIRST_SETTLED_PIECES * MIN_PIECE_BYTES
      : MIN_PIECE_BYTES;
    // Never below the minimum: a piece's round trip must stay small beside
    // its transfer, even in the last bytes of a file.
    const bytes = Math.max(MIN_PIECE_BYTES, Math.min(share, wanted));
    return Math.max(1, Math.min(remaining, Math.ceil(bytes)));
  }

  /** Bytes per ms since the first byte, before a measuring period has ended. */
  #liveRate(): number {
    if (this.#firstAt === undefined) return 0;
    const elapsed = this.#now() - this.#firstAt;
    // Too soon to tell: a rate over a few bytes' time is noise.
    return elapsed >= MIN_PERIOD_MS / 2 ? this.#total / elapsed : 0;
  }

  #warmupMs(): number {
    return WARMUP_MS + WARMUP_RTTS * (this.#rttMs ?? 0);
  }

  #periodMs(): number {
    return Math.max(MIN_PERIOD_MS, PERIOD_RTTS * (this.#rttMs ?? 0));
  }

  #evaluate(rate: number): void {
    this.#rate = rate;
    this.#periodBytes = 0;
    const before = this.#target;
    if (this.#raisedFrom !== undefined) {
      const paid = this.#lastRate !== undefined &&
        rate >= this.#lastRate * GAIN;
      if (!paid) {
        this.#target = this.#raisedFrom;
        this.#settled = true;
      }
      this.#raisedFrom = undefined;
    }
    if (!this.#settled) {
      if (this.#target >= this.#max) this.#settled = true;
      else {
        this.#raisedFrom = this.#target;
        this.#target = Math.min(this.#max, this.#target * STEP);
      }
    }
    // The rate a try is compared with is the one before it.
    this.#lastRate = rate;
    this.#periodStart = this.#now() +
      (this.#target === before ? 0 : this.#warmupMs());
    if (this.#target !== before) {
      for (const listener of [...this.#listeners]) listener();
    }
  }
}
