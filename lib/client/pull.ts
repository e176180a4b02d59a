/**
 * The pull engine: lists a remote file or tree, skips what is identical, and
 * fetches the rest in parallel, resumably, without ever placing a partial
 * file. One way through: placement -> list -> plan -> scheduler -> fetch ->
 * verify -> place.
 */
import { posix } from "node:path";
import { describeError } from "../shared/errors.ts";
import { readyToSetModes } from "../shared/part_file.ts";
import type { StatEntry } from "../shared/wire.ts";
import { BundleFetcher } from "./fetch_bundle.ts";
import type { EarlyRange } from "./early_range.ts";
import { FileFetcher } from "./fetch_file.ts";
import { RangeFetcher } from "./fetch_ranges.ts";
import { PathFilter, readyFilter } from "./filters.ts";
import { DEFAULT_MAX_ENTRIES, TreeLister } from "./listing.ts";
import { HardLinks } from "./hard_links.ts";
import { placeHardLink } from "./links.ts";
import { destinationOf } from "./destination.ts";
import {
  holdsOnlyLock,
  localUmask,
  makeParentDir,
  makeTreeRoot,
  modeForNew,
  probeTreeRoot,
} from "./placement.ts";
import { type DestinationLock, lockDestination } from "./dest_lock.ts";
import { deleteExtras } from "./pull_delete.ts";
import { Planner, routeOf } from "./plan.ts";
import { type EarlyListing, listQueryOf, PullOpening } from "./opening.ts";
import type { Exchange, Remote } from "./remote.ts";
import { remoteRootError } from "./root_error.ts";
import { Backoff } from "./retry.ts";
import { Scheduler, TaskGroup } from "./scheduler.ts";
import {
  emptySummary,
  type FileJob,
  type PullContext,
  type PullEvent,
  type PullSummary,
  type TreeOptions,
} from "./transfer.ts";
import { Verifier } from "./verify.ts";

export type { PullEvent, PullSummary } from "./transfer.ts";

/** Options of {@linkcode pull}. */
export interface PullOptions extends TreeOptions {
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
  /** Another hsync writing into the destination directory stops this run (`DestinationBusy`) instead of making it wait. */
  noWait?: boolean;
  /** Called once when this run waits for another hsync writing into `dir`. */
  onLockWait?: (dir: string, pid: number | undefined) => void;
  /** Ask for the first range of the root with its stat: a pull of one file waits no round trip for its first bytes (the command line asks). */
  earlyRange?: boolean;
  /**
   * The first requests of this pull, sent already (by the command line,
   * before it loaded the engine) for these very options; else the run sends
   * them.
   */
  opening?: PullOpening;
}

/**
 * Pulls `remotePath` into `localPath`. Throws `ConnectError` when the server
 * cannot be reached or refuses the root, and an `Error` naming the path when
 * the destination cannot be created; per-file failures are counted in the
 * summary instead.
 */
export async function pull(options: PullOptions): Promise<PullSummary> {
  await readyFilter(options);
  return await new PullRun(options).execute();
}

class PullRun {
  readonly #o: PullOptions;
  readonly #opening: PullOpening;
  readonly #ctx: PullContext;
  readonly #remote: Remote;
  readonly #limits: Scheduler;
  readonly #tasks: TaskGroup;
  readonly #verifier: Verifier;
  readonly #files: FileFetcher;
  /** The root's first bytes, asked for with its stat (a pull of one file). */
  readonly #early: EarlyRange;
  readonly #bundles: BundleFetcher;
  /** The caller's signal, or a stop of the whole run by {@linkcode PullRun.#stopRun}. */
  readonly #signal: AbortSignal;
  readonly #runStop = new AbortController();
  /** Why the run was stopped: a server that cannot be trusted further. */
  #fatal?: Error;
  readonly #summary: PullSummary = emptySummary();
  #plannedFiles = 0;
  #plannedBytes = 0;
  /** The listing is complete: later changes of the totals (a restart) keep them final. */
  #totalFinal = false;
  /** Paths already told as omitted (a resumed listing may repeat one). */
  readonly #omitted = new Set<string>();
  /** `-H`: names of one file. */
  readonly #hardLinks?: HardLinks;
  /** `-S`: files the listing says have holes (fetched by their extents). */
  readonly #sparse = new WeakSet<FileJob>();
  /** `--delete`: every relative path the listing had. */
  readonly #listed?: Set<string>;
  readonly #filter: PathFilter;
  readonly #dry: boolean;
  /** The destination directory's lock, held from before the listing to the end. */
  #lock?: DestinationLock;

  constructor(options: PullOptions) {
    this.#o = options;
    this.#dry = options.dryRun ?? false;
    this.#filter = new PathFilter(options);
    if (options.deleteExtra) this.#listed = new Set();
    const s = options.settings;
    this.#signal = options.signal === undefined
      ? this.#runStop.signal
      : AbortSignal.any([options.signal, this.#runStop.signal]);
    this.#opening = options.opening ?? new PullOpening(options, this.#signal);
    this.#remote = this.#opening.remote;
    this.#remote.onRefuse((error) => this.#stopRun(error));
    this.#early = this.#opening.early;
    this.#limits = new Scheduler(s, options.parallelFiles);
    this.#tasks = new TaskGroup((error) => {
      if (!this.#signal.aborted) this.#fail("(internal)", describeError(error));
    });
    const summary = this.#summary;
    const emit = (event: PullEvent) => this.#o.onEvent?.(event);
    const umask = localUmask();
    // Loading node's fs, once the first entry to get another mode is seen;
    // once it is loaded, no entry waits on it any more.
    let modesReady: Promise<void> | undefined;
    let modesLoaded = false;
    if (options.hardLinks) {
      this.#hardLinks = new HardLinks({
        link: (first, job) => this.#link(first, job),
        fetch: (job) => this.#tasks.spawn(this.#fetchAlone(job)),
      });
    }
    this.#ctx = {
      remote: this.#remote,
      settings: s,
      limits: this.#limits,
      signal: this.#signal,
      backoff: new Backoff(options.retryBaseMs ?? 250, s.maxTimeoutRetry),
      targets: new Set(),
      modeOf: (entry) =>
        modeForNew(entry.mode, {
          preserve: options.preserve,
          special: options.specialModes,
          umask,
        }),
      readyForMode: (entry) => {
        if (modesLoaded) return undefined;
        if (modesReady !== undefined || entry.type === "symlink") {
          return modesReady;
        }
        // What a file (directory) is made with: 0666 (0777) less the umask.
        const made = (entry.type === "dir" ? 0o777 : 0o666) & ~umask;
        if (!options.preserve && this.#ctx.modeOf(entry) === made) {
          return undefined;
        }
        return modesReady = readyToSetModes().then(() => {
          modesLoaded = true;
        });
      },
      emit,
      placed: (job) => {
        this.#ctx.targets.delete(job.target);
        summary.files++;
        summary.bytes += job.size;
        emit({ type: "done", path: job.rel, bytes: job.size });
        this.#hardLinks?.settled(job.rel, true);
      },
      skipped: (job) => {
        summary.skipped++;
        emit(
          this.#dry
            ? { type: "plan", action: "skip", path: job.rel, bytes: job.size }
            : { type: "skip", path: job.rel, bytes: job.size },
        );
        this.#hardLinks?.settled(job.rel, true);
      },
      fail: (path, text) => {
        this.#fail(path, text);
        this.#hardLinks?.settled(path, false);
      },
    };
    this.#verifier = new Verifier(this.#ctx);
    const ranges = new RangeFetcher(this.#ctx, {
      journal: options.journal ?? true,
      journalIntervalMs: options.journalIntervalMs ?? 1000,
      verifier: this.#verifier,
      onResumed: (bytes) => summary.resumed = (summary.resumed ?? 0) + bytes,
      sparse: options.sparse ?? false,
      hasHoles: (job) => this.#sparse.has(job),
      early: this.#early,
    });
    this.#files = new FileFetcher(this.#ctx, {
      ranges,
      verifier: this.#verifier,
      verify: options.verify ?? false,
      journal: options.journal ?? true,
      addTotal: (files, bytes) => this.#addTotal(files, bytes),
      fail: (path, text) => this.#fail(path, text),
    });
    this.#bundles = new BundleFetcher(this.#ctx, {
      root: options.remotePath,
      verify: options.verify ?? false,
      verifier: this.#verifier,
      fetchFile: (job, o) => this.#files.fetch(job, o),
      spawn: (task) => this.#tasks.spawn(task),
    });
  }

  async execute(): Promise<PullSummary> {
    const started = performance.now();
    const { remotePath, localPath } = this.#o;
    // The stat, the listing and the first bytes went out together.
    const early = this.#opening.listing;
    let root: StatEntry;
    try {
      root = await this.#opening.stat;
    } catch (error) {
      early.drop();
      this.#early.drop();
      throw this.#rootError(error);
    }
    if (root.type !== "dir") early.drop();
    else this.#early.drop();
    const dest = destinationOf(localPath, remotePath, {
      remoteIsDir: root.type === "dir",
      scp: this.#o.scpPlacement,
    });
    const planner = new Planner(this.#ctx, {
      root: remotePath,
      dest,
      filter: this.#filter,
      checksum: this.#o.checksum ?? false,
      verifier: this.#verifier,
      dispatch: (job) => this.#dispatch(job),
      spawn: (task) => this.#tasks.spawn(task),
      preserve: this.#o.preserve,
      unsafeLinks: this.#o.unsafeLinks,
      // A dry run fetches nothing for a first name to be linked to.
      hardLinks: this.#dry ? undefined : this.#hardLinks,
      dryRun: this.#dry,
      sparse: this.#o.sparse ? (job) => this.#sparse.add(job) : undefined,
      omit: (path, message) => this.#omit(path, message),
    });
    try {
      if (root.type === "dir") await this.#pullTree(planner, dest, early);
      else {
        await this.#pullOne(planner, root, dest, posix.basename(remotePath));
      }
      await this.#tasks.drain();
      if (!this.#signal.aborted && !this.#dry) planner.finishDirs();
      if (
        root.type === "dir" && this.#listed !== undefined &&
        !this.#signal.aborted
      ) this.#deleteExtras(dest);
    } catch (error) {
      throw this.#fatal ?? error;
    } finally {
      // On an unexpected throw, still let running transfers stop before returning.
      await this.#tasks.drain();
      this.#early.drop();
      this.#lock?.release();
    }
    if (this.#fatal !== undefined) throw this.#fatal;
    this.#summary.seconds = (performance.now() - started) / 1000;
    return this.#summary;
  }

  // ------------------------------------------------------------ list, plan

  async #pullOne(
    planner: Planner,
    root: StatEntry,
    dest: string,
    base: string,
  ): Promise<void> {
    if (!this.#dry) {
      makeParentDir(dest);
      if (!await this.#lockDir(posix.dirname(dest))) return;
    }
    const job = await planner.planRootFile(root, base);
    if (job === undefined) return;
    if (this.#dry) return await this.#dispatch(job);
    // One file: its total is final at once (no `+`, an ETA from the start).
    this.#totalFinal = true;
    this.#addTotal(1, job.size);
    this.#ctx.targets.add(job.target);
    // The destination itself cannot be written: that is the run failing, not one file of many.
    await this.#files.fetch(job, { throwLocal: true });
  }

  /**
   * Two runs writing into one directory would each see the other's part
   * files vanish: the second waits (or stops) here, before it lists, so it
   * then finds complete files and skips them. False when the run was
   * stopped while it waited; `onWaited` is told when another run held the
   * lock first.
   */
  async #lockDir(dir: string, onWaited = () => {}): Promise<boolean> {
    try {
      this.#lock = await lockDestination(dir, {
        wait: !this.#o.noWait,
        onWait: (...args) => {
          onWaited();
          this.#o.onLockWait?.(...args);
        },
        signal: this.#signal,
      });
      return true;
    } catch (error) {
      if (this.#signal.aborted) return false;
      throw error;
    }
  }

  async #pullTree(
    planner: Planner,
    dest: string,
    early: EarlyListing,
  ): Promise<void> {
    const created = this.#dry ? probeTreeRoot(dest) : makeTreeRoot(dest);
    // A listing left unread while another run held the lock may have timed
    // out: asked for again.
    let started: Promise<Exchange> | undefined = early.started;
    const waited = () => {
      early.drop();
      started = undefined;
    };
    if (!this.#dry && !await this.#lockDir(dest, waited)) {
      early.drop();
      return;
    }
    // Nothing to compare in a root this run made, unless another run wrote
    // into it before this one held the lock (two runs may both have found
    // it missing): then it holds more than the lock.
    if (created && (this.#dry || holdsOnlyLock(dest))) planner.rootCreated();
    const lister = new TreeLister(this.#remote, this.#o.remotePath, {
      signal: this.#signal,
      backoff: this.#ctx.backoff,
      maxEntries: this.#o.maxEntries ?? DEFAULT_MAX_ENTRIES,
      onTooMany: (error) => this.#stopRun(error),
      onRetry: (text) => this.#ctx.emit({ type: "warning", message: text }),
      query: listQueryOf(this.#o),
      started,
    });
    try {
      const listed = this.#listed;
      const error = await lister.run(
        (entry) => {
          listed?.add(entry.path);
          return planner.plan(entry);
        },
        (line) => planner.omitted(line),
      );
      if (this.#signal.aborted) return;
      if (error !== undefined) {
        if (lister.last === undefined) throw this.#rootError(error);
        this.#fail(
          "(listing)",
          `Listing stopped early: ${describeError(error)}`,
        );
      }
      // Checksum comparisons still running may add files to the last bundle.
      await planner.settle();
      await this.#bundles.flush();
    } catch (error) {
      if (this.#signal.aborted) return;
      if (lister.last === undefined) throw error;
      this.#fail("(listing)", `Listing stopped early: ${describeError(error)}`);
    } finally {
      this.#totalFinal = true;
      this.#addTotal(0, 0);
    }
  }

  /** Sends a file that is not identical on its route: written at once when empty, in a bundle when small, else in ranges. */
  async #dispatch(job: FileJob): Promise<void> {
    if (this.#dry) {
      // The whole size: a `.hsync-part` of an interrupted run is not looked at.
      this.#ctx.targets.delete(job.target);
      const { rel: path, size: bytes } = job;
      return this.#ctx.emit({ type: "plan", action: "transfer", path, bytes });
    }
    this.#addTotal(1, job.size);
    // A file with holes is fetched by its extents (ranges) whatever its size.
    const route = this.#sparse.has(job) && job.size > 0
      ? "ranges"
      : routeOf(job.size);
    switch (route) {
      case "empty":
        this.#bundles.writeWhole(job, new Uint8Array(0));
        return;
      case "bundle":
        await this.#bundles.add(job);
        return;
      case "ranges": {
        // Waiting here (-n) is the backpressure on the listing.
        let release;
        try {
          release = await this.#limits.files.acquire(this.#signal);
        } catch (error) {
          this.#ctx.targets.delete(job.target);
          throw error;
        }
        this.#tasks.spawn(this.#files.fetch(job).finally(release));
      }
    }
  }

  // ------------------------------------------------------------ fetch (one file: fetch_file.ts)

  /** A name of a file with several (`-H`) whose first name failed: fetched on its own. */
  async #fetchAlone(job: FileJob): Promise<void> {
    this.#addTotal(1, job.size);
    if (job.size === 0) this.#bundles.writeWhole(job, new Uint8Array(0));
    else await this.#files.fetch(job);
  }

  /** A name of a file with several (`-H`) made a hard link of its first name, which is in place. */
  #link(first: FileJob, job: FileJob): void {
    const named = { ...job, size: 0 };
    let outcome;
    try {
      outcome = placeHardLink(first.target, job.target);
    } catch (error) {
      this.#ctx.targets.delete(job.target);
      this.#ctx.fail(job.rel, describeError(error));
      return;
    }
    if (outcome === "same") {
      this.#ctx.targets.delete(job.target);
      this.#ctx.skipped(named);
    } else this.#ctx.placed(named);
  }

  // ------------------------------------------------------------ delete

  /** `--delete` once the tree is transferred: see {@linkcode deleteExtras}. */
  #deleteExtras(dest: string): void {
    const s = this.#summary;
    const deleted = deleteExtras({
      root: dest,
      listed: this.#listed!,
      filter: this.#filter,
      maxDelete: this.#o.maxDelete,
      dryRun: this.#dry,
      blocked: s.failed + (s.omissions?.length ?? 0) + (s.withheld ?? 0),
      emit: this.#ctx.emit,
      fail: (path, text) => this.#fail(path, text),
    });
    if (deleted > 0) s.deleted = deleted;
  }

  // ------------------------------------------------------------ bookkeeping

  #addTotal(files: number, bytes: number): void {
    this.#plannedFiles += files;
    this.#plannedBytes += bytes;
    this.#ctx.emit({
      type: "total",
      files: this.#plannedFiles,
      bytes: this.#plannedBytes,
      final: this.#totalFinal,
    });
  }

  /** Stops the whole run for a server that cannot be trusted further; {@linkcode pull} then throws `error`. */
  #stopRun(error: Error): void {
    if (this.#fatal !== undefined) return;
    this.#fatal = error;
    this.#runStop.abort(error);
  }

  /** An entry not transferred that is not a failure: named once, or counted as withheld. */
  #omit(path: string | undefined, message: string): void {
    const summary = this.#summary;
    if (path === undefined) {
      summary.withheld = (summary.withheld ?? 0) + 1;
    } else {
      if (this.#omitted.has(path)) return;
      this.#omitted.add(path);
      (summary.omissions ??= []).push({ path, message });
    }
    this.#ctx.emit({ type: "omitted", path, message });
  }

  #fail(path: string, text: string): void {
    this.#summary.failed++;
    this.#summary.failures.push({ path, message: text });
    this.#ctx.emit({ type: "failure", path, message: text });
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
