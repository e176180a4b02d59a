/**
 * Small files of a push through `POST /v1/upload/bundle`: many per request
 * (at most 8 MiB of frames), a few requests in flight; the server writes
 * each to a new part file and renames it into place with its mtime and mode.
 */
import { encodeFrames } from "../shared/bundle_codec.ts";
import { describeError } from "../shared/errors.ts";
import type { UploadBundleHeader } from "../shared/wire.ts";
import {
  describeLocal,
  isDiskFull,
  type PushContext,
  type SendJob,
  writeRefusal,
} from "./push_context.ts";
import type { LocalPrefetch } from "./local_prefetch.ts";
import { readSmallLocal } from "./local_read.ts";
import { SMALL_FILE_BYTES } from "./plan.ts";

/** Most bytes of frames in one bundle request (the server's limit for a request body). */
export const UPLOAD_BUNDLE_MAX_BYTES = 8 * 1024 * 1024;
/** Most files in one bundle request. */
export const UPLOAD_BUNDLE_MAX_FILES = 1000;
/** Files in the first bundle: a small first request gets the server going while the walk goes on (doubling up to {@linkcode UPLOAD_BUNDLE_MAX_FILES}). */
const FIRST_BUNDLE_FILES = 64;

const encoder = new TextEncoder();

/** Collects small files into bundles per server directory and sends them a few at a time. */
export class BundleSender {
  readonly #ctx: PushContext;
  readonly #spawn: (task: Promise<void>) => void;
  #root = "";
  #batch: SendJob[] = [];
  #bytes = 0;
  #sent = 0;

  readonly #sendAlone: (job: SendJob) => Promise<void>;
  readonly #ahead?: LocalPrefetch;

  /**
   * A sender for one push: `spawn` runs a request in the background,
   * `sendAlone` sends a file that grew too big for a bundle meanwhile,
   * `ahead` holds files read before the walk.
   */
  constructor(
    context: PushContext,
    options: {
      spawn: (task: Promise<void>) => void;
      sendAlone: (job: SendJob) => Promise<void>;
      ahead?: LocalPrefetch;
    },
  ) {
    this.#ctx = context;
    this.#spawn = options.spawn;
    this.#sendAlone = options.sendAlone;
    this.#ahead = options.ahead;
  }

  /** Adds a small file to the next bundle of its directory, sent once full (waiting for a bundle slot). */
  async add(job: SendJob): Promise<void> {
    const cost = frameCost(job);
    if (
      this.#batch.length > 0 &&
      (job.root !== this.#root ||
        this.#bytes + cost > UPLOAD_BUNDLE_MAX_BYTES)
    ) await this.#send();
    this.#root = job.root;
    this.#batch.push(job);
    this.#bytes += cost;
    const most = Math.min(
      UPLOAD_BUNDLE_MAX_FILES,
      FIRST_BUNDLE_FILES << Math.min(this.#sent, 10),
    );
    if (this.#batch.length >= most) await this.#send();
  }

  /** Sends what is collected (after the walk). */
  async flush(): Promise<void> {
    if (this.#batch.length > 0 && !this.#ctx.signal.aborted) {
      await this.#send();
    }
  }

  async #send(): Promise<void> {
    const batch = this.#batch;
    const root = this.#root;
    this.#batch = [];
    this.#bytes = 0;
    this.#sent++;
    const release = await this.#ctx.limits.bundles.acquire(this.#ctx.signal);
    this.#spawn(this.#run(root, batch).finally(release));
  }

  /** Reads the batch, sends it (retried while the network or server falters), and counts each file's outcome. */
  async #run(root: string, batch: SendJob[]): Promise<void> {
    const ctx = this.#ctx;
    const frames: Array<{ header: UploadBundleHeader; data: Uint8Array }> = [];
    const jobs: SendJob[] = [];
    for (const job of batch) {
      const planned = job.size;
      let data: Uint8Array | undefined;
      try {
        data = readWhole(job, this.#ahead);
      } catch (error) {
        ctx.fail(job.label, describeError(error));
        continue;
      }
      if (job.size !== planned) ctx.addTotal(0, job.size - planned);
      if (data === undefined) {
        await this.#sendAlone(job);
        continue;
      }
      frames.push({
        header: {
          path: job.under,
          size: job.size,
          mtime: job.mtime,
          mode: job.mode,
          ...(ctx.preserve ? { preserve: true } : {}),
        },
        data,
      });
      jobs.push(job);
    }
    if (jobs.length === 0) return;
    frames.push({ header: { end: true }, data: new Uint8Array(0) });
    const body = encodeFrames(frames);
    let results;
    try {
      results = await ctx.backoff.retry(
        () =>
          ctx.limits.requests.run(
            () =>
              ctx.push.bundle(root, body, ctx.signal).catch((error) => {
                // Not worth another try: told as it is.
                if (isDiskFull(error)) throw new Error(describeError(error));
                throw error;
              }),
            ctx.signal,
          ),
        ctx.signal,
      );
    } catch (error) {
      if (ctx.signal.aborted) return;
      const refusal = writeRefusal(error, ctx.remote.host);
      if (refusal !== undefined) {
        ctx.stopRun(refusal);
        return;
      }
      for (const job of jobs) ctx.fail(job.label, describeError(error));
      return;
    }
    for (let i = 0; i < jobs.length; i++) {
      const job = jobs[i];
      const result = results[i];
      if (result === undefined || result.path !== job.under) {
        ctx.fail(
          job.label,
          `The server's answer to a bundle does not name "${job.under}"`,
        );
      } else if ("error" in result) {
        ctx.fail(job.label, result.message || result.error);
      } else if (result.size !== job.size) {
        ctx.fail(
          job.label,
          `The server wrote ${result.size} bytes of "${job.label}" instead of ${job.size}`,
        );
      } else {
        ctx.emit({ type: "progress", bytes: job.size });
        ctx.sent(job);
      }
    }
  }
}

/** Bytes a file takes in a bundle request: its frame header (a bound) and its data. */
function frameCost(job: SendJob): number {
  return 4 + 160 + encoder.encode(job.under).length + job.size;
}

/**
 * The whole content of a small file, read ahead or now through a
 * descriptor proven to be its inode (see {@linkcode readSmallLocal}), with
 * `job` described as that content is. Undefined (and `job` described as it
 * is now) when it grew past {@linkcode SMALL_FILE_BYTES}.
 */
function readWhole(
  job: SendJob,
  ahead: LocalPrefetch | undefined,
): Uint8Array | undefined {
  const got = ahead?.file(job.local, job.id) ??
    readSmallLocal(job.local, job.id, SMALL_FILE_BYTES);
  if (got.kind === "changing") {
    throw new Error(`"${job.label}" kept changing while it was read: not sent`);
  }
  describeLocal(job, got.info);
  return got.kind === "read" ? got.data : undefined;
}
