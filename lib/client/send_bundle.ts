/**
 * Small files of a push through `POST /v1/upload/bundle`: many per request
 * (at most 8 MiB of frames), a few requests in flight; the server writes
 * each to a new part file and renames it into place with its mtime and mode.
 */
import { encodeFrames } from "../shared/bundle_codec.ts";
import { describeError } from "../shared/errors.ts";
import { Limiter } from "../shared/limiter.ts";
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
import type { PostsLeft } from "./push_end.ts";

/** Most bytes of frames in one bundle request (the server's limit for a request body). */
export const UPLOAD_BUNDLE_MAX_BYTES = 8 * 1024 * 1024;
/** Most files in one bundle request (far away: see {@linkcode mostFilesPerBundle}). */
export const UPLOAD_BUNDLE_MAX_FILES = 1000;
/**
 * Most files in one bundle request up to a 64 ms round trip. hsyncd writes a
 * bundle once all of it has come (its signature covers the whole body), so
 * the last bundle's files are written while the client has nothing left to
 * do: the smaller it is, the less of the push is not overlapped. 2,000 files
 * of 4 KiB pushed, medians of 10 interleaved runs, 1,000 against 256: 566.5
 * -> 528.5 ms through a 10 ms round trip, 602.5 -> 558.5 through 50 ms
 * (654.5 -> 646.5 in an earlier session); on loopback 539 -> 502 ms and
 * 10,000 files 1310 -> 1235.5 (8 runs). 128 was slower at 50 ms (700 ms):
 * four bundles in flight then carry too few files per round trip.
 */
const NEAR_BUNDLE_FILES = 256;
/** Files in the first bundle: a small first request gets the server going while the walk goes on (doubling up to {@linkcode UPLOAD_BUNDLE_MAX_FILES}). */
const FIRST_BUNDLE_FILES = 64;
/**
 * Bundles read and waiting for a slot at most: the walk reads the next one
 * while all slots are busy, so a bundle goes the moment one is free (2,000
 * files of 4 KiB through a 50 ms round trip: the fifth bundle left 50-90 ms
 * after the first slot was free while its files were read).
 */
const READ_AHEAD = 2;

/** Collects small files into bundles per server directory and sends them a few at a time. */
export class BundleSender {
  readonly #ctx: PushContext;
  readonly #spawn: (task: Promise<void>) => void;
  #root = "";
  #batch: SendJob[] = [];
  #bytes = 0;
  #sent = 0;
  readonly #readAhead = new Limiter(READ_AHEAD);

  readonly #sendAlone: (job: SendJob) => Promise<void>;
  readonly #ahead?: LocalPrefetch;
  readonly #posts?: PostsLeft;

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
      /** Told when each bundle's request is made (lib/client/push_end.ts). */
      posts?: PostsLeft;
    },
  ) {
    this.#ctx = context;
    this.#spawn = options.spawn;
    this.#sendAlone = options.sendAlone;
    this.#ahead = options.ahead;
    this.#posts = options.posts;
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
      mostFilesPerBundle(this.#ctx.remote.trips.pathMs),
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

  /**
   * Reads the batch now and sends it as soon as a bundle slot is free: the
   * walk goes on meanwhile and waits only when {@linkcode READ_AHEAD}
   * bundles read already wait for a slot.
   */
  async #send(): Promise<void> {
    const batch = this.#batch;
    const root = this.#root;
    this.#batch = [];
    this.#bytes = 0;
    this.#sent++;
    const signal = this.#ctx.signal;
    const waiting = await this.#readAhead.acquire(signal);
    let bundle: ReadBundle;
    try {
      bundle = this.#read(batch);
    } catch (error) {
      waiting();
      throw error;
    }
    // Told once its request is made (or it is given up).
    const post = this.#posts?.begin() ?? (() => {});
    this.#spawn((async () => {
      try {
        const release = await this.#ctx.limits.bundles.acquire(signal)
          .finally(waiting);
        try {
          await this.#run(root, bundle, post);
        } finally {
          release();
        }
      } finally {
        post();
      }
    })());
  }

  /** The batch's files read into frames; any that grew too big for a bundle is to be sent alone. */
  #read(batch: SendJob[]): ReadBundle {
    const ctx = this.#ctx;
    const frames: Array<{ header: UploadBundleHeader; data: Uint8Array }> = [];
    const jobs: SendJob[] = [];
    const alone: SendJob[] = [];
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
        alone.push(job);
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
    if (jobs.length === 0) return { jobs, alone };
    frames.push({ header: { end: true }, data: new Uint8Array(0) });
    return { jobs, body: encodeFrames(frames), alone };
  }

  /** Sends a read bundle (`posted` told when its request is made), then the files of it sent alone. */
  async #run(
    root: string,
    bundle: ReadBundle,
    posted: () => void,
  ): Promise<void> {
    if (bundle.body !== undefined) {
      // Files that grew too big for it go after its answer: their requests
      // are the bundle's last then.
      const last = bundle.alone.length === 0 ? posted : () => {};
      await this.#post(root, bundle.jobs, bundle.body, last);
    }
    for (const job of bundle.alone) await this.#sendAlone(job);
  }

  /** Sends the frames `body` of `jobs` (retried while the network or server falters; `posted` told at the first request) and counts each file's outcome. */
  async #post(
    root: string,
    jobs: SendJob[],
    body: Uint8Array,
    posted: () => void,
  ): Promise<void> {
    const ctx = this.#ctx;
    let results;
    try {
      results = await ctx.backoff.retry(
        () =>
          ctx.limits.requests.run(
            () => {
              const answer = ctx.push.bundle(root, body, ctx.signal);
              posted();
              return answer.catch((error) => {
                // Not worth another try: told as it is.
                if (isDiskFull(error)) throw new Error(describeError(error));
                throw error;
              });
            },
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

/** A batch read into frames (`body`, none when no file of it could be read) and the files of it that grew too big for a bundle. */
interface ReadBundle {
  jobs: SendJob[];
  body?: Uint8Array;
  alone: SendJob[];
}

/**
 * Most files in one bundle at a round trip of `pathMs` (unknown: near):
 * {@linkcode NEAR_BUNDLE_FILES}, more far away so that the bundles in flight
 * (four) still carry what the walk reads in a round trip (about 8 files a
 * millisecond), up to {@linkcode UPLOAD_BUNDLE_MAX_FILES}.
 */
export function mostFilesPerBundle(pathMs: number | undefined): number {
  const far = 4 * Math.ceil(pathMs ?? 0);
  return Math.min(UPLOAD_BUNDLE_MAX_FILES, Math.max(NEAR_BUNDLE_FILES, far));
}

/**
 * Bytes a file takes in a bundle request at most: its frame header (a
 * bound: the path's UTF-16 units as JSON, at most 6 bytes each, and the
 * rest) and its data. Counted, not encoded: asked once per file.
 */
function frameCost(job: SendJob): number {
  return 4 + 160 + 6 * job.under.length + job.size;
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
    readSmallLocal(job.local, job, SMALL_FILE_BYTES);
  if (got.kind === "changing") {
    throw new Error(`"${job.label}" kept changing while it was read: not sent`);
  }
  describeLocal(job, got.info);
  return got.kind === "read" ? got.data : undefined;
}
