/** Comparing local bytes with the server's by SHA-256, span by span: `--verify`, `--checksum`, and the unflushed ranges of a resumed journal. */
import type { ByteRange } from "../shared/byte_range.ts";
import type { FileId } from "../shared/checked_open.ts";
import { describeError, reason } from "../shared/errors.ts";
import { hashSpans, spansOf } from "../shared/span_hash.ts";
import type { HashResult } from "../shared/wire.ts";
import type { Remote } from "./remote.ts";
import { type Backoff } from "./retry.ts";
import type { Scheduler } from "./scheduler.ts";
import {
  FileChanged,
  type FileJob,
  type HashPhase,
  type PullEvent,
} from "./transfer.ts";

/** Bytes per hash request of `--verify`/`--checksum` (bounds the server's work per request). */
export const HASH_SPAN_BYTES = 64 * 1024 * 1024;

/** SHA-256 still differs from the server's after the one refetch. */
export class VerifyFailed extends Error {
  /** A failure told by `message`. */
  constructor(message: string) {
    super(message);
    this.name = "VerifyFailed";
  }
}

/** Asks the server for SHA-256 of spans and compares them with the same spans of a local file. */
export class Verifier {
  readonly #remote: Remote;
  readonly #limits: Scheduler;
  readonly #backoff: Backoff;
  readonly #signal: AbortSignal;
  readonly #emit?: (event: PullEvent) => void;

  /** A verifier asking `remote`, a few hashes at a time, until `signal` aborts; `emit` is told how the local hashing goes. */
  constructor(
    context: {
      remote: Remote;
      limits: Scheduler;
      backoff: Backoff;
      signal: AbortSignal;
      emit?: (event: PullEvent) => void;
    },
  ) {
    this.#remote = context.remote;
    this.#limits = context.limits;
    this.#backoff = context.backoff;
    this.#signal = context.signal;
    this.#emit = context.emit;
  }

  /**
   * Compares the SHA-256 of the local file `id` at `path` with the server's,
   * span by span ({@linkcode HASH_SPAN_BYTES} each, so no request makes the
   * server hash more than that); returns the spans that differ. Throws
   * `FileChanged` when the server hashed another identity than `job`'s.
   * `phase` names the work on the progress bar.
   */
  async differing(
    job: FileJob,
    path: string,
    id: FileId,
    phase: HashPhase = "verifying",
  ): Promise<ByteRange[]> {
    const spans = spansOf({ start: 0, end: job.size }, HASH_SPAN_BYTES);
    const [mine, theirs] = await Promise.all([
      this.#hashLocal(path, spans, id, phase),
      Promise.all(spans.map((span) => this.remoteHash(job, span))),
    ]);
    const bad: ByteRange[] = [];
    for (let i = 0; i < spans.length; i++) {
      if (theirs[i].etag !== job.etag) throw new FileChanged(job.rel);
      if (theirs[i].sha256 !== mine[i]) bad.push(spans[i]);
    }
    return bad;
  }

  /**
   * The spans whose SHA-256 in the local file `id` at `path` matches the
   * server's; none when either side cannot tell. Throws `FileChanged` when
   * the server hashed another identity than `job`'s.
   */
  async matching(
    job: FileJob,
    path: string,
    spans: ByteRange[],
    id: FileId,
  ): Promise<ByteRange[]> {
    let mine: string[];
    let theirs: HashResult[];
    try {
      [mine, theirs] = await Promise.all([
        this.#hashLocal(path, spans, id),
        Promise.all(spans.map((span) => this.remoteHash(job, span))),
      ]);
    } catch (error) {
      if (this.#signal.aborted) throw error;
      return [];
    }
    const good: ByteRange[] = [];
    for (let i = 0; i < spans.length; i++) {
      if (theirs[i].etag !== job.etag) throw new FileChanged(job.rel);
      if (theirs[i].sha256 === mine[i]) good.push(spans[i]);
    }
    return good;
  }

  /**
   * `GET /v1/hash` of a span of `job`'s file, a few at a time; busy answers
   * (503) are retried with backoff. The span is always given, also for a
   * whole file: hsyncd hashes at most 64 MiB per request, and a file that
   * grew past that must come back as changed (its etag), not as refused.
   */
  async remoteHash(job: FileJob, span: ByteRange): Promise<HashResult> {
    try {
      return await this.#backoff.retry(
        () =>
          this.#limits.hashes.run(
            () =>
              this.#remote.hash(job.remote, {
                offset: span.start,
                length: span.end - span.start,
                signal: this.#signal,
              }),
            this.#signal,
          ),
        this.#signal,
      );
    } catch (error) {
      if (this.#signal.aborted) throw error;
      throw new Error(
        `Cannot get the SHA-256 of "${job.rel}" from the server: ${
          describeError(error)
        }`,
        { cause: error },
      );
    }
  }

  /** The local side: a file that cannot be opened as `id` is named in the error. */
  async #hashLocal(
    path: string,
    spans: ByteRange[],
    id: FileId,
    phase?: HashPhase,
  ): Promise<string[]> {
    const emit = phase === undefined ? undefined : this.#emit;
    const total = spans.reduce((n, s) => n + s.end - s.start, 0);
    emit?.({ type: "hashing", phase: phase!, bytes: 0, total });
    let hashed = 0;
    try {
      return await hashSpans(path, spans, {
        expected: id,
        signal: this.#signal,
        onRead: emit && ((bytes) => {
          hashed += bytes;
          emit({ type: "hashing", phase: phase!, bytes });
        }),
      });
    } catch (error) {
      if (this.#signal.aborted) throw error;
      throw new Error(`Cannot read ${JSON.stringify(path)}: ${reason(error)}`, {
        cause: error,
      });
    } finally {
      // A file shorter than planned, or a stop, still ends its share of the phase.
      if (total > hashed) {
        emit?.({ type: "hashing", phase: phase!, bytes: total - hashed });
      }
    }
  }
}

/** `bytes 0-99 of ` (and how many more spans) for a message; empty when the spans are the whole file. */
export function describeSpans(spans: ByteRange[], size: number): string {
  if (spans.length === 1 && spans[0].start === 0 && spans[0].end === size) {
    return "";
  }
  const { start, end } = spans[0];
  const more = spans.length > 1
    ? ` and ${spans.length - 1} more part${spans.length > 2 ? "s" : ""}`
    : "";
  return `bytes ${start}-${end - 1}${more} of `;
}
