/**
 * `/v1/bundle`: many small files in one response, as frames in request
 * order (an error frame for a file that cannot be sent), a few read ahead
 * within a byte budget, small ones read synchronously in batches.
 */
import {
  type BundleFrame,
  encodeFrame,
  encodeFrames,
} from "../../shared/bundle_codec.ts";
import { joinBytes } from "../../shared/bytes.ts";
import { HttpError } from "../../shared/errors.ts";
import { etagFor, modeBits, mtimeMs } from "../../shared/file_identity.ts";
import type { Release } from "../../shared/limiter.ts";
import {
  API,
  type BundleHeader,
  type BundleRequest,
} from "../../shared/wire.ts";
import { waitForSlot } from "../admission.ts";
import type { Endpoint, ServerContext } from "../context.ts";
import { errorStatus } from "../error_status.ts";
import { baseHeaders } from "../http.ts";
import { type CheckedPath, newSmallReadCache } from "../jail/path_guard.ts";
import { readJsonBody } from "../request_body.ts";
import { checkRelative, requireFile } from "./_checked.ts";

/** `POST /v1/bundle` with `{root, paths}`: a frame per path, then an end frame. */
export const bundleEndpoint: Endpoint = {
  path: API.bundle,
  methods: ["POST"],
  run: bundle,
};

/**
 * Bytes of frames sent together in one chunk (at least one frame). Each
 * bundle streaming holds about one chunk beside what the connection's write
 * buffer takes. Serving 64 clients at once (bench/memory.ts), hsyncd peaked
 * at 148 MiB of PSS with 256 KiB and 118 MiB with 64 KiB, in the same time;
 * pulling 10,000 files of 4 KiB on loopback took 1.17-1.24 s either way.
 */
const BUNDLE_CHUNK = 64 * 1024;
/** Most paths one synchronous batch looks at (it stops earlier at BUNDLE_CHUNK bytes). */
const QUICK_BATCH = 128;

async function bundle(ctx: ServerContext, request: Request) {
  const body = await readJsonBody(request, ctx.limits.bundleMaxBodyBytes);
  const req = parseBundleRequest(body, ctx.limits.bundleMaxPaths);
  const root = await ctx.guard.check(req.root);
  if (root.type !== "dir") {
    throw new HttpError(
      400,
      "not_a_directory",
      `Cannot bundle from ${JSON.stringify(root.path)}: it is not a directory`,
    );
  }
  // Whether it may wait was checked before its body was read (`admit`);
  // the queues may have filled since. The body's bytes stay counted while
  // it waits and streams (the paths are held until the end).
  const release = await waitForSlot(
    ctx,
    ctx.bundles,
    request,
    "bundle",
    () =>
      new HttpError(
        503,
        "busy",
        "Cannot bundle: the client went away while its bundle waited for a slot",
      ),
  );
  try {
    const headers = baseHeaders("application/octet-stream");
    headers.set("cache-control", "no-store");
    return new Response(bundleStream(ctx, request, root, req.paths, release), {
      headers,
    });
  } catch (error) {
    release();
    throw error;
  }
}

function parseBundleRequest(body: unknown, maxPaths: number): BundleRequest {
  const bad = (why: string) =>
    new HttpError(400, "bad_request", `Invalid bundle request: ${why}`);
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw bad("expected a JSON object with root and paths");
  }
  const { root, paths } = body as Record<string, unknown>;
  if (typeof root !== "string") throw bad("root must be a string");
  if (!Array.isArray(paths) || !paths.every((p) => typeof p === "string")) {
    throw bad("paths must be an array of strings");
  }
  if (paths.length > maxPaths) {
    throw bad(`${paths.length} paths, at most ${maxPaths} are allowed`);
  }
  return { root, paths };
}

/**
 * One frame for one path; never rejects (failures become error frames).
 * `reserve(size)` is awaited exactly once, before the file's bytes are read
 * (with 0 when no bytes will be read), so the stream can bound what it holds.
 */
async function bundleFrame(
  ctx: ServerContext,
  request: Request,
  root: CheckedPath,
  rel: string,
  reserve: (size: number) => Promise<void>,
): Promise<Uint8Array> {
  let reserved = false;
  try {
    checkRelative(rel);
    const checked = await ctx.guard.check(
      root.path === "/" ? `/${rel}` : `${root.path}/${rel}`,
    );
    requireFile(checked);
    const max = ctx.limits.bundleMaxFileBytes;
    const tooLarge = (size: number) =>
      new HttpError(
        413,
        "too_large",
        `Cannot bundle ${
          JSON.stringify(rel)
        }: ${size} bytes is above the bundle limit of ${max}, fetch it with ${API.file}`,
      );
    if (checked.info.size > max) throw tooLarge(checked.info.size);
    reserved = true;
    await reserve(checked.info.size);
    const opened = await ctx.guard.openFile(checked);
    try {
      const info = opened.info;
      if (info.size > max) throw tooLarge(info.size);
      const data = new Uint8Array(info.size);
      let at = 0;
      while (at < data.length) {
        const n = await opened.read(data.subarray(at), at);
        if (n === 0) break;
        at += n;
      }
      if (at < data.length) {
        throw new HttpError(
          409,
          "changed",
          `Cannot bundle ${JSON.stringify(rel)}: it shrank while being read`,
        );
      }
      const header: BundleHeader = {
        path: rel,
        size: data.length,
        mtime: mtimeMs(info),
        mode: modeBits(info),
        etag: etagFor(info),
      };
      return encodeFrame(header, data);
    } finally {
      await opened.close();
    }
  } catch (error) {
    if (!reserved) await reserve(0);
    const { status, body } = errorStatus(error);
    if (status === 500) ctx.reportError(error, request);
    return encodeFrame({ path: rel, error: body.error, message: body.message });
  }
}

/**
 * The read-ahead budget of one bundle response: reservations are granted in
 * path order, each once the bytes held (read, not yet handed to the
 * connection) leave room for it, or when nothing is held (so one file larger
 * than the budget still goes). Granting in order means the frame the stream
 * waits for next is never kept waiting by later ones.
 */
class ReadAheadBudget {
  #limit: number;
  #held = 0;
  #next = 0;
  #waiting = new Map<number, { size: number; grant: () => void }>();

  constructor(limit: number) {
    this.#limit = limit;
  }

  reserve(index: number, size: number): Promise<void> {
    return new Promise((grant) => {
      this.#waiting.set(index, { size, grant });
      this.#pump();
    });
  }

  release(size: number): void {
    this.#held -= size;
    this.#pump();
  }

  #pump(): void {
    while (true) {
      const w = this.#waiting.get(this.#next);
      if (w === undefined) return;
      if (this.#held > 0 && this.#held + w.size > this.#limit) return;
      this.#waiting.delete(this.#next);
      this.#next++;
      this.#held += w.size;
      w.grant();
    }
  }
}

/**
 * Frames in request order, a few files read ahead concurrently; frames that
 * are already read are sent together in one chunk.
 */
function bundleStream(
  ctx: ServerContext,
  request: Request,
  root: CheckedPath,
  paths: string[],
  release: Release,
): ReadableStream<Uint8Array> {
  interface Slot {
    done: Promise<Uint8Array>;
    frame?: Uint8Array;
    /** Bytes reserved in the budget for this frame. */
    reserved: number;
  }
  const ahead: Slot[] = [];
  const budget = new ReadAheadBudget(ctx.limits.bundleReadAheadBytes);
  let next = 0;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    release();
    // Frames still being read complete into the void; their reservations go with the stream.
  };

  function fill(): void {
    while (
      !finished && ahead.length < ctx.limits.bundleReadAhead &&
      next < paths.length
    ) {
      const index = next++;
      const slot: Slot = {
        done: Promise.resolve(new Uint8Array()),
        reserved: 0,
      };
      slot.done = bundleFrame(ctx, request, root, paths[index], (size) => {
        slot.reserved = size;
        return budget.reserve(index, size);
      });
      slot.done.then((frame) => slot.frame = frame);
      ahead.push(slot);
    }
  }

  /** Takes the first slot's frame off the read-ahead (its bytes are now the stream's, one chunk at most). */
  function take(slot: Slot, frame: Uint8Array): Uint8Array {
    budget.release(slot.reserved);
    return frame;
  }

  const cache = newSmallReadCache();
  const prefix = root.path === "/" ? "/" : `${root.path}/`;
  /** Paths before this index passed `checkRelative` (a batch may look further than it reads). */
  let checkedUpTo = 0;
  /**
   * Frames read synchronously while nothing is pending, up to one chunk: for
   * small files the asynchronous open/stat/read/close round trips cost more
   * than the reads themselves. Stops at the first path that needs the long way.
   */
  function quick(): BundleFrame[] {
    const frames: BundleFrame[] = [];
    if (finished || ahead.length > 0 || next >= paths.length) return frames;
    const batch: string[] = [];
    for (let i = next; i < paths.length && batch.length < QUICK_BATCH; i++) {
      if (i >= checkedUpTo) {
        try {
          checkRelative(paths[i]);
        } catch {
          break;
        }
        checkedUpTo = i + 1;
      }
      batch.push(prefix + paths[i]);
    }
    const files = ctx.guard.readSmallBatchSync(
      batch,
      ctx.limits.bundleMaxFileBytes,
      BUNDLE_CHUNK,
      cache,
    );
    for (const got of files) {
      const rel = paths[next];
      // Its turn in the read-ahead order, with nothing held (already read).
      void budget.reserve(next, 0);
      next++;
      frames.push({
        header: {
          path: rel,
          size: got.data.length,
          mtime: mtimeMs(got.info),
          mode: modeBits(got.info),
          etag: etagFor(got.info),
        },
        data: got.data,
      });
    }
    return frames;
  }

  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const fast = quick();
        if (fast.length > 0) {
          // The end frame goes out on a later pull, once this chunk is taken:
          // until then the bundle counts as streaming (bundleJobs).
          controller.enqueue(encodeFrames(fast));
          return;
        }
        fill();
        const first = ahead.shift();
        if (first === undefined) {
          controller.enqueue(encodeFrame({ end: true }));
          controller.close();
          finish();
          return;
        }
        const frames = [take(first, await first.done)];
        let size = frames[0].length;
        fill();
        while (ahead.length > 0 && ahead[0].frame !== undefined) {
          const slot = ahead.shift()!;
          const frame = take(slot, slot.frame!);
          frames.push(frame);
          size += frame.length;
          fill();
          if (size >= BUNDLE_CHUNK) break;
        }
        if (next >= paths.length && ahead.length === 0) {
          frames.push(encodeFrame({ end: true }));
          controller.enqueue(concat(frames));
          controller.close();
          finish();
          return;
        }
        controller.enqueue(concat(frames));
      } catch (error) {
        finish();
        throw error;
      }
    },
    cancel() {
      finish();
    },
  });
}

function concat(parts: Uint8Array[]): Uint8Array {
  return parts.length === 1 ? parts[0] : joinBytes(parts);
}
