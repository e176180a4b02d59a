/**
 * Fetching one file in byte ranges into its `.hsync-part`: resumed from its
 * journal when that belongs to the same remote file, the missing ranges
 * fetched in parallel with `If-Range` (each retried from its last byte on
 * disk), the journal following what reaches the disk.
 */
import {
  type ByteRange,
  parseContentRange,
  planGaps,
} from "../shared/byte_range.ts";
import { type FileId, fileIdOf, openChecked } from "../shared/checked_open.ts";
import { receiveBody, usableBody } from "./receive_body.ts";
import { WrittenRanges } from "../shared/chunk_writer.ts";
import { LocalPathError, reason } from "../shared/errors.ts";
import {
  loadJournal,
  removeJournal,
  sameIdentity,
  saveJournal,
} from "../shared/journal.ts";
import { JournalSaver } from "../shared/journal_saver.ts";
import {
  createPart,
  journalPathFor,
  partPathFor,
} from "../shared/part_file.ts";
import { RangeSet } from "../shared/range_set.ts";
import { spansOf } from "../shared/span_hash.ts";
import { discard, type EarlyRange, serving } from "./early_range.ts";
import { fetchInPieces, type PieceCursor } from "./piece_streams.ts";
import type { Exchange } from "./remote.ts";
import { StreamGovernor } from "./stream_governor.ts";
import { isRetryable, ProtocolError, ShortBody } from "./retry.ts";
import { holesOf, receiveSkippingZeros } from "./sparse.ts";
import {
  FileChanged,
  type FileJob,
  identityOf,
  type PullContext,
} from "./transfer.ts";
import type { Verifier } from "./verify.ts";

/** How often a stream of a governed file tells its bytes (ms). */
const GOVERNED_PROGRESS_MS = 50;
/** Bytes per hash request when unflushed ranges are checked on resume (a mismatch costs a refetch of that much). */
const HINT_SPAN_BYTES = 8 * 1024 * 1024;

/** The part file cannot be created: the destination itself is unusable. */
export class DestinationError extends LocalPathError {}

/** Options of {@linkcode RangeFetcher}. */
export interface RangeFetcherOptions {
  /** Keep a resume journal beside each part (false for benchmarks only: no resuming then). */
  journal: boolean;
  /** Longest time in milliseconds between journal saves while bytes arrive. */
  journalIntervalMs: number;
  /** Checks unflushed ranges of a resumed journal against the server's hashes. */
  verifier: Verifier;
  /** Told the bytes a resumed journal let the file keep. */
  onResumed: (bytes: number) => void;
  /** `-S`: part files are sized at once, and long zero runs stay holes. */
  sparse?: boolean;
  /** With `sparse`: the file has holes (fetched by its extents). */
  hasHoles?: (job: FileJob) => boolean;
  /** The first bytes of the pulled path, asked for with its stat. */
  early?: EarlyRange;
}

/**
 * Transfer state of one ranged file: its part file and inode, its journal,
 * and the ranges written to the part (what the journal persists once they
 * are flushed).
 */
interface FileState {
  job: FileJob;
  part: string;
  /** The part file's inode: every handle opened on `part` must be this one. */
  id: FileId;
  journal: string;
  written: WrittenRanges;
  /** The part was sized with `truncate` and nothing was written in its gaps: zero runs need no writing. */
  skipZeros: boolean;
}

/** Fetches files in ranges into their part files, resumably. */
export class RangeFetcher {
  readonly #ctx: PullContext;
  readonly #o: RangeFetcherOptions;
  /** Streams per big file, learned over the whole run. */
  readonly #governor: StreamGovernor;

  /** A fetcher for one pull. */
  constructor(context: PullContext, options: RangeFetcherOptions) {
    this.#ctx = context;
    this.#o = options;
    this.#governor = new StreamGovernor({ max: context.settings.maxPartNum });
  }

  /**
   * Makes the part file of `job` complete: resumes from the journal when it
   * belongs to the same remote file, else starts over; fetches the missing
   * ranges in parallel while the journal follows what reaches the disk. The
   * journal is saved whatever happens (abort included), except when the
   * file changed. Returns the part file's identity.
   */
  async fetch(job: FileJob): Promise<FileId> {
    const ctx = this.#ctx;
    const part = partPathFor(job.target);
    const journal = journalPathFor(job.target);
    const sparse = this.#o.sparse ?? false;
    // Asked first: a file that changed since the listing starts over now.
    const holes = sparse && this.#o.hasHoles?.(job)
      ? await this.#holes(job)
      : undefined;
    const resumed = this.#o.journal
      ? await this.#resumable(job, part, journal)
      : undefined;
    const state: FileState = {
      job,
      part,
      id: resumed?.id ?? createEmptyPart(part, sparse ? job.size : 0),
      journal,
      written: new WrittenRanges(resumed?.written.toArray()),
      skipZeros: sparse && resumed === undefined,
    };
    if (sparse && resumed !== undefined) sizePart(state);
    if (resumed !== undefined) {
      // Its data: the holes an earlier run claimed are told as holes below.
      const kept = new RangeSet(resumed.written.toArray());
      for (const hole of holes?.toArray() ?? []) kept.remove(hole);
      const covered = kept.covered;
      if (covered > 0) {
        this.#o.onResumed(covered);
        ctx.emit({ type: "progress", bytes: covered, resumed: true });
      }
    }
    let flushed = resumed?.flushed;
    if (holes !== undefined) {
      // Holes are held from the start: never asked for, never written, and
      // claimed as flushed (the part's size makes them read as zeros).
      flushed = new RangeSet(flushed?.toArray());
      for (const hole of holes.toArray()) {
        state.written.add(hole);
        flushed.add(hole);
      }
      if (holes.covered > 0) {
        ctx.emit({ type: "progress", bytes: holes.covered, holes: true });
      }
    }
    if (resumed !== undefined && state.written.isComplete(job.size)) {
      return state.id;
    }
    let saver: JournalSaver | undefined;
    if (this.#o.journal) {
      saver = JournalSaver.open({
        journal,
        part,
        partId: state.id,
        identity: identityOf(job),
        written: state.written,
        intervalMs: this.#o.journalIntervalMs,
        flushed,
      });
      if (resumed === undefined) {
        try {
          // Even before the first byte: a journal that claims nothing.
          await saver.write();
        } catch (error) {
          saver.close();
          throw new LocalPathError(journal, reason(error), error);
        }
      }
    }
    const gaps = state.written.gaps(job.size);
    const early = await this.#o.early?.take(job, gaps[0]);
    const controller = new AbortController();
    const onAbort = () => controller.abort(ctx.signal.reason);
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    let failed = false;
    let first: unknown;
    const fail = (error: unknown) => {
      if (failed) return;
      failed = true;
      first = error;
      controller.abort(error);
    };
    saver?.start();
    try {
      // Every range settles before the file is retried or failed: none may still write.
      if (this.#splits(job) && !ctx.settings.pinnedParts) {
        // The round trip measured so far (the stat, the listing) decides the start.
        const rtt = ctx.remote.trips.shortestMs;
        if (rtt !== undefined) this.#governor.roundTrip(rtt);
        await fetchInPieces({
          gaps,
          governor: this.#governor,
          most: ctx.settings.maxPartNum,
          early,
          signal: controller.signal,
          fail,
          fetch: (cursor, exchange) =>
            this.#fetchRange(
              state,
              cursor,
              controller.signal,
              this.#governor,
              exchange,
            ),
        });
      } else {
        // A pinned Max_part_num: that many ranges at once, planned up front.
        const ranges = planGaps(gaps, {
          maxParts: ctx.settings.maxPartNum,
          minPartSize: ctx.settings.minPartSize,
        });
        const opening = serving(early, ranges[0]);
        await Promise.all(
          ranges.map((range, i) =>
            this.#fetchRange(
              state,
              { pos: range.start, end: range.end },
              controller.signal,
              undefined,
              i === 0 ? opening : undefined,
            ).catch(fail)
          ),
        );
      }
    } finally {
      ctx.signal.removeEventListener("abort", onAbort);
      await saver?.stop();
    }
    const complete = !failed && state.written.isComplete(job.size);
    if (saver !== undefined) {
      try {
        if (first instanceof FileChanged) {
          await removeJournal(journal).catch(() => {});
        } else if (complete) {
          // No flush here: waiting for the disk would cost the transfer
          // (rsync and cp do not either). The journal marks the rest as
          // unflushed, so a crash before the rename resumes by checksum.
          await saver.write().catch(() => {});
        } else {
          // Failed or interrupted: everything on disk now is flushed and
          // claimed for a rerun (a failed save leaves the previous journal,
          // which is still true).
          await saver.flushAndWrite().catch(() => {});
        }
      } finally {
        saver.close();
      }
    }
    if (failed) {
      if (first instanceof FileChanged) {
        ctx.emit({ type: "progress", bytes: -state.written.covered });
      }
      throw first;
    }
    if (!complete) {
      throw new ShortBody(`Missing bytes of "${job.rel}" after every range`);
    }
    return state.id;
  }

  /** Marks bytes that failed verification as missing, so the next round fetches exactly them. */
  async forget(job: FileJob, spans: ByteRange[]): Promise<void> {
    const path = journalPathFor(job.target);
    const journal = this.#o.journal ? await loadJournal(path) : undefined;
    let removed = 0;
    if (
      journal !== undefined && sameIdentity(journal.remote, identityOf(job))
    ) {
      const done = new RangeSet(journal.done);
      const unflushed = new RangeSet(journal.unflushed ?? []);
      const before = done.covered + unflushed.covered;
      for (const span of spans) {
        done.remove(span);
        unflushed.remove(span);
      }
      removed = before - done.covered - unflushed.covered;
      try {
        await saveJournal(path, {
          remote: journal.remote,
          done: done.toArray(),
          unflushed: unflushed.toArray(),
        });
      } catch (error) {
        throw new LocalPathError(path, reason(error), error);
      }
    } else {
      // No journal to amend: the whole file is fetched again.
      removed = job.size;
      await this.discard(job);
    }
    this.#ctx.emit({ type: "progress", bytes: -removed });
  }

  /** Removes a file's part and journal (their bytes cannot be trusted). */
  async discard(job: FileJob): Promise<void> {
    await removeJournal(journalPathFor(job.target)).catch(() => {});
    await Deno.remove(partPathFor(job.target)).catch(() => {});
  }

  /**
   * The ranges of an interrupted earlier pull that can be kept: its journal
   * is for this remote identity and its part file is intact. Otherwise
   * undefined (the file starts over), with a warning when the remote file
   * changed in between.
   */
  async #resumable(
    job: FileJob,
    part: string,
    path: string,
  ): Promise<
    { flushed: RangeSet; written: RangeSet; id: FileId } | undefined
  > {
    const journal = await loadJournal(path);
    if (journal === undefined) return undefined;
    if (!sameIdentity(journal.remote, identityOf(job))) {
      this.#ctx.emit({
        type: "warning",
        path: job.rel,
        message:
          `File "${job.rel}" changed on the server since the interrupted pull, starting over`,
      });
      return undefined;
    }
    let info: Deno.FileInfo;
    try {
      info = await Deno.lstat(part);
    } catch {
      return undefined;
    }
    const flushed = new RangeSet(journal.done);
    // The part grows only with the bytes written (no size is reserved up
    // front), so it may be shorter than the file; shorter than what the
    // journal claims flushed means someone cut it: nothing in it is trusted.
    if (!info.isFile || info.size > job.size || info.size < flushed.end) {
      return undefined;
    }
    const id = fileIdOf(info);
    const written = new RangeSet(journal.done);
    // Written but not flushed: kept when the server's SHA-256 agrees (after
    // a killed process they are intact; after a crash maybe not).
    const unflushed = new RangeSet(journal.unflushed ?? []);
    unflushed.remove({ start: info.size, end: job.size });
    const spans = unflushed.toArray().flatMap((range) =>
      spansOf(range, HINT_SPAN_BYTES)
    );
    if (spans.length > 0) {
      const good = await this.#o.verifier.matching(job, part, spans, id);
      for (const span of good) written.add(span);
    }
    return { flushed, written, id };
  }

  /**
   * Where the data of a file with holes is (`GET /v1/extents`), as holes:
   * extents of another identity than the listing's mean the file changed.
   */
  async #holes(job: FileJob): Promise<RangeSet> {
    const ctx = this.#ctx;
    const extents = await ctx.backoff.retry(
      () => ctx.remote.extents(job.remote, ctx.signal),
      ctx.signal,
    );
    if (extents.etag !== job.etag || extents.size !== job.size) {
      throw new FileChanged(job.rel);
    }
    return holesOf(extents);
  }

  /** Whether `job` is big enough to be fetched in pieces by several streams. */
  #splits(job: FileJob): boolean {
    const settings = this.#ctx.settings;
    return settings.maxPartNum > 1 && job.size >= 2 * settings.minPartSize;
  }

  /**
   * Fetches the piece of `cursor` (moving `cursor.pos` as bytes reach the
   * disk), from its last byte on disk after each retryable failure; the
   * first try reads `opening` (an answer for exactly the piece) when given.
   */
  async #fetchRange(
    state: FileState,
    cursor: PieceCursor,
    signal: AbortSignal,
    governor?: StreamGovernor,
    opening?: Exchange,
  ): Promise<void> {
    const ctx = this.#ctx;
    let attempt = 0;
    let given = opening;
    while (cursor.pos < cursor.end) {
      const before = cursor.pos;
      const release = await ctx.limits.requests.acquire(signal)
        .catch((error: unknown) => {
          discard(given); // never to be read
          throw error;
        });
      let error: unknown;
      try {
        // It ends the answer it is given, read or not; a retry asks again.
        await this.#getRange(state, cursor, signal, governor, given);
      } catch (e) {
        error = e;
      } finally {
        release();
        given = undefined;
      }
      if (error === undefined) continue;
      if (signal.aborted) throw signal.reason;
      if (!isRetryable(error)) throw error;
      // A retry that made progress starts the count again.
      attempt = cursor.pos > before ? 1 : attempt + 1;
      if (attempt > ctx.backoff.maxRetries) throw error;
      await ctx.backoff.wait(attempt, signal);
    }
  }

  /** One ranged GET of `[cursor.pos, cursor.end)` streamed into the part file; advances `cursor.pos` by what reached the disk. */
  async #getRange(
    state: FileState,
    cursor: PieceCursor,
    signal: AbortSignal,
    governor?: StreamGovernor,
    given?: Exchange,
  ): Promise<void> {
    const { job } = state;
    const { pos: start, end } = cursor;
    const ex = given ?? await this.#ctx.remote.file(job.remote, {
      range: { start, end },
      ifRange: job.etag,
      signal,
    });
    // An answer asked for early ends with this file's fetch too.
    const cancel = () => discard(ex);
    if (given !== undefined) signal.addEventListener("abort", cancel);
    try {
      const res = ex.response;
      if (res.status === 200 || res.status === 416) {
        throw new FileChanged(job.rel);
      }
      if (res.status !== 206) {
        throw new ProtocolError(
          `Unexpected status ${res.status} for a range of "${job.rel}"`,
        );
      }
      const cr = parseContentRange(res.headers.get("content-range"));
      if (cr === undefined || cr.size !== job.size) {
        if (cr !== undefined) throw new FileChanged(job.rel);
        throw new ProtocolError(
          `Range response for "${job.rel}" has no valid Content-Range`,
        );
      }
      if (cr.range.start !== start || cr.range.end !== end) {
        throw new ProtocolError(
          `Server sent bytes ${cr.range.start}-${
            cr.range.end - 1
          } of "${job.rel}" for ${start}-${end - 1}`,
        );
      }
      const range = { start, end };
      const usable = usableBody(ex, range, job.rel);
      // The handle must be the part this run made (or resumed), whatever
      // was planted at its name since: a link is never written through.
      const file = openChecked(state.part, { write: true, expected: state.id });
      let pos: number;
      try {
        const receive = state.skipZeros ? receiveSkippingZeros : receiveBody;
        pos = await receive(ex, file, range, usable, {
          label: job.rel,
          path: state.part,
          written: state.written,
          // The governor measures in periods of a few hundred ms: its
          // streams tell their bytes more often than the progress bar needs.
          progressMs: governor === undefined ? undefined : GOVERNED_PROGRESS_MS,
          onProgress: (pos) => {
            this.#ctx.emit({ type: "progress", bytes: pos - cursor.pos });
            governor?.bytes(pos - cursor.pos);
            cursor.pos = pos;
          },
        });
      } finally {
        file.close();
      }
      if (pos !== end) {
        throw new ShortBody(
          `Body for "${job.rel}" ended at byte ${pos} of ${end}`,
        );
      }
    } finally {
      signal.removeEventListener("abort", cancel);
      ex.done();
      await ex.response.body?.cancel().catch(() => {});
    }
  }
}

/** Extends a resumed part to the file's size (`-S`): what was never written reads as zeros and takes no room. */
function sizePart(state: FileState): void {
  try {
    using file = openChecked(state.part, { write: true, expected: state.id });
    if (file.statSync().size < state.job.size) {
      file.truncateSync(state.job.size);
    }
  } catch (error) {
    if (error instanceof LocalPathError) throw error;
    throw new LocalPathError(state.part, reason(error), error);
  }
}

/**
 * Creates (or recreates) the empty part file of a ranged fetch, `size`
 * bytes of zeros that take no room (`-S`: what is never written stays a
 * hole), and returns its identity; an unusable destination is a
 * {@linkcode DestinationError}.
 */
function createEmptyPart(part: string, size: number): FileId {
  try {
    using file = createPart(part);
    if (size > 0) file.truncateSync(size);
    return fileIdOf(file.statSync());
  } catch (error) {
    throw new DestinationError(part, reason(error), error);
  }
}
