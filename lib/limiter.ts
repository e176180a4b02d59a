/** A small FIFO semaphore bounding work in flight (requests, files, bundle batches). */

/** Releases a slot taken with {@linkcode Limiter.acquire}; calling it twice is harmless. */
export type Release = () => void;

interface Waiter {
  grant: (release: Release) => void;
  cancelled: boolean;
}

/** Grants at most `limit` slots at a time, in the order they were asked for. */
export class Limiter {
  readonly limit: number;
  #active = 0;
  #queue: Waiter[] = [];
  #head = 0;

  constructor(limit: number) {
    if (!Number.isSafeInteger(limit) || limit < 1) {
      throw new RangeError(`Invalid limit "${limit}": expected 1 or more`);
    }
    this.limit = limit;
  }

  /** Slots taken now. */
  get active(): number {
    return this.#active;
  }

  /** Callers waiting for a slot. */
  get waiting(): number {
    let n = 0;
    for (let i = this.#head; i < this.#queue.length; i++) {
      if (!this.#queue[i].cancelled) n++;
    }
    return n;
  }

  /** Waits for a slot; rejects with the signal's reason if it aborts first (the place in line is given up). */
  acquire(signal?: AbortSignal): Promise<Release> {
    signal?.throwIfAborted();
    while (
      this.#head < this.#queue.length && this.#queue[this.#head].cancelled
    ) this.#head++;
    if (this.#active < this.limit && this.#head === this.#queue.length) {
      this.#active++;
      return Promise.resolve(this.#releaser());
    }
    return new Promise<Release>((resolve, reject) => {
      const onAbort = () => {
        waiter.cancelled = true;
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

  #releaser(): Release {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#active--;
      this.#grantNext();
    };
  }

  #grantNext(): void {
    while (this.#active < this.limit && this.#head < this.#queue.length) {
      const waiter = this.#queue[this.#head++];
      if (waiter.cancelled) continue;
      this.#active++;
      waiter.grant(this.#releaser());
    }
    // Compact now and then so a long run does not keep every settled waiter.
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }
}
