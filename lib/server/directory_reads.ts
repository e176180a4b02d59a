/** Whole-directory reads of hsyncd's listings, one at a time, and the names they read kept for listings of the same directory. */
import type { NamesCache } from "./jail/path_guard.ts";

/**
 * Whole-directory reads of the listings, one at a time, and the names they
 * read. Such a read is one synchronous call (the jail's proof needs the
 * working directory to stay put during it; 150,000 names take about 0.3 s
 * here), so after a long one the next waits as long again: the event loop is
 * then free for other requests at least half of the time. Listings of one
 * directory at about the same time share one read: its names are kept
 * (`NAMES_KEPT_MS`, at most `NAMES_KEPT` names in all) and used again while
 * the directory is the same inode with the same times.
 */
export class DirectoryReads implements NamesCache {
  #tail: Promise<void> = Promise.resolve();
  #kept = new Map<string, { names: string[]; at: number }>();
  #keptNames = 0;

  /** Runs `read` after the reads before it, and holds the next back by as long as it took. */
  run<T>(read: () => T): Promise<T> {
    const result = this.#tail.then(() => {
      const started = performance.now();
      const value = read();
      return { value, ms: performance.now() - started };
    });
    this.#tail = result.then(
      ({ ms }) =>
        ms < 5 ? undefined : new Promise((done) => setTimeout(done, ms)),
      () => undefined,
    );
    return result.then(({ value }) => value);
  }

  get(key: string): string[] | undefined {
    this.#expire();
    return this.#kept.get(key)?.names;
  }

  set(key: string, names: string[]): void {
    this.#expire();
    if (names.length < NAMES_WORTH_KEEPING || names.length > NAMES_KEPT) return;
    this.#kept.set(key, { names, at: Date.now() });
    this.#keptNames += names.length;
    for (const [k, v] of this.#kept) {
      if (this.#keptNames <= NAMES_KEPT) break;
      this.#kept.delete(k);
      this.#keptNames -= v.names.length;
    }
  }

  #expire(): void {
    const old = Date.now() - NAMES_KEPT_MS;
    for (const [k, v] of this.#kept) {
      if (v.at > old) break;
      this.#kept.delete(k);
      this.#keptNames -= v.names.length;
    }
  }
}

/** Directories smaller than this are read again each time (cheap). */
const NAMES_WORTH_KEEPING = 4096;
/** Names kept for other listings, over all directories. */
const NAMES_KEPT = 1_000_000;
/** How long names read for one listing serve others. */
const NAMES_KEPT_MS = 10_000;
