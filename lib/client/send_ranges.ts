/**
 * Sending one file in byte ranges into the server's `.hsync-part`: what the
 * server already holds of the same source is kept, the gaps go in parallel
 * (each PUT declaring the SHA-256 of exactly its bytes, and retried from the
 * server's status after a failure), then a commit gives the file its final
 * name, with its mtime and mode (and verified with `--verify`).
 */
import { bodyDigest } from "../shared/auth.ts";
import { type ByteRange, planGaps } from "../shared/byte_range.ts";
import { HttpError, reason } from "../shared/errors.ts";
import { RangeSet } from "../shared/range_set.ts";
import { hashSpans } from "../shared/span_hash.ts";
import type { CommitRequest } from "../shared/wire.ts";
import {
  checkUnchanged,
  isDiskFull,
  LocalChanged,
  localChangeIn,
  type PushContext,
  type SendJob,
  sourceOf,
  takeAsItIsNow,
  writeRefusal,
} from "./push_context.ts";
import type { HeldUpload, UploadTarget } from "./remote_push.ts";
import { holesOf } from "./push_holes.ts";
import { readSpan } from "./put_body.ts";
import { PUT_MAX_BYTES, PutBuffers, PUTS_IN_FLIGHT } from "./put_sizes.ts";
import { Limiter } from "../shared/limiter.ts";
import { isRetryable, sleep } from "./retry.ts";

/** Smallest range of a pushed file sent as a stream of PUTs beside the others (unless Max_part_num is pinned). */
const PUSH_PART_BYTES = 32 * 1024 * 1024;
/** Times a file is started over (changed locally, or the server lost its upload) before it fails. */
const MAX_ROUNDS = 4;
/** How long a path another push is writing is waited for (the server holds it for 10 s after its last request). */
export const DEFAULT_BUSY_WAIT_MS = 30_000;
/** Pause between two asks while another push holds the path. */
const BUSY_PAUSE_MS = 2_000;
/** Bytes of a PUT that asks whether another push still holds the path. */
const BUSY_PROBE_BYTES = 64 * 1024;

/**
 * A file whose inode changed less than this long ago (ms) may still be being
 * written: its last range does not commit it; a commit of its own follows
 * a last look at it.
 */
const SETTLED_MS = 2000;

/** Options of {@linkcode RangeSender}. */
export interface RangeSenderOptions {
  /** Default {@linkcode SETTLED_MS}. */
  settledMs?: number;
  /** Longest wait for a path another push is writing (default {@linkcode DEFAULT_BUSY_WAIT_MS}). */
  busyWaitMs?: number;
  /** Bytes per PUT (default {@linkcode PUT_MAX_BYTES}, as many as hsyncd takes). */
  putMaxBytes?: number;
}

/** The server holds another source, or lost what it held: the file starts over with `restart=1`. */
class StartOver extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StartOver";
  }
}

/** One round of sending a file: what the PUTs declare, and whether the first must drop what the server held. */
interface Round {
  job: SendJob;
  restart: boolean;
  /** Settles once the PUT carrying `restart=1` is answered: the other ranges wait for it. */
  restarted: Promise<void>;
  /** Set when that PUT is answered. */
  markRestarted: () => void;
  /** Stops every range of this round after the first failure. */
  signal: AbortSignal;
  /** Tells the progress bytes sent (negative: taken back). */
  progress: (bytes: number) => void;
  /** The file's time and mode, sent with every PUT: the range that completes the upload commits it. */
  commit?: UploadTarget["commit"];
  /** Set once a PUT's answer says the file was committed. */
  committed: boolean;
  /** Ranges whose last PUT is not made yet (with `commit`). */
  lastPuts: number;
  /** Told once every range's last PUT is made (the push's end may go then). */
  posted: () => void;
}

/** Sends files in ranges, resumably, and commits them. */
export class RangeSender {
  readonly #ctx: PushContext;
  readonly #busyWaitMs: number;
  readonly #putBytes: number;
  /** PUTs of this push in flight (their bodies in memory). */
  readonly #inFlight = new Limiter(PUTS_IN_FLIGHT);
  readonly #settledMs: number;
  /** Buffers whose PUT was answered, to read the next range into. */
  readonly #buffers = new PutBuffers();

  /** A sender for one push. */
  constructor(context: PushContext, options: RangeSenderOptions = {}) {
    this.#ctx = context;
    this.#busyWaitMs = options.busyWaitMs ?? DEFAULT_BUSY_WAIT_MS;
    this.#putBytes = options.putMaxBytes ?? PUT_MAX_BYTES;
    this.#settledMs = options.settledMs ?? SETTLED_MS;
  }

  /**
   * Sends `job` until it is committed. Throws (one line for the user) when
   * it cannot be: the caller counts the failure. A refusal of every write
   * (401, `read_only`, `not_writable`) also stops the run.
   */
  async send(job: SendJob, posted: () => void = () => {}): Promise<void> {
    const ctx = this.#ctx;
    let expectOther = false;
    let resent = false;
    // What this file added to the progress: a round that starts over takes it back.
    let shown = 0;
    const progress = (bytes: number, resumed?: boolean) => {
      shown += bytes;
      ctx.emit({ type: "progress", bytes, resumed });
    };
    // Bytes of holes taken off the planned total (never sent).
    let unsent = 0;
    for (let round = 1;; round++) {
      if (shown !== 0) progress(-shown);
      try {
        checkUnchanged(job);
        let holes: RangeSet | undefined;
        if (job.sparse) {
          holes = await holesOf(job, ctx.signal);
          ctx.addTotal(0, unsent - holes.covered);
          unsent = holes.covered;
        }
        const held = await this.#held(job, expectOther, progress);
        const skip = new RangeSet([
          ...held.held.toArray(),
          ...(holes?.toArray() ?? []),
        ]);
        // Committed by its last range, unless a commit must carry more
        // (the SHA-256 with --verify, holes with -S) or the file may still
        // be being written (it is looked at once more before its commit).
        const commit = ctx.verify || (holes?.covered ?? 0) > 0 ||
            Date.now() - job.changedMs < this.#settledMs
          ? undefined
          : { mtime: job.mtime, mode: job.mode, preserve: ctx.preserve };
        const committed = await this.#sendGaps(
          job,
          { ...held, held: skip },
          progress,
          commit,
          posted,
        );
        if (committed) {
          ctx.sent(job);
          return;
        }
        checkUnchanged(job);
        let sha256: string | undefined;
        if (ctx.verify) {
          sha256 = (await this.#hashLocal(job, { start: 0, end: job.size }))[0];
          checkUnchanged(job);
        }
        await this.#commit(job, sha256, holes, posted);
        return;
      } catch (error) {
        if (ctx.signal.aborted) throw error;
        this.#refuse(error);
        const startsOver = error instanceof LocalChanged ||
          error instanceof StartOver ||
          (error instanceof HttpError && error.code === "verify_failed" &&
            !resent);
        if (startsOver && round >= MAX_ROUNDS) {
          throw new Error(
            `${(error as Error).message} (${round} times): not committed`,
          );
        }
        if (error instanceof LocalChanged) {
          takeAsItIsNow(ctx, job, error);
          expectOther = true;
          continue;
        }
        if (error instanceof StartOver) {
          expectOther = true;
          continue;
        }
        if (error instanceof HttpError && error.code === "verify_failed") {
          if (resent) {
            throw new Error(
              `SHA-256 of "${job.label}" on the server still differs from the local file after sending it again: not committed`,
            );
          }
          resent = true;
          ctx.emit({
            type: "warning",
            path: job.label,
            message:
              `SHA-256 of "${job.label}" on the server differs from the local file: sending it again`,
          });
          expectOther = true;
          continue;
        }
        throw error;
      }
    }
  }

  /**
   * What the server holds of this very source (kept), else nothing: an
   * upload of another source is announced once (the local file changed
   * since the interrupted push) and dropped by the round's first PUT.
   */
  async #held(
    job: SendJob,
    expectOther: boolean,
    progress: (bytes: number, resumed?: boolean) => void,
  ): Promise<{ held: RangeSet; restart: boolean }> {
    const ctx = this.#ctx;
    // Told with the lease, or nothing in a directory this push made: no
    // round trip (a part of another source the server does hold after all
    // refuses the first PUT, and the next round asks).
    const known = job.held;
    job.held = undefined;
    const status = known !== undefined
      ? known ?? undefined
      : await this.#retry(() => ctx.push.status(job.remote, ctx.signal));
    if (status === undefined) return { held: new RangeSet(), restart: false };
    if (status.size === job.size && status.source === sourceOf(job)) {
      const covered = status.held.covered;
      if (covered > 0) progress(covered, true);
      return { held: status.held, restart: false };
    }
    if (!expectOther) {
      ctx.emit({
        type: "warning",
        path: job.label,
        message:
          `"${job.label}" changed since the interrupted push: starting over`,
      });
    }
    return { held: new RangeSet(), restart: true };
  }

  /**
   * Sends every gap of `held`, ranges in parallel; the first failure stops
   * the others and is thrown once all settled. With `commit`, every PUT
   * asks for the commit: true when one was answered committed; `posted` is
   * told once the last PUT of every range is made.
   */
  async #sendGaps(
    job: SendJob,
    state: { held: RangeSet; restart: boolean },
    progress: (bytes: number) => void,
    commit: UploadTarget["commit"] | undefined,
    posted: () => void,
  ): Promise<boolean> {
    const ctx = this.#ctx;
    // Each range is a stream of PUTs waiting a round trip each: far away,
    // more ranges keep the path full (PUSH_PART_BYTES unless pinned).
    const settings = ctx.settings;
    const ranges = planGaps(state.held.gaps(job.size), {
      maxParts: settings.maxPartNum,
      minPartSize: settings.pinnedParts
        ? settings.minPartSize
        : Math.min(settings.minPartSize, PUSH_PART_BYTES),
    });
    if (ranges.length === 0) return false;
    const controller = new AbortController();
    const onAbort = () => controller.abort(ctx.signal.reason);
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    let markRestarted = () => {};
    const restarted = state.restart
      ? new Promise<void>((resolve) => markRestarted = resolve)
      : Promise.resolve();
    const round: Round = {
      job,
      restart: state.restart,
      restarted,
      markRestarted,
      signal: controller.signal,
      progress,
      commit,
      committed: false,
      lastPuts: ranges.length,
      posted,
    };
    let failed = false;
    let first: unknown;
    try {
      await Promise.all(
        ranges.map((range, i) =>
          this.#sendRange(round, range, i === 0).catch((error) => {
            round.markRestarted();
            if (failed) return;
            failed = true;
            first = error;
            controller.abort(error);
          })
        ),
      );
    } finally {
      ctx.signal.removeEventListener("abort", onAbort);
    }
    if (failed) throw first;
    return round.committed;
  }

  /**
   * Sends `range` in PUTs (of {@linkcode PUT_MAX_BYTES}, at most
   * {@linkcode PUTS_IN_FLIGHT} of the push at once); after a
   * failure, what is left is taken from the server's status (a body cut
   * short leaves its flushed prefix there). `leads` carries the round's
   * `restart=1`; the other ranges wait until it is answered.
   */
  async #sendRange(
    round: Round,
    range: ByteRange,
    leads: boolean,
  ): Promise<void> {
    const ctx = this.#ctx;
    const { job, signal, progress } = round;
    if (!leads) await round.restarted;
    let todo: ByteRange[] = [range];
    let attempt = 0;
    let busySince: number | undefined;
    // The first PUT of what is left of a gap; while another push holds the
    // path, a small one (a refused body is still sent, at least in part).
    const chunkOf = (gap: ByteRange) => ({
      start: gap.start,
      end: Math.min(
        gap.end,
        gap.start +
          (busySince === undefined ? this.#putBytes : BUSY_PROBE_BYTES),
      ),
    });
    while (todo.length > 0) {
      const gap = todo[0];
      const chunk = chunkOf(gap);
      const restart = leads && round.restart;
      let counted = 0;
      let error: unknown;
      try {
        await this.#inFlight.run(() =>
          ctx.limits.requests.run(async () => {
            // Read once, in the slot: at most one chunk per request in flight.
            const buffer = this.#buffers.take(chunk.end - chunk.start);
            const bytes = await readSpan(job, chunk, buffer);
            // Read before this check: any write to the file since the push
            // began shows, so no PUT that may commit carries bytes of another
            // version (without, the check before the commit request does).
            if (round.commit !== undefined) checkUnchanged(job);
            // Sent with its length, in pieces the progress (and the idle
            // timer) is told of as the socket takes them.
            const answering = ctx.push.put(
              job.remote,
              {
                size: job.size,
                source: sourceOf(job),
                restart,
                commit: round.commit,
              },
              chunk,
              {
                sha256: ctx.remote.signs ? bodyDigest(bytes) : undefined,
                body: bytes,
                onSent: (n) => {
                  counted += n;
                  progress(n);
                },
                signal,
              },
            );
            // The range's last PUT, which may commit the file, is made.
            if (
              round.commit !== undefined && todo.length === 1 &&
              chunk.end === gap.end && --round.lastPuts === 0
            ) round.posted();
            const answer = await answering;
            if (answer.committed !== undefined) {
              if (answer.committed.size !== job.size) {
                throw new Error(
                  `The server committed "${job.label}" as ${answer.committed.size} bytes instead of ${job.size}`,
                );
              }
              round.committed = true;
            }
            // Answered: the body was read whole (a failed one may still be in
            // use below, so only an answered buffer is reused).
            this.#buffers.give(buffer);
          }, signal), signal);
      } catch (e) {
        error = e;
      } finally {
        if (restart) {
          leads = false;
          round.markRestarted();
        }
      }
      if (error === undefined) {
        attempt = 0;
        busySince = undefined;
        todo = [{ start: chunk.end, end: gap.end }, ...todo.slice(1)]
          .filter((r) => r.end > r.start);
        continue;
      }
      if (counted > 0) progress(-counted);
      if (signal.aborted) throw signal.reason;
      const changed = localChangeIn(error);
      if (changed !== undefined) throw changed;
      if (error instanceof HttpError && error.code === "source_changed") {
        throw new StartOver(`"${job.label}" changed on the server`);
      }
      if (error instanceof HttpError && error.code === "upload_in_progress") {
        // Another run holds the path (or held it until it died, less than a
        // minute ago): wait for it, then say so.
        const now = performance.now();
        if (busySince === undefined) {
          busySince = now;
          ctx.emit({
            type: "warning",
            path: job.label,
            message:
              `"${job.label}" is being written by another push to ${ctx.remote.host}: waiting`,
          });
        } else if (now - busySince >= this.#busyWaitMs) {
          throw new Error(
            `"${job.label}" is being written by another push to ${ctx.remote.host}: ${error.message}`,
          );
        }
        await sleep(
          Math.min(BUSY_PAUSE_MS, Math.max(10, this.#busyWaitMs / 8)),
          signal,
        );
        continue;
      }
      // The file itself may be why (a body whose bytes are not the ones
      // hashed is even refused as unsigned, 401): that is a restart, not a
      // network error nor a key the server refuses.
      checkUnchanged(job);
      if (!isRetryable(error) || isDiskFull(error)) throw error;
      attempt++;
      if (attempt > ctx.backoff.maxRetries) throw error;
      await ctx.backoff.wait(attempt, signal);
      todo = await this.#leftOf(round, range);
      // The prefix of a cut body that the server kept counts again.
      const kept = new RangeSet([{
        start: chunk.start,
        end: chunk.start + counted,
      }]);
      for (const r of todo) kept.remove(r);
      if (kept.covered > 0) progress(kept.covered);
    }
  }

  /** What is still missing of `range` according to the server's status after a failure. */
  async #leftOf(round: Round, range: ByteRange): Promise<ByteRange[]> {
    const ctx = this.#ctx;
    const { job } = round;
    let status: HeldUpload | undefined;
    try {
      status = await this.#retry(() =>
        ctx.push.status(job.remote, round.signal)
      );
    } catch (error) {
      if (round.signal.aborted) throw round.signal.reason;
      throw error;
    }
    // A PUT that committed the file, its answer lost on the way.
    if (
      status === undefined && round.commit !== undefined &&
      await this.#committed(job)
    ) {
      round.committed = true;
      return [];
    }
    if (
      status === undefined || status.size !== job.size ||
      status.source !== sourceOf(job)
    ) {
      if (round.restart && status === undefined) return [range];
      throw new StartOver(
        `The server no longer holds the upload of "${job.label}"`,
      );
    }
    const left = new RangeSet([range]);
    for (const r of status.held.toArray()) left.remove(r);
    return left.toArray();
  }

  /** Commits the complete upload; an answer lost on the way is recognised by a stat of the final name. */
  async #commit(
    job: SendJob,
    sha256: string | undefined,
    holes: RangeSet | undefined,
    posted: () => void,
  ): Promise<void> {
    const ctx = this.#ctx;
    const request: CommitRequest = {
      size: job.size,
      source: sourceOf(job),
      mtime: job.mtime,
      mode: job.mode,
      ...(ctx.preserve ? { preserve: true } : {}),
      ...(sha256 === undefined ? {} : { sha256 }),
      ...(holes === undefined || holes.covered === 0 ? {} : {
        holes: holes.toArray().map((r): [number, number] => [r.start, r.end]),
      }),
    };
    for (let attempt = 1;; attempt++) {
      try {
        const committing = ctx.push.commit(job.remote, request, ctx.signal);
        posted();
        const result = await committing;
        if (
          result.size !== job.size ||
          (sha256 !== undefined && result.sha256 !== sha256)
        ) {
          throw new Error(
            `The server committed "${job.label}" as ${result.size} bytes${
              sha256 === undefined ? "" : " with another SHA-256"
            } instead of ${job.size}`,
          );
        }
        ctx.sent(job);
        return;
      } catch (error) {
        if (ctx.signal.aborted) throw error;
        if (error instanceof HttpError && error.code === "incomplete") {
          if (attempt > 1 && await this.#committed(job)) {
            ctx.sent(job);
            return;
          }
          throw new StartOver(
            `The server does not hold every byte of "${job.label}"`,
          );
        }
        if (
          !isRetryable(error) || isDiskFull(error) ||
          attempt > ctx.backoff.maxRetries
        ) throw error;
        await ctx.backoff.wait(attempt, ctx.signal);
        if (await this.#committed(job)) {
          ctx.sent(job);
          return;
        }
      }
    }
  }

  /** Whether the final name already holds this file (a commit whose answer was lost). */
  async #committed(job: SendJob): Promise<boolean> {
    try {
      const st = await this.#ctx.remote.stat(job.remote, this.#ctx.signal);
      return st.type === "file" && st.size === job.size &&
        st.mtime === job.mtime &&
        (await this.#ctx.push.status(job.remote, this.#ctx.signal)) ===
          undefined;
    } catch {
      return false;
    }
  }

  /** Stops the run for a refusal of every write (and throws it), unless the file itself was at fault. */
  #refuse(error: unknown): void {
    const refusal = writeRefusal(error, this.#ctx.remote.host);
    if (refusal === undefined) return;
    this.#ctx.stopRun(refusal);
    throw refusal;
  }

  async #hashLocal(job: SendJob, span: ByteRange): Promise<string[]> {
    try {
      return await hashSpans(job.local, [span], {
        expected: job.id,
        signal: this.#ctx.signal,
      });
    } catch (error) {
      if (this.#ctx.signal.aborted) throw error;
      throw new LocalChanged(
        `Cannot read ${JSON.stringify(job.local)}: ${reason(error)}`,
      );
    }
  }

  /** A read of the server's state, retried with backoff when the network or the server falters. */
  #retry<T>(task: () => Promise<T>): Promise<T> {
    return this.#ctx.backoff.retry(task, this.#ctx.signal);
  }
}
