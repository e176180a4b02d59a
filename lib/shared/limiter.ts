/** Bounds on work in flight: a FIFO semaphore with an optional bounded queue, and per-key (per-peer) caps on top of one. */

/** Releases what {@linkcode Limiter.acquire} or {@linkcode Limiter.take} gave; calling it twice is harmless. */
export type Release = () => void;

/** Refusal of a full limiter: nothing free now and no room to wait; `limit` names the limit that refused. */
export class LimitError extends Error {
  /** The name the refusing limiter was given (the setting that bounds it). */
  readonly limit: string;
  constructor(limit: string) {
    super(`Cannot take a slot now: limit "${limit}" reached`);
    this.name = "LimitError";
    this.limit = limit;
  }
}

/** Options of {@linkcode Limiter}. */
export interface LimiterOptions {
  /** Callers that may wait for a slot; one more is refused with {@linkcode LimitError}. Unbounded by default. */
  queue?: number;
  /** The name a {@linkcode LimitError} of this limiter reports; "limit" by default. */
  name?: string;
}

interface Waiter {
  grant: (release: Release) => void;
  cancelled: boolean;
}

/**
 * Grants at most `limit` units at a time (slots, or bytes with
 * {@linkcode Limiter.take}), in the order they were asked for; at most
 * `queue` callers wait, the next one is refused.
 */
export class Limiter {
  /** Units that may be held at once. */
  readonly limit: number;
  /** Callers that may wait. */
  readonly queue: number;
  /** Reported by {@linkcode LimitError}. */
  readonly name: string;
  #active = 0;
  #waiting = 0;
  #queue: Waiter[] = [];
  #head = 0;

  constructor(limit: number, options: LimiterOptions = {}) {
    if (!Number.isSafeInteger(limit) || limit < 1) {
      throw new RangeError(`Invalid limit "${limit}": expected 1 or more`);
    }
    const queue = options.queue ?? Infinity;
    if (!(queue === Infinity || (Number.isSafeInteger(queue) && queue >= 0))) {
      throw new RangeError(`Invalid queue "${queue}": expected 0 or more`);
    }
    this.limit = limit;
    this.queue = queue;
    this.name = options.name ?? "limit";
  }

  /** Units held now. */
  get active(): number {
    return this.#active;
  }

  /** Callers waiting for a slot. */
  get waiting(): number {
    return this.#waiting;
  }

  /** Whether one more caller would be refused now (no free slot, no room to wait). */
  get full(): boolean {
    return !this.#free(1) && this.#waiting >= this.queue;
  }

  /** Takes `units` now or throws {@linkcode LimitError}; never waits, never jumps the queue. */
  take(units = 1): Release {
    if (!Number.isSafeInteger(units) || units < 0) {
      throw new RangeError(`Invalid units "${units}": expected 0 or more`);
    }
    if (!this.#free(units)) throw new LimitError(this.name);
    this.#active += units;
    return this.#releaser(units);
  }

  /**
   * Waits for a slot; rejects with {@linkcode LimitError} when the queue is
   * full, and with the signal's reason if it aborts first (the place in line
   * is given up).
   */
  acquire(signal?: AbortSignal): Promise<Release> {
    signal?.throwIfAborted();
    if (this.#free(1)) {
      this.#active++;
      return Promise.resolve(this.#releaser(1));
    }
    if (this.#waiting >= this.queue) {
      return Promise.reject(new LimitError(this.name));
    }
    return new Promise<Release>((resolve, reject) => {
      const onAbort = () => {
        waiter.cancelled = true;
        this.#waiting--;
        reject(signal!.reason);
      };
      const waiter: Waiter = {
        cancelled: false,
        grant: (release) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(release);
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#queue.push(waiter);
      this.#waiting++;
    });
  }

  /** Runs `task` holding a slot. */
  async run<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const release = await this.acquire(signal);
    try {
      return await task();
    } finally {
      release();
    }
  }

  /** Whether `units` can be had now: they fit, and nobody waits before (first come, first served). */
  #free(units: number): boolean {
    return this.#waiting === 0 && this.#active + units <= this.limit;
  }

  #releaser(units: number): Release {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#active -= units;
      this.#grantNext();
    };
  }

  #grantNext(): void {
    while (this.#active < this.limit && this.#head < this.#queue.length) {
      const waiter = this.#queue[this.#head++];
      if (waiter.cancelled) continue;
      this.#waiting--;
      this.#active++;
      waiter.grant(this.#releaser(1));
    }
    // Compact now and then so a long run does not keep every settled waiter.
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    }
  }
}

/** Options of {@linkcode KeyedLimiter}. */
export interface KeyedLimiterOptions {
  /** Units one key may hold at once (of the shared ones, or waiting for them). */
  perKey: number;
  /** Callers of one key that may wait behind its own `perKey` units; 0 (refused at once) by default. */
  perKeyQueue?: number;
  /** The name a {@linkcode LimitError} reports when a key's own cap refuses. */
  name?: string;
}

/**
 * Per-key caps on top of a shared {@linkcode Limiter}: a caller first takes
 * one of its key's own `perKey` units (waiting in its key's own queue), then
 * one of the shared ones, so no key ever holds, or waits in the shared queue
 * for, more than `perKey` of them: one peer cannot lock out the others.
 */
export class KeyedLimiter {
  /** The shared limiter. */
  readonly total: Limiter;
  /** Reported by {@linkcode LimitError} when a key's own cap refuses. */
  readonly name: string;
  #perKey: number;
  #perKeyQueue: number;
  #keys = new Map<string, Limiter>();

  constructor(total: Limiter, options: KeyedLimiterOptions) {
    this.total = total;
    this.name = options.name ?? "perKey";
    this.#perKey = options.perKey;
    this.#perKeyQueue = options.perKeyQueue ?? 0;
    // Fails here, not on the first caller, when the caps are invalid.
    new Limiter(this.#perKey, { queue: this.#perKeyQueue });
  }

  /** Units `key` holds now (shared ones, or its own while it waits for one of those). */
  active(key: string): number {
    return this.#keys.get(key)?.active ?? 0;
  }

  /** Callers of `key` waiting behind its own cap. */
  waiting(key: string): number {
    return this.#keys.get(key)?.waiting ?? 0;
  }

  /** Keys holding or waiting for anything now (the map never keeps idle keys). */
  get keys(): number {
    return this.#keys.size;
  }

  /** The name of the limit that would refuse one more caller of `key` now; undefined when it may have or wait for a slot. */
  refusal(key: string): string | undefined {
    const own = this.#keys.get(key);
    if (own?.full) return own.name;
    // A key with a free unit of its own goes on to the shared limiter.
    if ((own === undefined || own.active < own.limit) && this.total.full) {
      return this.total.name;
    }
    return undefined;
  }

  /** Takes `units` for `key` now (its own and shared) or throws {@linkcode LimitError}; never waits. */
  take(key: string, units = 1): Release {
    const own = this.#own(key);
    let releaseOwn: Release;
    try {
      releaseOwn = own.take(units);
    } catch (error) {
      this.#forget(key, own);
      throw error;
    }
    let releaseTotal: Release;
    try {
      releaseTotal = this.total.take(units);
    } catch (error) {
      releaseOwn();
      this.#forget(key, own);
      throw error;
    }
    return this.#releaser(key, own, releaseOwn, releaseTotal);
  }

  /**
   * Waits for a slot of `key`'s own, then for a shared one; rejects with
   * {@linkcode LimitError} when either queue is full, and with the signal's
   * reason if it aborts first.
   */
  async acquire(key: string, signal?: AbortSignal): Promise<Release> {
    const own = this.#own(key);
    let releaseOwn: Release;
    try {
      releaseOwn = await own.acquire(signal);
    } catch (error) {
      this.#forget(key, own);
      throw error;
    }
    let releaseTotal: Release;
    try {
      releaseTotal = await this.total.acquire(signal);
    } catch (error) {
      releaseOwn();
      this.#forget(key, own);
      throw error;
    }
    return this.#releaser(key, own, releaseOwn, releaseTotal);
  }

  #own(key: string): Limiter {
    let own = this.#keys.get(key);
    if (own === undefined) {
      own = new Limiter(this.#perKey, {
        queue: this.#perKeyQueue,
        name: this.name,
      });
      this.#keys.set(key, own);
    }
    return own;
  }

  #forget(key: string, own: Limiter): void {
    if (
      own.active === 0 && own.waiting === 0 && this.#keys.get(key) === own
    ) this.#keys.delete(key);
  }

  #releaser(
    key: string,
    own: Limiter,
    releaseOwn: Release,
    releaseTotal: Release,
  ): Release {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      releaseTotal();
      releaseOwn();
      this.#forget(key, own);
    };
  }
}
