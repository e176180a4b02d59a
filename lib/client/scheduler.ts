/**
 * The named limits of one pull, each enforced here and nowhere else, and the
 * background tasks a pull or a follower runs (so none outlives its run).
 */
import type { ClientSettings } from "../shared/config.ts";
import { Limiter } from "../shared/limiter.ts";

/** Bundle requests in flight at most (also bounded by {@linkcode Scheduler.requests}). */
export const BUNDLE_SLOTS = 4;
/** Hash requests in flight at most (the server queues a few and answers 503 beyond). */
export const HASH_SLOTS = 4;

/**
 * The limits of one pull:
 *
 * - `-n` ({@linkcode Scheduler.files}): files fetched in ranges at once. A
 *   file holds its slot from its first range to its rename; waiting for a
 *   slot is what holds the listing back. Small files travel in bundles and
 *   do not take one (bundles are bounded by {@linkcode BUNDLE_SLOTS}), nor
 *   does a file fetched on its own after a bundle left it out.
 * - `Max_runing` and `Max_tcp_conn` ({@linkcode Scheduler.requests}):
 *   requests moving file data at once, range GETs and bundles together,
 *   over all files: each holds one connection, so the smaller of the two
 *   bounds both.
 * - Hash requests ({@linkcode HASH_SLOTS}) and local checksum comparisons
 *   (`--checksum`, as many) have their own small bounds.
 */
export class Scheduler {
  /** `-n`: files fetched in ranges at once. */
  readonly files: Limiter;
  /** `min(Max_runing, Max_tcp_conn)`: range and bundle requests in flight. */
  readonly requests: Limiter;
  /** Bundle requests in flight: {@linkcode BUNDLE_SLOTS}, and never more than `requests`. */
  readonly bundles: Limiter;
  /** Hash requests in flight. */
  readonly hashes = new Limiter(HASH_SLOTS);
  /** Local SHA-256 comparisons of `--checksum` running beside the listing. */
  readonly compares = new Limiter(HASH_SLOTS);

  /** The limits of a pull with these settings and `-n` files in parallel. */
  constructor(settings: ClientSettings, parallelFiles: number) {
    const requests = Math.max(
      1,
      Math.min(settings.maxRangesInFlight, settings.maxTcpConn),
    );
    this.requests = new Limiter(requests);
    this.files = new Limiter(Math.max(1, parallelFiles));
    this.bundles = new Limiter(Math.min(BUNDLE_SLOTS, requests));
  }
}

/** Background tasks of one run: each is tracked until it settles, and its failure is reported, never lost. */
export class TaskGroup {
  /** Each task running, and its kind. */
  readonly #tasks = new Map<Promise<void>, string>();
  readonly #onError: (error: unknown) => void;

  /** A group reporting a task's uncaught error to `onError`. */
  constructor(onError: (error: unknown) => void) {
    this.#onError = onError;
  }

  /** Tasks still running. */
  get size(): number {
    return this.#tasks.size;
  }

  /** Tasks of `kind` still running. */
  count(kind: string): number {
    let n = 0;
    for (const k of this.#tasks.values()) if (k === kind) n++;
    return n;
  }

  /** Runs `task` in the background (of `kind`, for {@linkcode count}). */
  spawn(task: Promise<void>, kind = ""): void {
    const tracked: Promise<void> = task.catch(this.#onError).finally(() =>
      this.#tasks.delete(tracked)
    );
    this.#tasks.set(tracked, kind);
  }

  /** Waits until every task, including those spawned meanwhile, has settled. */
  async drain(): Promise<void> {
    while (this.#tasks.size > 0) await Promise.all([...this.#tasks.keys()]);
  }
}
