/**
 * One file of a pull from its ranges to its place: fetched (resuming from
 * its journal), checked with `--verify` and fetched once more where it
 * differs, started over when it changes on the server, then placed under
 * its final name with its time and mode.
 */
import type { FileId } from "../shared/checked_open.ts";
import { describeError, LocalPathError, reason } from "../shared/errors.ts";
import { removeJournal } from "../shared/journal.ts";
import { journalPathFor, partPathFor, placePart } from "../shared/part_file.ts";
import { DestinationError, type RangeFetcher } from "./fetch_ranges.ts";
import { ProtocolError } from "./retry.ts";
import { FileChanged, type FileJob, type PullContext } from "./transfer.ts";
import { describeSpans, type Verifier, VerifyFailed } from "./verify.ts";

/** How many times a file that keeps changing on the server is started over. */
const MAX_RESTARTS = 3;

/** Options of {@linkcode FileFetcher}. */
export interface FileFetcherOptions {
  /** Fetches the ranges of a file into its `.hsync-part`. */
  ranges: RangeFetcher;
  verifier: Verifier;
  /** `--verify`: the SHA-256 of each file is compared with the server's before it is placed. */
  verify: boolean;
  /** A resume journal is kept beside each part (removed before the part is renamed). */
  journal: boolean;
  /** More (or, negative, fewer) files and bytes than planned: a file that changed size. */
  addTotal: (files: number, bytes: number) => void;
  /** A file failed: counted and told; the rest goes on. */
  fail: (path: string, message: string) => void;
}

/** Fetches, verifies and places the files of one pull, one call per file. */
export class FileFetcher {
  readonly #ctx: PullContext;
  readonly #o: FileFetcherOptions;

  /** The fetcher of one pull. */
  constructor(context: PullContext, options: FileFetcherOptions) {
    this.#ctx = context;
    this.#o = options;
  }

  /**
   * Fetches one file in ranges (resuming from its journal), verifies it when
   * asked, and places it; a file that changed on the server meanwhile is
   * started over. A failure is counted, never thrown (except an unusable
   * destination with `throwLocal`); `refetched` says the one refetch after a
   * failed verification is used up.
   */
  async fetch(
    job: FileJob,
    options: { throwLocal?: boolean; refetched?: boolean } = {},
  ): Promise<void> {
    let restarts = 0;
    let refetched = options.refetched ?? false;
    try {
      while (true) {
        try {
          const id = await this.#o.ranges.fetch(job);
          if (this.#o.verify) {
            const part = partPathFor(job.target);
            const bad = await this.#o.verifier.differing(job, part, id);
            if (bad.length > 0) {
              const what = `SHA-256 of ${
                describeSpans(bad, job.size)
              }"${job.rel}"`;
              if (refetched) {
                await this.#o.ranges.discard(job);
                throw new VerifyFailed(
                  `${what} still differs from the server's after fetching it again: not placed`,
                );
              }
              refetched = true;
              this.#ctx.emit({
                type: "warning",
                path: job.rel,
                message: `${what} differs from the server's: fetching it again`,
              });
              await this.#o.ranges.forget(job, bad);
              continue;
            }
          }
          await this.#place(job, id);
          return;
        } catch (error) {
          if (!(error instanceof FileChanged) || restarts >= MAX_RESTARTS) {
            throw error instanceof FileChanged
              ? new Error(`${error.message} ${MAX_RESTARTS + 1} times`)
              : error;
          }
          restarts++;
          await this.#restart(job, error);
        }
      }
    } catch (error) {
      if (this.#ctx.signal.aborted) return;
      if (options.throwLocal && error instanceof DestinationError) throw error;
      this.#o.fail(job.rel, describeError(error));
    } finally {
      this.#ctx.targets.delete(job.target);
    }
  }

  /** A file that changed on the server starts over, as it is now (told once per restart). */
  async #restart(job: FileJob, changed: FileChanged): Promise<void> {
    this.#ctx.emit({
      type: "warning",
      path: job.rel,
      message: `${changed.message}, starting over`,
    });
    await removeJournal(journalPathFor(job.target)).catch(() => {});
    const st = await this.#ctx.backoff.retry(
      () => this.#ctx.remote.stat(job.remote, this.#ctx.signal),
      this.#ctx.signal,
    );
    if (st.type !== "file") {
      throw new ProtocolError(`"${job.rel}" is no longer a file`);
    }
    this.#o.addTotal(0, st.size - job.size);
    Object.assign(job, {
      size: st.size,
      mtime: st.mtime,
      mode: st.mode,
      etag: st.etag,
    });
  }

  /** Sets mtime (and mode) of the complete part file `id` through a handle, removes the journal, then renames the part into place. */
  async #place(job: FileJob, id: FileId): Promise<void> {
    try {
      await placePart(partPathFor(job.target), id, job.target, {
        mtime: job.mtime,
        mode: this.#ctx.modeOf(job),
        beforeRename: this.#o.journal
          ? () => removeJournal(journalPathFor(job.target))
          : undefined,
      });
    } catch (error) {
      if (error instanceof LocalPathError) throw error;
      throw new LocalPathError(job.target, reason(error), error);
    }
    this.#ctx.placed(job);
  }
}
