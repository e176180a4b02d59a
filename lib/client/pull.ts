/** The pull engine: lists a remote file or tree, skips what is identical, and fetches the rest in parallel, resumably, without ever placing a partial file. */
import { createHash } from "node:crypto";
import { dirname, join, posix } from "node:path";
import picomatch from "picomatch";
import { decodeFrames } from "../shared/bundle_codec.ts";
import {
  type ByteRange,
  parseContentRange,
  planGaps,
} from "../shared/byte_range.ts";
import type { ClientSettings } from "../shared/config.ts";
import {
  encodeJournal,
  type JournalData,
  journalPathFor,
  journalTempPathFor,
  loadJournal,
  partPathFor,
  RangeSet,
  type RemoteIdentity,
  removeJournal,
  replaceJournal,
  sameIdentity,
  saveJournal,
} from "../shared/journal.ts";
import { Limiter } from "../shared/limiter.ts";
import {
  checkName,
  chmodOpened,
  createChecked,
  ensureDirs,
  type FileId,
  fileIdOf,
  isDirectory,
  modeToApply,
  openChecked,
  safeComponents,
} from "./local_path.ts";
import { LocalPathError, reason } from "../shared/errors.ts";
import { ConnectError } from "../shared/errors.ts";
import { type Exchange, Remote, remoteRootError } from "./remote.ts";
import type { HashResult, ListEntry, StatEntry } from "../shared/wire.ts";
import {
  isRetryable,
  message,
  ProtocolError,
  ShortBody,
  sleep,
} from "./retry.ts";

/** What the engine reports while it runs (fed to a progress reporter). */
export type PullEvent =
  /** Files and bytes planned for transfer so far (skipped files excluded); `final` once the listing is complete. */
  | { type: "total"; files: number; bytes: number; final: boolean }
  /**
   * Bytes written to disk since the last event (negative when a changed file
   * starts over or bytes failed verification); `resumed` marks bytes found on
   * disk from an interrupted earlier pull (not a transfer rate).
   */
  | { type: "progress"; bytes: number; resumed?: boolean }
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
  /** Also copy permission bits (mtime is always copied), without setuid, setgid, sticky and write-for-others unless `specialModes`. */
  preserve?: boolean;
  /** With `preserve`: apply setuid, setgid, sticky and write-for-others bits from the server too. */
  specialModes?: boolean;
  /**
   * Most listing entries one run accepts (default {@linkcode DEFAULT_MAX_ENTRIES}):
   * a server listing more stops the run with a `ConnectError`, so an
   * endless listing cannot create endless files.
   */
  maxEntries?: number;
  onEvent?: (event: PullEvent) => void;
  /** Stops cleanly when aborted, keeping `.hsync-part` files. */
  signal?: AbortSignal;
  client?: Deno.HttpClient;
  /** Called on every request before it is sent. */
  sign?: (request: Request) => Promise<void> | void;
  /** First retry delay in milliseconds (doubles per retry, with jitter); default 250. */
  retryBaseMs?: number;
  /**
   * After each file, compare its SHA-256 with the server's (`GET /v1/hash`);
   * parts that differ are fetched once more, then the file fails.
   */
  verify?: boolean;
  /** Decide "identical, skip" by SHA-256 from the server instead of size + mtime. */
  checksum?: boolean;
  /**
   * Keep a resume journal beside each ranged `.hsync-part` (default true).
   * Turning it off (benchmarks only) also turns off resuming.
   */
  journal?: boolean;
  /** Longest time in milliseconds between journal saves while bytes arrive (default 1000). */
  journalIntervalMs?: number;
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
  /** Bytes found on disk from interrupted earlier pulls (not fetched again). */
  resumed?: number;
}

/** Most listing entries one run accepts unless told otherwise (`--max-entries`). */
export const DEFAULT_MAX_ENTRIES = 10_000_000;
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
/** How often the journal saver looks at the bytes written (milliseconds). */
const JOURNAL_TICK_MS = 10;
/** Unsaved bytes that trigger a journal save before the interval ends: at least this... */
const JOURNAL_MIN_BYTES = 1024 * 1024;
/** ...or this fraction of what the journal already holds, so a kill loses a bounded share. */
const JOURNAL_FRACTION = 1 / 64;
/** Bytes per hash request of `--verify`/`--checksum` (bounds the server's work per request). */
export const HASH_SPAN_BYTES = 64 * 1024 * 1024;
/** Bytes per hash request when unflushed ranges are checked on resume (a mismatch costs a refetch of that much). */
const HINT_SPAN_BYTES = 8 * 1024 * 1024;
/** Disk write speed assumed before the first flush is measured (50 MB/s, a slow disk). */
const ASSUMED_FLUSH_BYTES_PER_MS = 50_000;
/** Hash requests in flight at most (the server queues a few and answers 503 beyond). */
const HASH_SLOTS = 4;

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
 * Transfer state of one ranged file: the byte ranges written to its
 * `.hsync-part` (what its journal persists once they are flushed), and the
 * range requests writing now.
 */
interface FileState {
  job: FileJob;
  part: string;
  /** The part file's inode: every handle opened on `part` must be this one. */
  id: FileId;
  journal: string;
  done: RangeSet;
  /** Each request writing now: where it started, and its file handle (whose position says what reached the kernel). */
  writers: Set<{ start: number; file: Deno.FsFile }>;
}

/** The remote identity a journal is made for. */
function identityOf(job: FileJob): RemoteIdentity {
  return { size: job.size, mtime: job.mtime, etag: job.etag };
}

/** The part file cannot be created: the destination itself is unusable. */
class DestinationError extends LocalPathError {}

/** SHA-256 still differs from the server's after the one refetch. */
class VerifyFailed extends Error {
  constructor(message: string) {
    super(message);
    this.name = "VerifyFailed";
  }
}

/** The remote file changed under us (200 to a ranged request, 416, other size): start it over. */
class FileChanged extends Error {
  constructor(path: string) {
    super(`File "${path}" changed on the server`);
    this.name = "FileChanged";
  }
}

class PullRun {
  readonly #o: PullOptions;
  readonly #remote: Remote;
  readonly #requests: Limiter;
  readonly #files: Limiter;
  readonly #batches: Limiter;
  readonly #hashes = new Limiter(HASH_SLOTS);
  /** Local checksum comparisons running at once (`checksum`). */
  readonly #compares = new Limiter(HASH_SLOTS);
  readonly #comparing = new Set<Promise<void>>();
  readonly #journalOn: boolean;
  /** The caller's signal, or a stop of the whole run by {@linkcode PullRun.#stopRun}. */
  readonly #signal: AbortSignal;
  readonly #halt = new AbortController();
  /** Why the run was stopped: a server that cannot be trusted further. */
  #fatal?: Error;
  /** Listing entries received so far (all requests of the run). */
  #entries = 0;
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
    resumed: 0,
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
      onRefuse: (error) => this.#stopRun(error),
    });
    const requestLimit = Math.max(1, Math.min(s.maxRuning, s.maxTcpConn));
    this.#requests = new Limiter(requestLimit);
    this.#files = new Limiter(Math.max(1, options.parallelFiles));
    this.#batches = new Limiter(Math.min(BUNDLE_SLOTS, requestLimit));
    this.#signal = options.signal === undefined
      ? this.#halt.signal
      : AbortSignal.any([options.signal, this.#halt.signal]);
    this.#journalOn = options.journal ?? true;
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
      if (root.type === "dir") await this.#pullTree(dest);
      else await this.#pullOne(root, base, dest);
      await this.#drain();
      if (!this.#signal.aborted) this.#finishDirs();
    } catch (error) {
      throw this.#fatal ?? error;
    } finally {
      // On an unexpected throw, still let running transfers stop before returning.
      await this.#drain();
    }
    if (this.#fatal !== undefined) throw this.#fatal;
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
    const same = this.#o.checksum
      ? await this.#isIdenticalByChecksum(job)
      : this.#isIdentical(job);
    if (same) return;
    this.#addTotal(1, job.size);
    this.#busy.add(job.target);
    // The destination itself cannot be written: that is the run failing, not one file of many.
    await this.#fetchFile(job, { throwLocal: true });
  }

  async #pullTree(dest: string): Promise<void> {
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
    // The destination itself keeps its mode and times: it may be the user's
    // own directory (".", $HOME), which a server must not get to change.
    /** The path of the last entry received: a cut listing resumes after it. */
    let last: string | undefined;
    let attempt = 0;
    try {
      while (true) {
        const received = last;
        const error = await this.#listFrom(last, dest, (path) => last = path);
        if (error === undefined) break;
        if (this.#signal.aborted) return;
        // A cut listing is asked for again from where it stopped; a listing
        // that got further starts the count again.
        attempt = last !== received ? 1 : attempt + 1;
        if (
          !isRetryable(error) || attempt > this.#o.settings.maxTimeoutRetry
        ) {
          if (last === undefined) throw this.#rootError(error);
          this.#fail("(listing)", `Listing stopped early: ${message(error)}`);
          break;
        }
        this.#emit({
          type: "warning",
          message: last === undefined
            ? `Listing from ${this.#remote.host} failed (${
              message(error)
            }); asking again`
            : `Listing from ${this.#remote.host} was cut (${
              message(error)
            }); asking for the rest`,
        });
        await this.#backoff(attempt, this.#signal).catch(() => {});
        if (this.#signal.aborted) return;
      }
      // Checksum comparisons still running may add files to the last batch.
      while (this.#comparing.size > 0) await Promise.all([...this.#comparing]);
      if (this.#batch.length > 0 && !this.#signal.aborted) {
        await this.#sendBatch();
      }
    } catch (error) {
      if (this.#signal.aborted) return;
      if (last === undefined) throw error;
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

  /**
   * Plans every entry of one listing request (after `after`), telling
   * `got` each path received. The listing's own error is returned, not
   * thrown; an error planning an entry is thrown.
   */
  async #listFrom(
    after: string | undefined,
    dest: string,
    got: (path: string) => void,
  ): Promise<unknown> {
    const listing = this.#remote.list(
      this.#o.remotePath,
      this.#signal,
      after,
    )[Symbol.asyncIterator]();
    try {
      while (true) {
        let next: IteratorResult<ListEntry>;
        try {
          next = await listing.next();
        } catch (error) {
          return error;
        }
        if (next.done || this.#signal.aborted) return undefined;
        const max = this.#o.maxEntries ?? DEFAULT_MAX_ENTRIES;
        if (++this.#entries > max) {
          this.#stopRun(
            new ConnectError(
              `Listing of ${
                JSON.stringify(this.#o.remotePath)
              } from ${this.#remote.host} has more than ${max} entries, the most one run accepts (--max-entries)`,
            ),
          );
          return undefined;
        }
        got(next.value.path);
        await this.#plan(next.value, dest);
      }
    } finally {
      await listing.return?.(undefined).catch(() => {});
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
    const fresh = this.#created.has(parent);
    if (this.#o.checksum && !fresh) {
      // Hashing takes a while: a few comparisons run beside the listing.
      this.#busy.add(job.target);
      const release = await this.#compares.acquire(this.#signal);
      const task = (async () => {
        let same: boolean;
        try {
          same = await this.#isIdenticalByChecksum(job);
        } finally {
          release();
        }
        if (same || this.#signal.aborted) this.#busy.delete(job.target);
        else await this.#dispatch(job);
      })();
      const tracked = task.catch(() => {}).finally(() =>
        this.#comparing.delete(tracked)
      );
      this.#comparing.add(tracked);
      this.#spawn(task);
      return;
    }
    if (!fresh && this.#isIdentical(job)) return;
    this.#busy.add(job.target);
    await this.#dispatch(job);
  }

  /** Plans the transfer of a file that is not identical: whole in a bundle when small, else in ranges. */
  async #dispatch(job: FileJob): Promise<void> {
    this.#addTotal(1, job.size);
    if (job.size === 0) {
      this.#writeWhole(job, new Uint8Array(0));
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
    let release;
    try {
      release = await this.#files.acquire(this.#signal);
    } catch (error) {
      this.#busy.delete(job.target);
      throw error;
    }
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
    const mode = this.#modeOf(job);
    if (mode !== undefined && ((info.mode ?? 0) & 0o7777) !== mode) {
      try {
        using file = openChecked(job.target, { expected: fileIdOf(info) });
        chmodOpened(file, job.target, mode);
      } catch {
        return false;
      }
    }
    this.#skipped(job);
    return true;
  }

  /** The permission bits to give a file or directory, undefined without `preserve`. */
  #modeOf(entry: { mode: number }): number | undefined {
    if (!this.#o.preserve) return undefined;
    return modeToApply(entry.mode, this.#o.specialModes);
  }

  /**
   * Same size and the same SHA-256 as the server's (`checksum`): leave the
   * content alone, and give it the remote mtime (and mode) so a later
   * size + mtime comparison agrees. Any doubt means "fetch it".
   */
  async #isIdenticalByChecksum(job: FileJob): Promise<boolean> {
    let info: Deno.FileInfo;
    try {
      info = await Deno.lstat(job.target);
    } catch {
      return false;
    }
    if (!info.isFile || info.size !== job.size) return false;
    try {
      const id = fileIdOf(info);
      const bad = await this.#compareHashes(job, job.target, id);
      if (bad.length > 0) return false;
      using file = openChecked(job.target, { expected: id });
      await file.utime(new Date(), new Date(job.mtime));
      const mode = this.#modeOf(job);
      if (mode !== undefined) chmodOpened(file, job.target, mode);
    } catch {
      return false;
    }
    this.#skipped(job);
    return true;
  }

  #skipped(job: FileJob): void {
    this.#summary.skipped++;
    this.#emit({ type: "skip", path: job.rel, bytes: job.size });
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
    const toVerify: Array<{ job: FileJob; sha256: string; id: FileId }> = [];
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
        // The frame is a consistent snapshot: its identity goes with its bytes.
        Object.assign(job, {
          size: h.size,
          mtime: h.mtime,
          mode: h.mode,
          etag: h.etag,
        });
        if (!this.#o.verify) this.#writeWhole(job, frame.data);
        else {
          const id = this.#writeWhole(job, frame.data, false);
          if (id !== undefined) {
            toVerify.push({ job, sha256: sha256Hex(frame.data), id });
          }
        }
      }
    } catch (error) {
      if (this.#signal.aborted) {
        for (const job of pending.values()) this.#busy.delete(job.target);
        for (const { job } of toVerify) this.#busy.delete(job.target);
        return;
      }
      // Whatever did not arrive is fetched one by one below.
      void error;
    } finally {
      ex?.done();
      release();
    }
    await this.#verifyWhole(toVerify);
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
   * Writes a whole small file: part file, mtime (and mode), and unless
   * `place` is false, the rename into place. Synchronous on purpose:
   * measured here, file creation dominates and the async ops only add a
   * thread-pool round trip per call (0.6 ms vs 1 ms per file). Returns the
   * part file's identity when it worked; a failure is counted.
   */
  #writeWhole(
    job: FileJob,
    data: Uint8Array,
    place = true,
  ): FileId | undefined {
    const part = partPathFor(job.target);
    let id: FileId;
    try {
      let file: Deno.FsFile;
      try {
        file = createChecked(part);
      } catch (error) {
        if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
        // A leftover part file (or a planted link): remove the entry itself,
        // never follow it; a journal of an earlier ranged attempt goes too.
        Deno.removeSync(part);
        removeJournalSync(journalPathFor(job.target));
        file = createChecked(part);
      }
      try {
        let off = 0;
        while (off < data.length) off += file.writeSync(data.subarray(off));
        // Times and mode through the handle: the name may be swapped by now.
        file.utimeSync(new Date(), new Date(job.mtime));
        const mode = this.#modeOf(job);
        if (mode !== undefined) chmodOpened(file, part, mode);
        id = fileIdOf(file.statSync());
      } finally {
        file.close();
      }
    } catch (error) {
      this.#busy.delete(job.target);
      this.#fail(
        job.rel,
        error instanceof LocalPathError
          ? error.message
          : new LocalPathError(job.target, reason(error)).message,
      );
      return undefined;
    }
    this.#emit({ type: "progress", bytes: data.length });
    if (place && !this.#placeWhole(job, id)) return undefined;
    return id;
  }

  /** Renames a complete small part file (the inode `id`) into place. */
  #placeWhole(job: FileJob, id: FileId): boolean {
    const part = partPathFor(job.target);
    try {
      checkName(part, id);
      Deno.renameSync(part, job.target);
    } catch (error) {
      this.#busy.delete(job.target);
      this.#fail(
        job.rel,
        error instanceof LocalPathError
          ? error.message
          : new LocalPathError(job.target, reason(error)).message,
      );
      return false;
    }
    this.#busy.delete(job.target);
    this.#summary.files++;
    this.#summary.bytes += job.size;
    this.#emit({ type: "done", path: job.rel, bytes: job.size });
    return true;
  }

  /**
   * `verify` for small files written from a bundle: the SHA-256 of the bytes
   * written against the server's, a few requests at a time; a match is
   * placed, a mismatch fetched once more on its own.
   */
  async #verifyWhole(
    list: Array<{ job: FileJob; sha256: string; id: FileId }>,
  ): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < list.length) {
        const { job, sha256, id } = list[next++];
        if (this.#signal.aborted) {
          this.#busy.delete(job.target);
          continue;
        }
        let theirs: HashResult;
        try {
          theirs = await this.#hashRemote(job, 0, job.size);
        } catch (error) {
          this.#busy.delete(job.target);
          if (!this.#signal.aborted) this.#fail(job.rel, message(error));
          continue;
        }
        if (theirs.etag === job.etag && theirs.sha256 === sha256) {
          this.#placeWhole(job, id);
          continue;
        }
        const changed = theirs.etag !== job.etag;
        this.#emit({ type: "progress", bytes: -job.size });
        this.#emit({
          type: "warning",
          path: job.rel,
          message: changed
            ? `File "${job.rel}" changed on the server, fetching it again`
            : `SHA-256 of "${job.rel}" differs from the server's: fetching it again`,
        });
        await this.#fetchFile(job, { refetched: !changed });
      }
    };
    await Promise.all(
      Array.from({ length: Math.min(HASH_SLOTS, list.length) }, worker),
    );
  }

  // ------------------------------------------------------------ ranged files

  /**
   * Fetches one file in ranges (resuming from its journal), verifies it when
   * asked, and places it. A failure is counted, never thrown (except an
   * unusable destination with `throwLocal`); `refetched` says the one
   * refetch after a failed verification is used up.
   */
  async #fetchFile(
    job: FileJob,
    options: { throwLocal?: boolean; refetched?: boolean } = {},
  ): Promise<void> {
    let restarts = 0;
    let refetched = options.refetched ?? false;
    try {
      while (true) {
        try {
          const id = await this.#fetchRanges(job);
          if (this.#o.verify) {
            const bad = await this.#compareHashes(
              job,
              partPathFor(job.target),
              id,
            );
            if (bad.length > 0) {
              const what = `SHA-256 of ${
                describeSpans(bad, job.size)
              }"${job.rel}"`;
              if (refetched) {
                await this.#discard(job);
                throw new VerifyFailed(
                  `${what} still differs from the server's after fetching it again: not placed`,
                );
              }
              refetched = true;
              this.#emit({
                type: "warning",
                path: job.rel,
                message: `${what} differs from the server's: fetching it again`,
              });
              await this.#forget(job, bad);
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
          this.#emit({
            type: "warning",
            path: job.rel,
            message: `${error.message}, starting over`,
          });
          await removeJournal(journalPathFor(job.target)).catch(() => {});
          const st = await this.#retry(() =>
            this.#remote.stat(job.remote, this.#signal)
          );
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
      if (options.throwLocal && error instanceof DestinationError) throw error;
      this.#fail(job.rel, message(error));
    } finally {
      this.#busy.delete(job.target);
    }
  }

  /**
   * Makes the part file complete: resumes from the journal when it belongs to
   * the same remote file, else starts over; fetches the missing ranges in
   * parallel while the journal follows what reaches the disk. The journal is
   * saved whatever happens (abort included), except when the file changed.
   * Returns the part file's identity.
   */
  async #fetchRanges(job: FileJob): Promise<FileId> {
    const state: FileState = {
      job,
      part: partPathFor(job.target),
      id: { dev: -1, ino: -1 },
      journal: journalPathFor(job.target),
      done: new RangeSet(),
      writers: new Set(),
    };
    const resumed = this.#journalOn ? await this.#resumable(state) : undefined;
    if (resumed === undefined) state.id = createPart(state.part);
    else {
      state.id = resumed.id;
      state.done = resumed.written;
      const covered = resumed.written.covered;
      if (covered > 0) {
        this.#summary.resumed = (this.#summary.resumed ?? 0) + covered;
        this.#emit({ type: "progress", bytes: covered, resumed: true });
      }
      if (resumed.written.isComplete(job.size)) return state.id;
    }
    let saver: JournalSaver | undefined;
    if (this.#journalOn) {
      saver = JournalSaver.open(state, {
        intervalMs: this.#o.journalIntervalMs ?? 1000,
        flushed: resumed?.flushed,
      });
      if (resumed === undefined) {
        try {
          // Even before the first byte: a journal that claims nothing.
          await saver.write();
        } catch (error) {
          saver.close();
          throw new LocalPathError(state.journal, reason(error), error);
        }
      }
    }
    const ranges = planGaps(
      state.done.gaps(job.size).map(([start, end]) => ({ start, end })),
      {
        maxParts: this.#o.settings.maxPartNum,
        minPartSize: this.#o.settings.minPartSize,
      },
    );
    const controller = new AbortController();
    const onAbort = () => controller.abort(this.#signal.reason);
    this.#signal.addEventListener("abort", onAbort, { once: true });
    let failed = false;
    let first: unknown;
    saver?.start();
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
      await saver?.stop();
    }
    const complete = !failed && state.done.isComplete(job.size);
    if (saver !== undefined) {
      try {
        if (first instanceof FileChanged) {
          await removeJournal(state.journal).catch(() => {});
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
        this.#emit({ type: "progress", bytes: -state.done.covered });
      }
      throw first;
    }
    if (!complete) {
      throw new ShortBody(`Missing bytes of "${job.rel}" after every range`);
    }
    return state.id;
  }

  /**
   * The ranges of an interrupted earlier pull that can be kept: its journal is
   * for this remote identity and its part file is intact. Otherwise
   * undefined (the file starts over), with a warning when the remote file
   * changed in between.
   */
  async #resumable(
    state: FileState,
  ): Promise<
    { flushed: RangeSet; written: RangeSet; id: FileId } | undefined
  > {
    const journal = await loadJournal(state.journal);
    if (journal === undefined) return undefined;
    const { job } = state;
    if (!sameIdentity(journal.remote, identityOf(job))) {
      this.#emit({
        type: "warning",
        path: job.rel,
        message:
          `File "${job.rel}" changed on the server since the interrupted pull, starting over`,
      });
      return undefined;
    }
    let info: Deno.FileInfo;
    try {
      info = await Deno.lstat(state.part);
    } catch {
      return undefined;
    }
    // The part grows only with the bytes written (no size is reserved up
    // front), so it may be shorter than the file; shorter than what the
    // journal claims flushed means someone cut it: nothing in it is trusted.
    const claimedEnd = journal.done.reduce((end, [, b]) => Math.max(end, b), 0);
    if (!info.isFile || info.size > job.size || info.size < claimedEnd) {
      return undefined;
    }
    const id = fileIdOf(info);
    const flushed = new RangeSet(journal.done);
    const written = new RangeSet(journal.done);
    // Written but not flushed: kept when the server's SHA-256 agrees (after
    // a killed process they are intact; after a crash maybe not).
    const unflushed = new RangeSet(journal.unflushed ?? []);
    unflushed.remove(info.size, job.size);
    const spans: Array<[number, number]> = [];
    for (const [a, b] of unflushed.toArray()) {
      for (let s = a; s < b; s += HINT_SPAN_BYTES) {
        spans.push([s, Math.min(b, s + HINT_SPAN_BYTES)]);
      }
    }
    if (spans.length > 0) {
      const good = await this.#matchingSpans(job, state.part, spans, id);
      for (const [a, b] of good) written.add(a, b);
    }
    return { flushed, written, id };
  }

  /** The spans whose SHA-256 in `path` matches the server's; none when the server cannot tell. */
  async #matchingSpans(
    job: FileJob,
    path: string,
    spans: Array<[number, number]>,
    id: FileId,
  ): Promise<Array<[number, number]>> {
    let mine: string[];
    let theirs: HashResult[];
    try {
      [mine, theirs] = await Promise.all([
        hashFile(path, spans, this.#signal, id),
        Promise.all(spans.map(([a, b]) => this.#hashRemote(job, a, b))),
      ]);
    } catch (error) {
      if (this.#signal.aborted) throw error;
      return [];
    }
    const good: Array<[number, number]> = [];
    for (let i = 0; i < spans.length; i++) {
      if (theirs[i].etag !== job.etag) throw new FileChanged(job.rel);
      if (theirs[i].sha256 === mine[i]) good.push(spans[i]);
    }
    return good;
  }

  /** Marks bytes that failed verification as missing, so the next round fetches exactly them. */
  async #forget(job: FileJob, spans: Array<[number, number]>): Promise<void> {
    const path = journalPathFor(job.target);
    const journal = this.#journalOn ? await loadJournal(path) : undefined;
    let removed = 0;
    if (
      journal !== undefined && sameIdentity(journal.remote, identityOf(job))
    ) {
      const done = new RangeSet(journal.done);
      const unflushed = new RangeSet(journal.unflushed ?? []);
      const before = done.covered + unflushed.covered;
      for (const [a, b] of spans) {
        done.remove(a, b);
        unflushed.remove(a, b);
      }
      removed = before - done.covered - unflushed.covered;
      try {
        await saveJournal(path, {
          ...journal,
          done: done.toArray(),
          unflushed: unflushed.toArray(),
        });
      } catch (error) {
        throw new LocalPathError(path, reason(error), error);
      }
    } else {
      // No journal to amend: the whole file is fetched again.
      removed = job.size;
      await this.#discard(job);
    }
    this.#emit({ type: "progress", bytes: -removed });
  }

  /** Removes a file's part and journal (their bytes cannot be trusted). */
  async #discard(job: FileJob): Promise<void> {
    await removeJournal(journalPathFor(job.target)).catch(() => {});
    await Deno.remove(partPathFor(job.target)).catch(() => {});
  }

  async #fetchRange(
    state: FileState,
    range: ByteRange,
    signal: AbortSignal,
  ): Promise<void> {
    const cursor = { pos: range.start };
    let attempt = 0;
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
      await this.#backoff(attempt, signal);
    }
  }

  /** Runs `task` again after retryable errors, with backoff, up to `Max_timeout_retry` times. */
  async #retry<T>(task: () => Promise<T>): Promise<T> {
    for (let attempt = 1;; attempt++) {
      try {
        return await task();
      } catch (error) {
        if (this.#signal.aborted) throw error;
        if (
          !isRetryable(error) || attempt > this.#o.settings.maxTimeoutRetry
        ) throw error;
        await this.#backoff(attempt, this.#signal);
      }
    }
  }

  /** Exponential backoff with jitter: half to all of `base * 2^(attempt-1)`, at most 30 s. */
  #backoff(attempt: number, signal: AbortSignal): Promise<void> {
    const delay = (this.#o.retryBaseMs ?? 250) * 2 ** (attempt - 1);
    return sleep(
      Math.min(30_000, delay / 2 + Math.random() * delay / 2),
      signal,
    );
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
      if (cr.range.start !== start || cr.range.end !== end) {
        throw new ProtocolError(
          `Server sent bytes ${cr.range.start}-${
            cr.range.end - 1
          } of "${job.rel}" for ${start}-${end - 1}`,
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
      // A positioned write: the part grows only with bytes that arrive.
      // The handle must be the part this run made (or resumed), whatever
      // was planted at its name since: a link is never written through.
      const file = openChecked(state.part, { write: true, expected: state.id });
      try {
        await file.seek(start, Deno.SeekMode.Start);
      } catch (error) {
        file.close();
        throw new LocalPathError(state.part, reason(error), error);
      }
      consumed = true;
      const writer = { start, file };
      state.writers.add(writer);
      let reported = start;
      const account = (pos: number) => {
        if (pos > reported) {
          state.done.add(start, pos);
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
        state.writers.delete(writer);
        file.close();
      }
      if (pos > end) {
        throw new ProtocolError(`Server sent too many bytes for "${job.rel}"`);
      }
      account(pos);
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

  /** Sets mtime (and mode) of the complete part file `id` through a handle, then renames it into place. */
  async #place(job: FileJob, id: FileId): Promise<void> {
    const part = partPathFor(job.target);
    try {
      {
        using file = openChecked(part, { expected: id });
        await file.utime(new Date(), new Date(job.mtime));
        const mode = this.#modeOf(job);
        if (mode !== undefined) chmodOpened(file, part, mode);
      }
      // The journal goes first: a crash in between costs a refetch, never a
      // journal left beside a final file.
      if (this.#journalOn) await removeJournal(journalPathFor(job.target));
      checkName(part, id);
      await Deno.rename(part, job.target);
    } catch (error) {
      if (error instanceof LocalPathError) throw error;
      throw new LocalPathError(job.target, reason(error), error);
    }
    this.#summary.files++;
    this.#summary.bytes += job.size;
    this.#emit({ type: "done", path: job.rel, bytes: job.size });
  }

  // ------------------------------------------------------------ hashes

  /**
   * Compares the SHA-256 of a local file with the server's, span by span
   * ({@linkcode HASH_SPAN_BYTES} each, so no request makes the server hash
   * more than that); returns the spans that differ. Throws `FileChanged`
   * when the server hashed another identity than `job`'s.
   */
  async #compareHashes(
    job: FileJob,
    path: string,
    id: FileId,
  ): Promise<Array<[number, number]>> {
    const spans = hashSpans(job.size);
    const [mine, theirs] = await Promise.all([
      hashFile(path, spans, this.#signal, id),
      Promise.all(
        spans.map(([a, b]) => this.#hashRemote(job, a, b)),
      ),
    ]);
    const bad: Array<[number, number]> = [];
    for (let i = 0; i < spans.length; i++) {
      if (theirs[i].etag !== job.etag) throw new FileChanged(job.rel);
      if (theirs[i].sha256 !== mine[i]) bad.push(spans[i]);
    }
    return bad;
  }

  /**
   * `GET /v1/hash` of `[start, end)`, a few at a time; busy answers (503)
   * are retried with backoff. The span is always given, also for a whole
   * file: hsyncd hashes at most 64 MiB per request, and a file that grew
   * past that must come back as changed (its etag), not as refused.
   */
  async #hashRemote(
    job: FileJob,
    start: number,
    end: number,
  ): Promise<HashResult> {
    try {
      return await this.#retry(() =>
        this.#hashes.run(
          () =>
            this.#remote.hash(job.remote, {
              offset: start,
              length: end - start,
              signal: this.#signal,
            }),
          this.#signal,
        )
      );
    } catch (error) {
      if (this.#signal.aborted) throw error;
      throw new Error(
        `Cannot get the SHA-256 of "${job.rel}" from the server: ${
          message(error)
        }`,
        { cause: error },
      );
    }
  }

  // ------------------------------------------------------------ bookkeeping

  #finishDirs(): void {
    // Deepest first (the listing puts a directory before its contents), so
    // setting a child's times does not change its parent's afterwards.
    for (let i = this.#dirs.length - 1; i >= 0; i--) {
      const d = this.#dirs[i];
      try {
        setDirMeta(d.path, d.mtime, this.#modeOf(d));
      } catch (error) {
        this.#emit({
          type: "warning",
          path: d.path,
          message: `Cannot set the time of "${d.path}": ${reason(error)}`,
        });
      }
    }
  }

  /** Stops the whole run for a server that cannot be trusted further; {@linkcode pull} then throws `error`. */
  #stopRun(error: Error): void {
    if (this.#fatal !== undefined) return;
    this.#fatal = error;
    this.#halt.abort(error);
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
    return remoteRootError(
      error,
      this.#o.remotePath,
      this.#remote.host,
      "read",
    );
  }
}

/**
 * Creates (or recreates) an empty part file and returns its identity; a
 * planted link in its place is removed, not followed. No size is reserved:
 * a server announcing 10 TiB gets a part file only as big as what it sends.
 */
function createPart(part: string): FileId {
  try {
    try {
      Deno.removeSync(part);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    using file = createChecked(part);
    return fileIdOf(file.statSync());
  } catch (error) {
    throw new DestinationError(part, reason(error), error);
  }
}

/**
 * Sets a directory's mtime (and mode) through a handle checked against its
 * name, so a link swapped in is not followed. A directory that cannot be
 * opened (no read permission) is checked by `lstat` and set by name.
 */
function setDirMeta(path: string, mtime: number, mode?: number): void {
  let file: Deno.FsFile;
  try {
    file = openChecked(path, { dir: true });
  } catch (error) {
    if (
      !(error instanceof LocalPathError) ||
      !(error.cause instanceof Deno.errors.PermissionDenied)
    ) throw error;
    const info = Deno.lstatSync(path);
    if (!info.isDirectory) throw error;
    if (mode !== undefined) Deno.chmodSync(path, mode);
    Deno.utimeSync(path, new Date(), new Date(mtime));
    return;
  }
  try {
    if (mode !== undefined) chmodOpened(file, path, mode);
    file.utimeSync(new Date(), new Date(mtime));
  } finally {
    file.close();
  }
}

/**
 * Keeps the journal of one file while its ranges are written. Every tick it
 * reads how far each request has written; the journal records those bytes as
 * unflushed at least every interval (sooner once many are unsaved, so a kill
 * loses a bounded share of what arrived). At most once an interval it flushes
 * the part file (fdatasync) and only then claims what was written before the
 * flush. A flush that would outlast the rest of the transfer is not started:
 * waiting for the disk would only delay the end, and the unflushed ranges are
 * checked by SHA-256 if a resume ever needs them.
 */
class JournalSaver {
  readonly #state: FileState;
  readonly #file: Deno.FsFile;
  readonly #intervalMs: number;
  /** Claimed: flushed to disk. */
  #flushed: RangeSet;
  #timer?: ReturnType<typeof setInterval>;
  #ticking?: Promise<void>;
  #flushing?: Promise<void>;
  #writing: Promise<void> = Promise.resolve();
  /** The journal as last replaced, open for saves in place, and its length. */
  #inPlace?: { file: Deno.FsFile; length: number };
  #savedWritten: number;
  #savedAt = performance.now();
  #flushedAt = performance.now();
  /** Bytes per millisecond of the last flush (a slow disk's rate before one). */
  #flushRate = ASSUMED_FLUSH_BYTES_PER_MS;
  readonly #startedAt = performance.now();
  readonly #startCovered: number;
  #closed = false;

  private constructor(
    state: FileState,
    file: Deno.FsFile,
    intervalMs: number,
    flushed: RangeSet,
  ) {
    this.#state = state;
    this.#file = file;
    this.#intervalMs = intervalMs;
    this.#flushed = flushed;
    this.#savedWritten = state.done.covered;
    this.#startCovered = state.done.covered;
  }

  /** Opens the part file for flushing; `flushed` are the ranges already known to be flushed. */
  static open(
    state: FileState,
    options: { intervalMs: number; flushed?: RangeSet },
  ): JournalSaver {
    const file = openChecked(state.part, { expected: state.id });
    return new JournalSaver(
      state,
      file,
      options.intervalMs,
      options.flushed ?? new RangeSet(),
    );
  }

  /** Starts saving in the background. */
  start(): void {
    this.#timer = setInterval(() => {
      this.#ticking ??= this.#tick().catch(() => {
        // A failed save leaves the previous journal, which is still true; the next tick tries again.
      }).finally(() => this.#ticking = undefined);
    }, Math.max(1, Math.min(JOURNAL_TICK_MS, this.#intervalMs)));
  }

  /** Stops the background work and waits for what is in progress. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#ticking;
    await this.#flushing;
  }

  /**
   * Replaces the journal: the flushed ranges as claims, the rest of what was
   * written as unflushed. Only a journal with new claims needs to reach the
   * disk itself (`sync`); the others are hints, checked before use.
   */
  write(sync = false): Promise<void> {
    const next = this.#writing.then(async () => {
      if (this.#closed) return;
      await this.#probe();
      const written = this.#state.done;
      const unflushed = new RangeSet(written.toArray());
      for (const [a, b] of this.#flushed.toArray()) unflushed.remove(a, b);
      const data: JournalData = {
        version: 1,
        remote: identityOf(this.#state.job),
        done: this.#flushed.toArray(),
      };
      if (unflushed.covered > 0) data.unflushed = unflushed.toArray();
      const covered = written.covered;
      const bytes = encodeJournal(data);
      const place = this.#inPlace;
      if (!sync && place !== undefined && place.length === bytes.length) {
        // Creating and renaming a file can stall for milliseconds while the
        // disk is busy; overwriting one page in place does not. A torn page
        // reads as no journal, and what it adds is checked before use.
        await place.file.seek(0, Deno.SeekMode.Start);
        let off = 0;
        while (off < bytes.length) {
          off += await place.file.write(bytes.subarray(off));
        }
      } else {
        this.#closeInPlace();
        const file = await replaceJournal(this.#state.journal, data, { sync });
        this.#inPlace = { file, length: bytes.length };
      }
      this.#savedWritten = covered;
      this.#savedAt = performance.now();
    });
    this.#writing = next.catch(() => {});
    return next;
  }

  /** Flushes the part file, then claims everything written before the flush. */
  async flushAndWrite(): Promise<void> {
    await this.#flush();
    await this.write(true);
  }

  close(): void {
    this.#closed = true;
    this.#closeInPlace();
    try {
      this.#file.close();
    } catch {
      // already closed
    }
  }

  #closeInPlace(): void {
    try {
      this.#inPlace?.file.close();
    } catch {
      // already closed
    }
    this.#inPlace = undefined;
  }

  async #flush(): Promise<void> {
    await this.#probe();
    const snapshot = this.#state.done.toArray();
    const bytes = this.#state.done.covered - this.#flushed.covered;
    const t0 = performance.now();
    await this.#file.syncData();
    const now = performance.now();
    if (bytes > 0) this.#flushRate = bytes / Math.max(1, now - t0);
    this.#flushed = new RangeSet(snapshot);
    this.#flushedAt = now;
  }

  async #tick(): Promise<void> {
    await this.#probe();
    const now = performance.now();
    const written = this.#state.done.covered;
    const unflushed = written - this.#flushed.covered;
    if (
      this.#flushing === undefined && unflushed > 0 &&
      now - this.#flushedAt >= this.#intervalMs && this.#flushPays(unflushed)
    ) {
      this.#flushing = this.#flush().then(() => this.write(true)).catch(() => {
        // The claims stay as they were; the next interval tries again.
      }).finally(() => this.#flushing = undefined);
    }
    const unsaved = written - this.#savedWritten;
    if (
      unsaved > 0 && (now - this.#savedAt >= this.#intervalMs ||
        unsaved >= Math.max(JOURNAL_MIN_BYTES, written * JOURNAL_FRACTION))
    ) await this.write();
  }

  /** False when flushing `unflushed` bytes would take longer than half of what the transfer still needs. */
  #flushPays(unflushed: number): boolean {
    const written = this.#state.done.covered;
    const rate = (written - this.#startCovered) /
      Math.max(1, performance.now() - this.#startedAt);
    if (rate <= 0) return true;
    const remainingMs = (this.#state.job.size - written) / rate;
    return unflushed / this.#flushRate < remainingMs / 2;
  }

  /** Reads how far each running request has written (ops on one file run in order, so this follows its last write). */
  async #probe(): Promise<void> {
    for (const w of [...this.#state.writers]) {
      try {
        const pos = await w.file.seek(0, Deno.SeekMode.Current);
        this.#state.done.add(w.start, pos);
      } catch {
        // That request just finished and closed its file: it recorded its own end.
      }
    }
  }
}

/** Removes a journal and its temporary file, ignoring errors (synchronous, for the small-file path). */
function removeJournalSync(path: string): void {
  for (const p of [path, journalTempPathFor(path)]) {
    try {
      Deno.removeSync(p);
    } catch {
      // absent, or left for a later run
    }
  }
}

/** `[start, end)` spans of at most {@linkcode HASH_SPAN_BYTES} covering a file (one empty span for an empty file). */
function hashSpans(size: number): Array<[number, number]> {
  const spans: Array<[number, number]> = [];
  for (let a = 0; a < size; a += HASH_SPAN_BYTES) {
    spans.push([a, Math.min(size, a + HASH_SPAN_BYTES)]);
  }
  return spans.length > 0 ? spans : [[0, 0]];
}

/** Lower-case hex SHA-256 of each span of a local file (a span past the end hashes what there is). */
async function hashFile(
  path: string,
  spans: Array<[number, number]>,
  signal: AbortSignal,
  expected: FileId,
): Promise<string[]> {
  let file: Deno.FsFile;
  try {
    file = openChecked(path, { expected });
  } catch (error) {
    throw new Error(`Cannot read ${JSON.stringify(path)}: ${reason(error)}`, {
      cause: error,
    });
  }
  try {
    const buffer = new Uint8Array(1024 * 1024);
    const out: string[] = [];
    for (const [start, end] of spans) {
      const digest = createHash("sha256");
      await file.seek(start, Deno.SeekMode.Start);
      let left = end - start;
      while (left > 0) {
        signal.throwIfAborted();
        const n = await file.read(
          left < buffer.length ? buffer.subarray(0, left) : buffer,
        );
        if (n === null) break;
        digest.update(buffer.subarray(0, n));
        left -= n;
      }
      out.push(digest.digest("hex"));
    }
    return out;
  } finally {
    file.close();
  }
}

function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** `bytes 0-99 of ` (and how many more spans) for a message; empty when the spans are the whole file. */
function describeSpans(spans: Array<[number, number]>, size: number): string {
  if (spans.length === 1 && spans[0][0] === 0 && spans[0][1] === size) {
    return "";
  }
  const [a, b] = spans[0];
  const more = spans.length > 1
    ? ` and ${spans.length - 1} more part${spans.length > 2 ? "s" : ""}`
    : "";
  return `bytes ${a}-${b - 1}${more} of `;
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
