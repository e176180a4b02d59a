/** The pull engine: lists a remote file or tree, skips what is identical, and fetches the rest in parallel without ever placing a partial file. */
import { dirname, join, posix } from "node:path";
import picomatch from "picomatch";
import { decodeFrames } from "./bundle_codec.ts";
import { type ByteRange, planChunks } from "./chunk_plan.ts";
import type { ClientSettings } from "./config.ts";
import { ConnectError, HttpError } from "./errors.ts";
import { PART_SUFFIX, RangeSet } from "./journal.ts";
import { Limiter } from "./limiter.ts";
import {
  ensureDirs,
  LocalPathError,
  reason,
  safeComponents,
} from "./local_path.ts";
import { type Exchange, Remote, TimeoutError } from "./remote.ts";
import type { ListEntry, StatEntry } from "./wire.ts";

/** What the engine reports while it runs (fed to a progress reporter). */
export type PullEvent =
  /** Files and bytes planned for transfer so far (skipped files excluded); `final` once the listing is complete. */
  | { type: "total"; files: number; bytes: number; final: boolean }
  /** Bytes written to disk since the last event (negative when a changed file starts over). */
  | { type: "progress"; bytes: number }
  /** A file was completed and renamed into place. */
  | { type: "done"; path: string; bytes: number }
  /** A file was identical and left alone. */
  | { type: "skip"; path: string; bytes: number }
  /** Something the user should know that is not a failure. */
  | { type: "warning"; path?: string; message: string }
  /** A file failed; the rest goes on. */
  | { type: "failure"; path: string; message: string };

/** Options of {@linkcode pull}. */
export interface PullOptions {
  /** `http://127.0.0.1:10808`. */
  baseUrl: string;
  /** Absolute path on the server. */
  remotePath: string;
  /**
   * Destination. Ending in `/`: the remote entry goes inside it under its
   * base name. Otherwise a remote file goes inside it when it is an existing
   * directory, else gets this name; a remote directory is copied to this
   * path (created or merged into), so reruns are idempotent — unless
   * `scpPlacement` is set.
   */
  localPath: string;
  /** scp's rule for directories too: an existing destination directory gets the remote directory inside it. */
  scpPlacement?: boolean;
  settings: ClientSettings;
  /** Files in progress at once (`-n`). */
  parallelFiles: number;
  /** Globs on the relative path (a pattern without `/` matches the name at any depth). */
  include?: string[];
  /** Globs on the relative path; an excluded directory excludes everything below it. */
  exclude?: string[];
  /** Also copy permission bits (mtime is always copied). */
  preserve?: boolean;
  onEvent?: (event: PullEvent) => void;
  /** Stops cleanly when aborted, keeping `.hsync-part` files. */
  signal?: AbortSignal;
  client?: Deno.HttpClient;
  /** Called on every request before it is sent. */
  sign?: (request: Request) => Promise<void> | void;
  /** First retry delay in milliseconds (doubles per retry, with jitter); default 250. */
  retryBaseMs?: number;
}

/** What a pull did. */
export interface PullSummary {
  /** Files completed (written and renamed into place). */
  files: number;
  /** Bytes of the completed files. */
  bytes: number;
  seconds: number;
  skipped: number;
  failed: number;
  failures: Array<{ path: string; message: string }>;
}

/** Files up to this size go through `POST /v1/bundle` (the server's own limit is 1 MiB). */
export const SMALL_FILE_BYTES = 256 * 1024;
/** Most files in one bundle request (the server accepts 10,000). */
export const BUNDLE_MAX_FILES = 1000;
/** Most data bytes asked for in one bundle request. */
export const BUNDLE_MAX_BYTES = 8 * 1024 * 1024;
/** Bundle requests in flight at most (also bounded by the request limit). */
export const BUNDLE_SLOTS = 4;
/** How often a range transfer reports its progress (milliseconds). */
const POLL_MS = 200;
/** How many times a file that keeps changing on the server is started over. */
const MAX_RESTARTS = 3;

/**
 * Pulls `remotePath` into `localPath`. Throws `ConnectError` when the server
 * cannot be reached or refuses the root, and an `Error` naming the path when
 * the destination cannot be created; per-file failures are counted in the
 * summary instead.
 */
export async function pull(options: PullOptions): Promise<PullSummary> {
  return await new PullRun(options).execute();
}

/** One remote file to fetch, and where it goes. */
interface FileJob {
  /** Path relative to the pulled root (for messages and filters). */
  rel: string;
  /** Absolute path on the server. */
  remote: string;
  /** Final local path. */
  target: string;
  size: number;
  mtime: number;
  mode: number;
  etag: string;
}

/**
 * In-memory transfer state of one file: the remote identity and the byte
 * ranges known to be on disk in its `.hsync-part` (what a resume journal
 * will persist).
 */
interface FileState {
  job: FileJob;
  part: string;
  done: RangeSet;
}

/** The remote file changed under us (200 to a ranged request, 416, other size): start it over. */
class FileChanged extends Error {
  constructor(path: string) {
    super(`File "${path}" changed on the server`);
    this.name = "FileChanged";
  }
}

/** The server answered something that does not fit the request; retrying will not help. */
class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}

/** A body ended before every asked byte arrived (retried from the last byte). */
class ShortBody extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ShortBody";
  }
}

class PullRun {
  readonly #o: PullOptions;
  readonly #remote: Remote;
  readonly #requests: Limiter;
  readonly #files: Limiter;
  readonly #batches: Limiter;
  readonly #signal: AbortSignal;
  readonly #tasks = new Set<Promise<void>>();
  readonly #verified = new Set<string>();
  /** Directories this run created: nothing in them needs comparing. */
  readonly #created = new Set<string>();
  /** Targets being written now: a second entry for one of them is refused. */
  readonly #busy = new Set<string>();
  readonly #dirs: Array<{ path: string; mtime: number; mode: number }> = [];
  readonly #include?: (path: string) => boolean;
  readonly #exclude?: (path: string) => boolean;
  readonly #summary: PullSummary = {
    files: 0,
    bytes: 0,
    seconds: 0,
    skipped: 0,
    failed: 0,
    failures: [],
  };
  #plannedFiles = 0;
  #plannedBytes = 0;
  #batch: FileJob[] = [];
  #batchBytes = 0;
  #batchesSent = 0;

  constructor(options: PullOptions) {
    this.#o = options;
    const s = options.settings;
    this.#remote = new Remote({
      baseUrl: options.baseUrl,
      client: options.client,
      sign: options.sign,
      idleTimeoutMs: s.dataTimeout * 1000,
    });
    const requestLimit = Math.max(1, Math.min(s.maxRuning, s.maxTcpConn));
    this.#requests = new Limiter(requestLimit);
    this.#files = new Limiter(Math.max(1, options.parallelFiles));
    this.#batches = new Limiter(Math.min(BUNDLE_SLOTS, requestLimit));
    this.#signal = options.signal ?? new AbortController().signal;
    const globs = { dot: true, basename: true };
    if (options.include?.length) {
      this.#include = picomatch(options.include, globs);
    }
    if (options.exclude?.length) {
      this.#exclude = picomatch(options.exclude, globs);
    }
  }

  async execute(): Promise<PullSummary> {
    const started = performance.now();
    const { remotePath, localPath } = this.#o;
    let root: StatEntry;
    try {
      root = await this.#remote.stat(remotePath, this.#signal);
    } catch (error) {
      throw this.#rootError(error);
    }
    const base = posix.basename(remotePath);
    // A file goes into an existing directory (cp, scp). A directory goes into
    // a path ending in "/", otherwise that path is its copy: the same command
    // run twice syncs the same tree instead of nesting a second copy.
    const into = localPath.endsWith("/") ||
      ((root.type === "file" || this.#o.scpPlacement === true) &&
        isDirectory(localPath));
    const dest = into && base !== "" ? join(localPath, base) : localPath;
    try {
      if (root.type === "dir") await this.#pullTree(root, dest);
      else await this.#pullOne(root, base, dest);
      await this.#drain();
      if (!this.#signal.aborted) await this.#finishDirs();
    } finally {
      // On an unexpected throw, still let running transfers stop before returning.
      await this.#drain();
    }
    this.#summary.seconds = (performance.now() - started) / 1000;
    return this.#summary;
  }

  // ------------------------------------------------------------ planning

  async #pullOne(root: StatEntry, base: string, dest: string): Promise<void> {
    const parent = dirname(dest);
    try {
      Deno.mkdirSync(parent, { recursive: true });
    } catch (error) {
      throw new LocalPathError(parent, reason(error), error);
    }
    const job: FileJob = {
      rel: base || dest,
      remote: this.#o.remotePath,
      target: dest,
      size: root.size,
      mtime: root.mtime,
      mode: root.mode,
      etag: root.etag,
    };
    if (this.#isIdentical(job)) return;
    this.#addTotal(1, job.size);
    this.#busy.add(job.target);
    // The destination itself cannot be written: that is the run failing, not one file of many.
    await this.#fetchFile(job, true);
  }

  async #pullTree(root: StatEntry, dest: string): Promise<void> {
    try {
      const existed = isDirectory(dest);
      Deno.mkdirSync(dest, { recursive: true });
      if (!existed) this.#created.add(dest);
      if (!Deno.statSync(dest).isDirectory) {
        throw new LocalPathError(dest, "it exists and is not a directory");
      }
    } catch (error) {
      if (error instanceof LocalPathError) throw error;
      throw new LocalPathError(dest, reason(error), error);
    }
    this.#dirs.push({ path: dest, mtime: root.mtime, mode: root.mode });
    const listing = this.#remote.list(this.#o.remotePath, this.#signal);
    let first = true;
    try {
      for await (const entry of listing) {
        first = false;
        if (this.#signal.aborted) break;
        await this.#plan(entry, dest);
      }
      if (this.#batch.length > 0 && !this.#signal.aborted) {
        await this.#sendBatch();
      }
    } catch (error) {
      if (this.#signal.aborted) return;
      if (first) throw this.#rootError(error);
      this.#fail("(listing)", `Listing stopped early: ${message(error)}`);
    } finally {
      this.#emit({
        type: "total",
        files: this.#plannedFiles,
        bytes: this.#plannedBytes,
        final: true,
      });
    }
  }

  async #plan(entry: ListEntry, dest: string): Promise<void> {
    let parts: string[];
    try {
      parts = safeComponents(entry.path);
    } catch (error) {
      this.#fail(entry.path, message(error));
      return;
    }
    if (!this.#wanted(entry.path, parts)) return;
    if (entry.type === "dir") {
      try {
        const path = ensureDirs(dest, parts, this.#verified, this.#created);
        this.#dirs.push({ path, mtime: entry.mtime, mode: entry.mode });
      } catch (error) {
        this.#fail(entry.path, message(error));
      }
      return;
    }
    const job: FileJob = {
      rel: entry.path,
      remote: posix.join(this.#o.remotePath, entry.path),
      target: join(dest, ...parts),
      size: entry.size,
      mtime: entry.mtime,
      mode: entry.mode,
      etag: entry.etag,
    };
    let parent: string;
    try {
      parent = ensureDirs(
        dest,
        parts.slice(0, -1),
        this.#verified,
        this.#created,
      );
    } catch (error) {
      this.#fail(entry.path, message(error));
      return;
    }
    if (this.#busy.has(job.target)) {
      this.#fail(entry.path, "The server listed this path twice");
      return;
    }
    // A failed lstat costs about 50 us (it builds an error): skip it where
    // nothing can exist yet.
    if (!this.#created.has(parent) && this.#isIdentical(job)) return;
    this.#addTotal(1, job.size);
    this.#busy.add(job.target);
    if (job.size === 0) {
      this.#writeWhole(job, new Uint8Array(0), job.mtime, job.mode);
      return;
    }
    if (job.size <= SMALL_FILE_BYTES) {
      this.#batch.push(job);
      this.#batchBytes += job.size;
      // Small first batches get the pipeline going while the listing streams.
      const maxFiles = Math.min(BUNDLE_MAX_FILES, 64 << this.#batchesSent);
      if (
        this.#batch.length >= maxFiles || this.#batchBytes >= BUNDLE_MAX_BYTES
      ) await this.#sendBatch();
      return;
    }
    // Waiting here is the backpressure on the listing.
    const release = await this.#files.acquire(this.#signal);
    this.#spawn(this.#fetchFile(job).finally(release));
  }

  #wanted(rel: string, parts: string[]): boolean {
    if (this.#include === undefined && this.#exclude === undefined) {
      return true;
    }
    // A match on any enclosing directory counts, so `--exclude build` drops build/**.
    const prefixes: string[] = [];
    for (let i = 1; i < parts.length; i++) {
      prefixes.push(parts.slice(0, i).join("/"));
    }
    prefixes.push(rel);
    const exclude = this.#exclude;
    if (exclude !== undefined && prefixes.some((p) => exclude(p))) {
      return false;
    }
    const include = this.#include;
    if (include === undefined) return true;
    return prefixes.some((p) => include(p));
  }

  /** Size and mtime (ms) equal: leave the file alone (and fix its mode with `preserve`). */
  #isIdentical(job: FileJob): boolean {
    let info: Deno.FileInfo;
    try {
      info = Deno.lstatSync(job.target);
    } catch {
      return false;
    }
    if (
      !info.isFile || info.size !== job.size ||
      info.mtime?.getTime() !== Math.trunc(job.mtime)
    ) return false;
    if (
      this.#o.preserve && ((info.mode ?? 0) & 0o7777) !== (job.mode & 0o7777)
    ) {
      try {
        Deno.chmodSync(job.target, job.mode & 0o7777);
      } catch {
        return false;
      }
    }
    this.#summary.skipped++;
    this.#emit({ type: "skip", path: job.rel, bytes: job.size });
    return true;
  }

  #addTotal(files: number, bytes: number): void {
    this.#plannedFiles += files;
    this.#plannedBytes += bytes;
    this.#emit({
      type: "total",
      files: this.#plannedFiles,
      bytes: this.#plannedBytes,
      final: false,
    });
  }

  // ------------------------------------------------------------ small files

  async #sendBatch(): Promise<void> {
    const batch = this.#batch;
    this.#batch = [];
    this.#batchBytes = 0;
    this.#batchesSent++;
    const release = await this.#batches.acquire(this.#signal);
    this.#spawn(this.#runBatch(batch).finally(release));
  }

  async #runBatch(batch: FileJob[]): Promise<void> {
    const pending = new Map(batch.map((job) => [job.rel, job]));
    const retry: FileJob[] = [];
    const release = await this.#requests.acquire(this.#signal);
    let ex: Exchange | undefined;
    try {
      ex = await this.#remote.bundle(
        this.#o.remotePath,
        [...pending.keys()],
        this.#signal,
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
        // The frame is a consistent snapshot: its size and mtime go with its bytes.
        job.size = h.size;
        this.#writeWhole(job, frame.data, h.mtime, h.mode);
      }
    } catch (error) {
      if (this.#signal.aborted) {
        for (const job of pending.values()) this.#busy.delete(job.target);
        return;
      }
      // Whatever did not arrive is fetched one by one below.
      void error;
    } finally {
      ex?.done();
      release();
    }
    retry.push(...pending.values());
    for (const job of retry) {
      if (this.#signal.aborted) {
        this.#busy.delete(job.target);
        continue;
      }
      await this.#fetchFile(job);
    }
  }

  /**
   * Writes a whole small file: part file, mtime (and mode), rename. Synchronous
   * on purpose: measured here, file creation dominates and the async ops only
   * add a thread-pool round trip per call (0.6 ms vs 1 ms per file).
   */
  #writeWhole(
    job: FileJob,
    data: Uint8Array,
    mtime: number,
    mode: number,
  ): void {
    const part = job.target + PART_SUFFIX;
    try {
      try {
        Deno.writeFileSync(part, data, { createNew: true });
      } catch (error) {
        if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
        // A leftover part file (or a planted link): remove the entry itself, never follow it.
        Deno.removeSync(part);
        Deno.writeFileSync(part, data, { createNew: true });
      }
      Deno.utimeSync(part, new Date(), new Date(mtime));
      if (this.#o.preserve) Deno.chmodSync(part, mode & 0o7777);
      Deno.renameSync(part, job.target);
    } catch (error) {
      this.#busy.delete(job.target);
      this.#fail(
        job.rel,
        new LocalPathError(job.target, reason(error)).message,
      );
      return;
    }
    this.#busy.delete(job.target);
    this.#summary.files++;
    this.#summary.bytes += data.length;
    this.#emit({ type: "progress", bytes: data.length });
    this.#emit({ type: "done", path: job.rel, bytes: data.length });
  }

  // ------------------------------------------------------------ ranged files

  /** Fetches one file in ranges; a failure is counted, never thrown (except local ones with `throwLocal`). */
  async #fetchFile(job: FileJob, throwLocal = false): Promise<void> {
    let restarts = 0;
    try {
      while (true) {
        try {
          await this.#fetchRanges(job);
          await this.#place(job);
          return;
        } catch (error) {
          if (!(error instanceof FileChanged) || restarts >= MAX_RESTARTS) {
            throw error instanceof FileChanged
              ? new Error(`${error.message} ${MAX_RESTARTS + 1} times`)
              : error;
          }
          restarts++;
          this.#emit({
            type: "warning",
            path: job.rel,
            message: `${error.message}, starting over`,
          });
          const st = await this.#remote.stat(job.remote, this.#signal);
          if (st.type !== "file") {
            throw new ProtocolError(`"${job.rel}" is no longer a file`);
          }
          this.#addTotal(0, st.size - job.size);
          Object.assign(job, {
            size: st.size,
            mtime: st.mtime,
            mode: st.mode,
            etag: st.etag,
          });
        }
      }
    } catch (error) {
      if (this.#signal.aborted) return;
      if (throwLocal && error instanceof LocalPathError) throw error;
      this.#fail(job.rel, message(error));
    } finally {
      this.#busy.delete(job.target);
    }
  }

  async #fetchRanges(job: FileJob): Promise<void> {
    const state: FileState = {
      job,
      part: job.target + PART_SUFFIX,
      done: new RangeSet(),
    };
    await createPart(state.part, job.size);
    const ranges = planChunks(job.size, {
      maxParts: this.#o.settings.maxPartNum,
      minPartSize: this.#o.settings.minPartSize,
    });
    const controller = new AbortController();
    const onAbort = () => controller.abort(this.#signal.reason);
    this.#signal.addEventListener("abort", onAbort, { once: true });
    let failed = false;
    let first: unknown;
    try {
      // Every range settles before the file is retried or failed: none may still write.
      await Promise.all(
        ranges.map((range) =>
          this.#fetchRange(state, range, controller.signal).catch((error) => {
            if (failed) return;
            failed = true;
            first = error;
            controller.abort(error);
          })
        ),
      );
    } finally {
      this.#signal.removeEventListener("abort", onAbort);
    }
    if (failed) {
      if (first instanceof FileChanged) {
        this.#emit({ type: "progress", bytes: -state.done.covered });
      }
      throw first;
    }
    if (!state.done.isComplete(job.size)) {
      throw new ShortBody(`Missing bytes of "${job.rel}" after every range`);
    }
  }

  async #fetchRange(
    state: FileState,
    range: ByteRange,
    signal: AbortSignal,
  ): Promise<void> {
    const cursor = { pos: range.start };
    let attempt = 0;
    const base = this.#o.retryBaseMs ?? 250;
    while (cursor.pos < range.end) {
      const before = cursor.pos;
      const release = await this.#requests.acquire(signal);
      let error: unknown;
      try {
        await this.#getRange(state, cursor, range.end, signal);
      } catch (e) {
        error = e;
      } finally {
        release();
      }
      if (error === undefined) continue;
      if (signal.aborted) throw signal.reason;
      if (!isRetryable(error)) throw error;
      // A retry that made progress starts the count again.
      attempt = cursor.pos > before ? 1 : attempt + 1;
      if (attempt > this.#o.settings.maxTimeoutRetry) throw error;
      const delay = base * 2 ** (attempt - 1);
      await sleep(
        Math.min(30_000, delay / 2 + Math.random() * delay / 2),
        signal,
      );
    }
  }

  /** One ranged GET of `[cursor.pos, end)` streamed into the part file; advances `cursor.pos` by what reached the disk. */
  async #getRange(
    state: FileState,
    cursor: { pos: number },
    end: number,
    signal: AbortSignal,
  ): Promise<void> {
    const { job } = state;
    const start = cursor.pos;
    const ex = await this.#remote.file(job.remote, {
      start,
      end,
      ifRange: job.etag,
      signal,
    });
    let consumed = false;
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
      if (cr.start !== start || cr.end !== end - 1) {
        throw new ProtocolError(
          `Server sent bytes ${cr.start}-${cr.end} of "${job.rel}" for ${start}-${
            end - 1
          }`,
        );
      }
      if (res.body === null) {
        throw new ProtocolError(`Range response for "${job.rel}" has no body`);
      }
      let body: ReadableStream<Uint8Array> = res.body;
      const length = res.headers.get("content-length");
      if (length !== null && Number(length) !== end - start) {
        throw new ProtocolError(
          `Range response for "${job.rel}" announces ${length} bytes for ${
            end - start
          }`,
        );
      }
      // With Content-Length the HTTP layer never passes more bytes than that;
      // without it, a limiter refuses to write past the range.
      if (length === null) body = body.pipeThrough(limitBytes(end - start));
      consumed = true;
      let file: Deno.FsFile;
      try {
        file = await Deno.open(state.part, { write: true });
        await file.seek(start, Deno.SeekMode.Start);
      } catch (error) {
        throw new LocalPathError(state.part, reason(error), error);
      }
      let reported = start;
      const account = (pos: number) => {
        if (pos > reported) {
          this.#emit({ type: "progress", bytes: pos - reported });
          reported = pos;
          ex.kick();
        }
      };
      let polling: Promise<void> | undefined;
      const timer = setInterval(() => {
        polling ??= file.seek(0, Deno.SeekMode.Current).then(account, () => {})
          .finally(() => polling = undefined);
      }, POLL_MS);
      let pipeError: unknown;
      try {
        // pipeTo a positioned file handle is the fast path (about 1.4x a
        // counting TransformStream here, flat memory); the file position
        // tells exactly what reached the disk, even after an error.
        await body.pipeTo(file.writable, {
          preventClose: true,
          preventAbort: true,
        });
      } catch (error) {
        pipeError = error;
      } finally {
        clearInterval(timer);
        await polling;
      }
      let pos: number;
      try {
        pos = await file.seek(0, Deno.SeekMode.Current);
      } finally {
        file.close();
      }
      account(pos);
      if (pos > end) {
        throw new ProtocolError(`Server sent too many bytes for "${job.rel}"`);
      }
      state.done.add(start, pos);
      cursor.pos = pos;
      if (pipeError !== undefined) {
        if (ex.signal.aborted) throw ex.signal.reason;
        if (
          pipeError instanceof TypeError || pipeError instanceof ProtocolError
        ) throw pipeError;
        throw new LocalPathError(state.part, reason(pipeError), pipeError);
      }
      if (pos !== end) {
        throw new ShortBody(
          `Body for "${job.rel}" ended at byte ${pos} of ${end}`,
        );
      }
    } finally {
      ex.done();
      if (!consumed) await ex.response.body?.cancel().catch(() => {});
    }
  }

  /** Sets mtime (and mode), then renames the complete part file into place. */
  async #place(job: FileJob): Promise<void> {
    const part = job.target + PART_SUFFIX;
    try {
      await Deno.utime(part, new Date(), new Date(job.mtime));
      if (this.#o.preserve) await Deno.chmod(part, job.mode & 0o7777);
      await Deno.rename(part, job.target);
    } catch (error) {
      throw new LocalPathError(job.target, reason(error), error);
    }
    this.#summary.files++;
    this.#summary.bytes += job.size;
    this.#emit({ type: "done", path: job.rel, bytes: job.size });
  }

  // ------------------------------------------------------------ bookkeeping

  async #finishDirs(): Promise<void> {
    // Deepest first (the listing puts a directory before its contents), so
    // setting a child's times does not change its parent's afterwards.
    for (let i = this.#dirs.length - 1; i >= 0; i--) {
      const d = this.#dirs[i];
      try {
        if (this.#o.preserve) await Deno.chmod(d.path, d.mode & 0o7777);
        await Deno.utime(d.path, new Date(), new Date(d.mtime));
      } catch (error) {
        this.#emit({
          type: "warning",
          path: d.path,
          message: `Cannot set the time of "${d.path}": ${reason(error)}`,
        });
      }
    }
  }

  #spawn(task: Promise<void>): void {
    const tracked: Promise<void> = task.catch((error) => {
      if (!this.#signal.aborted) this.#fail("(internal)", message(error));
    }).finally(() => this.#tasks.delete(tracked));
    this.#tasks.add(tracked);
  }

  async #drain(): Promise<void> {
    while (this.#tasks.size > 0) await Promise.all([...this.#tasks]);
  }

  #fail(path: string, text: string): void {
    this.#summary.failed++;
    this.#summary.failures.push({ path, message: text });
    this.#emit({ type: "failure", path, message: text });
  }

  #emit(event: PullEvent): void {
    this.#o.onEvent?.(event);
  }

  #rootError(error: unknown): unknown {
    if (this.#signal.aborted) return error;
    const p = JSON.stringify(this.#o.remotePath);
    const host = this.#remote.host;
    if (error instanceof HttpError) {
      const status = error.status;
      if (status === 404) {
        return new ConnectError(`Remote path ${p} does not exist on ${host}`, {
          status,
          cause: error,
        });
      }
      if (status === 401) {
        return new ConnectError(
          `Not authenticated by ${host}: ${error.message}`,
          { status, cause: error },
        );
      }
      if (status === 403) {
        return new ConnectError(
          `Remote path ${p} is refused by ${host}: ${error.message}`,
          { status, cause: error },
        );
      }
      return new ConnectError(
        `Cannot read remote path ${p} on ${host}: ${error.message}`,
        { status, cause: error },
      );
    }
    if (error instanceof ConnectError) return error;
    if (error instanceof TimeoutError) {
      return new ConnectError(error.message, { cause: error });
    }
    return new ConnectError(
      `Cannot read remote path ${p} on ${host}: ${message(error)}`,
      { cause: error },
    );
  }
}

/** Creates (or recreates) the part file at its full size; a planted link in its place is removed, not followed. */
async function createPart(part: string, size: number): Promise<void> {
  try {
    await Deno.remove(part).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
    using file = await Deno.open(part, { write: true, createNew: true });
    await file.truncate(size);
  } catch (error) {
    throw new LocalPathError(part, reason(error), error);
  }
}

function isDirectory(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

/** Network trouble, timeouts, short bodies and busy servers are worth a retry; refusals and local errors are not. */
function isRetryable(error: unknown): boolean {
  if (error instanceof HttpError) {
    return error.status >= 500 || error.status === 408 ||
      error.status === 429;
  }
  return error instanceof TimeoutError || error instanceof ConnectError ||
    error instanceof ShortBody || error instanceof TypeError;
}

/** `bytes A-B/SIZE` → numbers; undefined when malformed. */
export function parseContentRange(
  value: string | null,
): { start: number; end: number; size: number } | undefined {
  if (value === null) return undefined;
  const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(value.trim());
  if (m === null) return undefined;
  const [start, end, size] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (start > end || end >= size) return undefined;
  return { start, end, size };
}

/** Passes at most `limit` bytes; one more is an error (so nothing past a range is ever written). */
function limitBytes(limit: number): TransformStream<Uint8Array, Uint8Array> {
  let seen = 0;
  return new TransformStream({
    transform(chunk, controller) {
      seen += chunk.byteLength;
      if (seen > limit) {
        throw new ProtocolError(`Body is longer than the ${limit} bytes asked`);
      }
      controller.enqueue(chunk);
    },
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
