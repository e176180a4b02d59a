/**
 * Small files through `POST /v1/bundle`: many files per request, each
 * written whole to its part file and renamed into place (after its SHA-256
 * is checked with `verify`); what a bundle leaves out is fetched on its own.
 */
import { decodeFrames } from "../shared/bundle_codec.ts";
import type { FileId } from "../shared/checked_open.ts";
import { describeError, LocalPathError, reason } from "../shared/errors.ts";
import { removeJournalSync } from "../shared/journal.ts";
import {
  journalPathFor,
  partPathFor,
  renamePartSync,
  writeNewPart,
} from "../shared/part_file.ts";
import { sha256Hex } from "../shared/span_hash.ts";
import type { HashResult } from "../shared/wire.ts";
import type { Exchange } from "./remote.ts";
import { ProtocolError } from "./retry.ts";
import { HASH_SLOTS } from "./scheduler.ts";
import { SMALL_FILE_BYTES } from "./plan.ts";
import type { FileJob, PullContext } from "./transfer.ts";
import type { Verifier } from "./verify.ts";

/** Most files in one bundle request (the server accepts 10,000). */
export const BUNDLE_MAX_FILES = 1000;
/** Most data bytes asked for in one bundle request. */
export const BUNDLE_MAX_BYTES = 8 * 1024 * 1024;
/** Files in the first bundle: small first bundles get the pipeline going while the listing streams (doubling up to {@linkcode BUNDLE_MAX_FILES}). */
const FIRST_BUNDLE_FILES = 64;

/** Options of {@linkcode BundleFetcher}. */
export interface BundleFetcherOptions {
  /** The pulled root on the server (bundle paths are relative to it). */
  root: string;
  /** Check each file's SHA-256 with the server's before placing it. */
  verify: boolean;
  verifier: Verifier;
  /** Fetches one file on its own (a file a bundle left out or that failed verification). */
  fetchFile: (job: FileJob, options: { refetched?: boolean }) => Promise<void>;
  /** Runs a bundle request in the background. */
  spawn: (task: Promise<void>) => void;
}

/** Collects small files into bundles, sends them a few at a time, and writes and places what arrives. */
export class BundleFetcher {
  readonly #ctx: PullContext;
  readonly #o: BundleFetcherOptions;
  #batch: FileJob[] = [];
  #batchBytes = 0;
  #batchesSent = 0;

  /** A fetcher for one pull. */
  constructor(context: PullContext, options: BundleFetcherOptions) {
    this.#ctx = context;
    this.#o = options;
  }

  /** Adds a small file to the next bundle, which is sent once it is full (waiting for a bundle slot). */
  async add(job: FileJob): Promise<void> {
    this.#batch.push(job);
    this.#batchBytes += job.size;
    const maxFiles = Math.min(
      BUNDLE_MAX_FILES,
      FIRST_BUNDLE_FILES << this.#batchesSent,
    );
    if (
      this.#batch.length >= maxFiles || this.#batchBytes >= BUNDLE_MAX_BYTES
    ) await this.#send();
  }

  /** Sends the files collected so far (after the listing ended). */
  async flush(): Promise<void> {
    if (this.#batch.length > 0 && !this.#ctx.signal.aborted) {
      await this.#send();
    }
  }

  /**
   * Writes a whole small file: part file, mtime (and mode), and unless
   * `place` is false, the rename into place. Synchronous on purpose:
   * measured here, file creation dominates and the async ops only add a
   * thread-pool round trip per call (0.6 ms vs 1 ms per file). Returns the
   * part file's identity when it worked; a failure is counted.
   */
  writeWhole(
    job: FileJob,
    data: Uint8Array,
    place = true,
  ): FileId | undefined {
    const ctx = this.#ctx;
    const part = partPathFor(job.target);
    let id: FileId;
    try {
      // A leftover part file (or a planted link) is removed, never
      // followed; a journal of an earlier ranged attempt goes too. Times
      // and mode go through the descriptor: the name may be swapped by now.
      id = writeNewPart(part, data, {
        mtime: job.mtime,
        mode: ctx.modeOf(job),
      }, { onLeftover: () => removeJournalSync(journalPathFor(job.target)) });
    } catch (error) {
      this.#failed(job, error);
      return undefined;
    }
    ctx.emit({ type: "progress", bytes: data.length });
    if (place && !this.#place(job, id)) return undefined;
    return id;
  }

  async #send(): Promise<void> {
    const batch = this.#batch;
    this.#batch = [];
    this.#batchBytes = 0;
    this.#batchesSent++;
    const release = await this.#ctx.limits.bundles.acquire(this.#ctx.signal);
    this.#o.spawn(this.#run(batch).finally(release));
  }

  async #run(batch: FileJob[]): Promise<void> {
    const ctx = this.#ctx;
    const pending = new Map(batch.map((job) => [job.rel, job]));
    const retry: FileJob[] = [];
    const toVerify: Array<{ job: FileJob; sha256: string; id: FileId }> = [];
    const release = await ctx.limits.requests.acquire(ctx.signal);
    let ex: Exchange | undefined;
    try {
      ex = await ctx.remote.bundle(
        this.#o.root,
        [...pending.keys()],
        ctx.signal,
      );
      const body = ex.response.body;
      if (body === null) throw new ProtocolError("Bundle response has no body");
      for await (const frame of decodeFrames(body, SMALL_FILE_BYTES * 4)) {
        ex.kick();
        const h = frame.header;
        if ("end" in h) continue;
        const job = pending.get(h.path);
        // Only paths we asked for, each once: anything else is ignored.
        if (job === undefined) continue;
        pending.delete(h.path);
        if ("error" in h) {
          retry.push(job);
          continue;
        }
        // The frame is a consistent snapshot: its identity goes with its bytes.
        Object.assign(job, {
          size: h.size,
          mtime: h.mtime,
          mode: h.mode,
          etag: h.etag,
        });
        if (!this.#o.verify) this.writeWhole(job, frame.data);
        else {
          const id = this.writeWhole(job, frame.data, false);
          if (id !== undefined) {
            toVerify.push({ job, sha256: sha256Hex(frame.data), id });
          }
        }
      }
    } catch {
      if (ctx.signal.aborted) {
        for (const job of pending.values()) ctx.targets.delete(job.target);
        for (const { job } of toVerify) ctx.targets.delete(job.target);
        return;
      }
      // Whatever did not arrive is fetched one by one below.
    } finally {
      ex?.done();
      release();
    }
    await this.#verify(toVerify);
    retry.push(...pending.values());
    for (const job of retry) {
      if (ctx.signal.aborted) {
        ctx.targets.delete(job.target);
        continue;
      }
      await this.#o.fetchFile(job, {});
    }
  }

  /** Renames a complete small part file (the inode `id`) into place; a failure is counted. */
  #place(job: FileJob, id: FileId): boolean {
    try {
      renamePartSync(partPathFor(job.target), id, job.target);
    } catch (error) {
      this.#failed(job, error);
      return false;
    }
    this.#ctx.placed(job);
    return true;
  }

  /**
   * `verify` for small files written from a bundle: the SHA-256 of the bytes
   * written against the server's, a few requests at a time; a match is
   * placed, a mismatch fetched once more on its own.
   */
  async #verify(
    list: Array<{ job: FileJob; sha256: string; id: FileId }>,
  ): Promise<void> {
    const ctx = this.#ctx;
    let next = 0;
    const worker = async () => {
      while (next < list.length) {
        const { job, sha256, id } = list[next++];
        if (ctx.signal.aborted) {
          ctx.targets.delete(job.target);
          continue;
        }
        let theirs: HashResult;
        try {
          theirs = await this.#o.verifier.remoteHash(job, {
            start: 0,
            end: job.size,
          });
        } catch (error) {
          ctx.targets.delete(job.target);
          if (!ctx.signal.aborted) ctx.fail(job.rel, describeError(error));
          continue;
        }
        if (theirs.etag === job.etag && theirs.sha256 === sha256) {
          this.#place(job, id);
          continue;
        }
        const changed = theirs.etag !== job.etag;
        ctx.emit({ type: "progress", bytes: -job.size });
        ctx.emit({
          type: "warning",
          path: job.rel,
          message: changed
            ? `File "${job.rel}" changed on the server, fetching it again`
            : `SHA-256 of "${job.rel}" differs from the server's: fetching it again`,
        });
        await this.#o.fetchFile(job, { refetched: !changed });
      }
    };
    await Promise.all(
      Array.from({ length: Math.min(HASH_SLOTS, list.length) }, worker),
    );
  }

  /** Counts a small file that could not be written or placed, naming the local path at fault. */
  #failed(job: FileJob, error: unknown): void {
    this.#ctx.targets.delete(job.target);
    this.#ctx.fail(
      job.rel,
      error instanceof LocalPathError
        ? error.message
        : new LocalPathError(job.target, reason(error)).message,
    );
  }
}
