/**
 * The first bytes of a pulled path, asked for with its stat: a pull of one
 * file then waits no round trip between learning what the file is and its
 * first bytes, as aria2c's first request is its first range. One file of
 * 4 KiB at a 50 ms round trip took 257-278 ms before, 203-244 ms after; a
 * big file gains what one stream carries in a round trip. The answer is
 * kept until the fetch of that file takes it, and only as the very version
 * the stat found (its ETag), as the start of what is still missing of it;
 * else it is dropped and its body cancelled (a directory answers 204, with
 * `iffile=1`). It is never asked for when something of the file is at the
 * destination already, so no byte comes twice.
 */
import { type ByteRange, parseContentRange } from "../shared/byte_range.ts";
import {
  JOURNAL_SUFFIX,
  PART_SUFFIX,
  splitLastName,
  unshortenedOwnName,
} from "../shared/own_names.ts";
import type { Exchange, Remote } from "./remote.ts";
import { MIN_PIECE_BYTES } from "./stream_governor.ts";
import type { FileJob } from "./transfer.ts";

/** Bytes asked for with the stat: two of the governor's smallest pieces. */
export const EARLY_RANGE_BYTES = 2 * MIN_PIECE_BYTES;

/** The first bytes of a file, taken by its fetch. */
export interface EarlyBytes {
  /** The answer (206), its body not read yet. */
  exchange: Exchange;
  /** Its bytes are `[0, end)` of the file. */
  end: number;
}

/** The first range of one pulled path, asked for early; taken once, or dropped. */
export class EarlyRange {
  #path?: string;
  #answer?: Promise<Exchange | undefined>;

  /** Asks for the first `bytes` of `path` now (a failure is only no early bytes). */
  start(
    remote: Remote,
    path: string,
    signal: AbortSignal,
    bytes = EARLY_RANGE_BYTES,
  ): void {
    this.drop();
    this.#path = path;
    this.#answer = remote.file(path, {
      range: { start: 0, end: bytes },
      ifFile: true,
      signal,
    }).catch(() => undefined);
  }

  /**
   * The early bytes as the start of `job`, whose first missing bytes are
   * `missing` (undefined: none): only when they are `job`'s path, version
   * (ETag) and size, and start where `missing` does, at 0, within it. Taken
   * once: anything else drops them. Undefined for another path (kept).
   */
  async take(
    job: FileJob,
    missing: ByteRange | undefined,
  ): Promise<EarlyBytes | undefined> {
    if (this.#answer === undefined || job.remote !== this.#path) {
      return undefined;
    }
    const answer = this.#answer;
    this.#answer = undefined;
    const exchange = await answer;
    if (exchange === undefined) return undefined;
    const response = exchange.response;
    const range = response.status === 206
      ? parseContentRange(response.headers.get("content-range"))
      : undefined;
    if (
      range === undefined || range.size !== job.size ||
      range.range.start !== 0 || response.headers.get("etag") !== job.etag ||
      missing === undefined || missing.start !== 0 ||
      range.range.end > missing.end
    ) {
      discard(exchange);
      return undefined;
    }
    return { exchange, end: range.range.end };
  }

  /** Drops the early bytes if nothing took them. */
  drop(): void {
    const answer = this.#answer;
    this.#answer = undefined;
    answer?.then(discard);
  }
}

/** The early answer when it is all of `range` (a planned first range); else it is dropped. */
export function serving(
  early: EarlyBytes | undefined,
  range: ByteRange | undefined,
): Exchange | undefined {
  if (early === undefined) return undefined;
  if (range?.start === 0 && range.end === early.end) return early.exchange;
  discard(early.exchange);
  return undefined;
}

/**
 * Whether nothing is at `target`, its part file or its journal: only then
 * are early bytes asked for (a file there may be identical, and a part is
 * resumed from what it holds: nothing is fetched twice). A name so long
 * that its part's name is shortened with a hash counts as something there:
 * the hash is not loaded before the first requests (no early bytes then).
 */
export function nothingAt(target: string): boolean {
  const [dir, name] = splitLastName(target);
  const own = [PART_SUFFIX, JOURNAL_SUFFIX].map((suffix) =>
    unshortenedOwnName(name, suffix)
  );
  if (own.includes(undefined)) return false;
  return [target, ...own.map((n) => dir + n)].every((p) => {
    try {
      Deno.lstatSync(p);
      return false;
    } catch {
      return true;
    }
  });
}

/** Ends an answer whose body will not be read. */
export function discard(exchange: Exchange | undefined): void {
  if (exchange === undefined) return;
  exchange.done();
  exchange.response.body?.cancel().catch(() => {});
}
