/** Listing a remote tree for a pull: entries streamed one by one, a cut listing asked again from after its last entry, and a bound on entries per run. */
import { ConnectError, describeError } from "../shared/errors.ts";
import {
  isOmission,
  type ListEntry,
  type ListOmission,
} from "../shared/wire.ts";
import type { Exchange, ListQuery, Remote } from "./remote.ts";
import { type Backoff, isRetryable } from "./retry.ts";

/** Most listing entries one run accepts unless told otherwise (`--max-entries`). */
export const DEFAULT_MAX_ENTRIES = 10_000_000;

/** The error that stops a run whose listing of `remotePath` holds more than `max` entries. */
export function tooManyEntries(
  remotePath: string,
  host: string,
  max: number,
): ConnectError {
  return new ConnectError(
    `Listing of ${
      JSON.stringify(remotePath)
    } from ${host} has more than ${max} entries, the most one run accepts (--max-entries)`,
    { refused: true },
  );
}

/** Options of {@linkcode TreeLister}. */
export interface TreeListerOptions {
  /** Stops the listing. */
  signal: AbortSignal;
  /** Pauses between attempts, and how many a listing that gets no further may make. */
  backoff: Backoff;
  /** Most entries accepted over every request of the run. */
  maxEntries: number;
  /** Told the error that stops the run when the listing holds more than `maxEntries`. */
  onTooMany: (error: ConnectError) => void;
  /** Told, in one sentence, that a listing failed or was cut and is asked again. */
  onRetry: (text: string) => void;
  /** `links=1` and `hardlinks=1` (see `ListQuery`). */
  query?: Omit<ListQuery, "after">;
  /** The first listing, already asked for (`Remote.startList` with the same query). */
  started?: Promise<Exchange>;
}

/** Lists one remote tree, entry by entry, through every cut. */
export class TreeLister {
  readonly #remote: Remote;
  readonly #root: string;
  readonly #o: TreeListerOptions;
  #entries = 0;
  #last?: string;
  /**
   * Omissions received since the last entry: a listing resumed after that
   * entry sends them again, so they are handed on only once an entry
   * follows them or the listing ends.
   */
  #pending: ListOmission[] = [];
  /** The first listing when it was asked for ahead (taken by the first request). */
  #started?: Promise<Exchange>;

  /** A lister of the tree at `root` on `remote`. */
  constructor(remote: Remote, root: string, options: TreeListerOptions) {
    this.#remote = remote;
    this.#root = root;
    this.#o = options;
    this.#started = options.started;
  }

  /** The path of the last entry received (a cut listing resumes after it); undefined before the first. */
  get last(): string | undefined {
    return this.#last;
  }

  /**
   * Hands every entry to `onEntry` (waiting for it: that is the listing's
   * backpressure). A cut listing is asked again from after its last entry,
   * with backoff; a listing that got further starts the count of attempts
   * again. Returns undefined when the listing is complete (or the run was
   * stopped), else the listing's error that ended it early. An error of
   * `onEntry` is thrown. Omission lines go to `onOmission`, each once
   * (never used as the point a cut listing resumes from).
   */
  async run(
    onEntry: (entry: ListEntry) => Promise<void>,
    onOmission: (line: ListOmission) => void = () => {},
  ): Promise<unknown> {
    const { signal, backoff } = this.#o;
    let attempt = 0;
    const handOn = () => {
      for (const line of this.#pending) onOmission(line);
      this.#pending = [];
    };
    while (true) {
      const received = this.#last;
      const error = await this.#listFrom(received, onEntry, handOn);
      if (error === undefined || signal.aborted) {
        if (!signal.aborted) handOn();
        return undefined;
      }
      attempt = this.#last !== received ? 1 : attempt + 1;
      if (!isRetryable(error) || attempt > backoff.maxRetries) {
        handOn();
        return error;
      }
      // The next listing starts after the last entry: it sends these again.
      this.#pending = [];
      const host = this.#remote.host;
      this.#o.onRetry(
        this.#last === undefined
          ? `Listing from ${host} failed (${
            describeError(error)
          }); asking again`
          : `Listing from ${host} was cut (${
            describeError(error)
          }); asking for the rest`,
      );
      await backoff.wait(attempt, signal).catch(() => {});
      if (signal.aborted) return undefined;
    }
  }

  /** One listing request (after `after`): its own error is returned, not thrown. */
  async #listFrom(
    after: string | undefined,
    onEntry: (entry: ListEntry) => Promise<void>,
    handOn: () => void,
  ): Promise<unknown> {
    const { signal, maxEntries } = this.#o;
    const started = this.#started;
    this.#started = undefined;
    const listing = this.#remote.list(
      this.#root,
      signal,
      { ...this.#o.query, after },
      after === undefined ? started : undefined,
    )[Symbol.asyncIterator]();
    try {
      while (true) {
        let next: IteratorResult<ListEntry | ListOmission>;
        try {
          next = await listing.next();
        } catch (error) {
          return error;
        }
        if (next.done || signal.aborted) return undefined;
        if (++this.#entries > maxEntries) {
          this.#o.onTooMany(
            tooManyEntries(this.#root, this.#remote.host, maxEntries),
          );
          return undefined;
        }
        const line = next.value;
        if (isOmission(line)) {
          this.#pending.push(line);
          continue;
        }
        handOn();
        this.#last = line.path;
        await onEntry(line);
      }
    } finally {
      await listing.return?.(undefined).catch(() => {});
    }
  }
}
