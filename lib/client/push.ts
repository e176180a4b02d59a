/**
 * The push engine: local files and trees sent to hsyncd, identical files
 * skipped, small files many per request, big files in parallel ranges that
 * resume from what the server holds, each file under its final name only
 * when complete (and verified with `--verify`). One way through: sources ->
 * destination -> remote listing -> plan -> scheduler -> send -> commit ->
 * directory times.
 */
import { posix } from "node:path";
import {
  type ConnectError,
  describeError,
  HttpError,
} from "../shared/errors.ts";
import type { StatEntry } from "../shared/wire.ts";
import { PathFilter, readyFilter } from "./filters.ts";
import { DEFAULT_MAX_ENTRIES, TreeLister } from "./listing.ts";
import { forPush, type LocalPrefetch } from "./local_prefetch.ts";
import { SMALL_FILE_BYTES } from "./plan.ts";
import {
  type PushContext,
  type PushOptions,
  type SendJob,
  writeRefusal,
} from "./push_context.ts";
import { PushPlanner } from "./push_plan.ts";
import {
  checkSources,
  goesInside,
  type PushSource,
  SourceError,
} from "./push_sources.ts";
import { type DeleteScope, PushDeleter } from "./push_delete.ts";
import { RemoteDirs } from "./push_dirs.ts";
import { LinkSender } from "./push_links.ts";
import { leasePath, lockPushDestination, type PushLease } from "./push_lock.ts";
import { BUNDLE_TASK, endEarly, PostsLeft, RANGED_TASK } from "./push_end.ts";
import { PushOpening } from "./push_opening.ts";
import { DestinationBusy } from "../shared/errors.ts";
import type { Remote } from "./remote.ts";
import { remoteRootError } from "./root_error.ts";
import { type HeldUpload, PushRemote } from "./remote_push.ts";
import { newLeaseToken } from "../shared/lease_token.ts";
import { Backoff } from "./retry.ts";
import { Scheduler, TaskGroup } from "./scheduler.ts";
import { BundleSender } from "./send_bundle.ts";
import { RangeSender } from "./send_ranges.ts";
import { emptySummary, type PullEvent, type PullSummary } from "./transfer.ts";
import { Verifier } from "./verify.ts";

export { checkSources, SourceError } from "./push_sources.ts";
export type { PushOptions } from "./push_context.ts";

/**
 * Pushes `sources` to `remotePath`. Throws `SourceError` (nothing sent)
 * for a local path that cannot be pushed, and `ConnectError` when the server
 * cannot be reached or refuses this client's writes; per-file failures are
 * counted in the summary instead.
 */
export async function push(options: PushOptions): Promise<PullSummary> {
  const sources = checkSources(options.sources);
  await readyFilter(options);
  const filter = new PathFilter(options);
  const opening = options.opening ?? new PushOpening(options, sources);
  try {
    const ahead = forPush(filter, options);
    return await ahead.during(
      sources,
      options.signal,
      () => new PushRun(options, opening, filter, ahead).execute(sources),
    );
  } finally {
    await opening.close();
  }
}

class PushRun {
  readonly #o: PushOptions;
  readonly #ctx: PushContext;
  readonly #remote: Remote;
  readonly #tasks: TaskGroup;
  /** Tasks with requests still to make (the early end waits for none). */
  readonly #posts = new PostsLeft();
  readonly #signal: AbortSignal;
  readonly #opening: PushOpening;
  readonly #planner: PushPlanner;
  readonly #ranges: RangeSender;
  readonly #bundles: BundleSender;
  readonly #links: LinkSender;
  readonly #filter: PathFilter;
  /** `--delete`: each listed destination and what its local tree holds. */
  readonly #scopes: DeleteScope[] = [];
  readonly #dirs: RemoteDirs;
  #fatal?: ConnectError;
  readonly #summary: PullSummary = { ...emptySummary(), omissions: [] };
  #totalFiles = 0;
  #totalBytes = 0;
  /** Every source is walked: later changes of the totals keep them final. */
  #totalFinal = false;
  /** The destination's entry as the lease's answer told it (undefined: nothing there). */
  #leased?: {
    path: string;
    entry: StatEntry | undefined;
    upload: HeldUpload | null | undefined;
  };

  constructor(
    options: PushOptions,
    opening: PushOpening,
    filter: PathFilter,
    ahead: LocalPrefetch,
  ) {
    this.#o = options;
    this.#opening = opening;
    this.#filter = filter;
    const s = options.settings;
    this.#remote = opening.remote;
    this.#remote.onRefuse((error) => this.#stopRun(error));
    opening.onLost((message) => this.#ctx.emit({ type: "warning", message }));
    const limits = new Scheduler(s, options.parallelFiles);
    this.#signal = opening.signal;
    this.#tasks = new TaskGroup((error) => {
      if (!this.#signal.aborted) this.#fail("(internal)", describeError(error));
    });
    const summary = this.#summary;
    const emit = (event: PullEvent) => {
      if (event.type === "progress" && event.resumed) {
        summary.resumed = (summary.resumed ?? 0) + event.bytes;
      }
      this.#o.onEvent?.(event);
    };
    this.#ctx = {
      remote: this.#remote,
      // A random session until the lease's token takes its place (below).
      push: new PushRemote(this.#remote, options.session ?? newLeaseToken()),
      settings: s,
      limits,
      signal: this.#signal,
      backoff: new Backoff(options.retryBaseMs ?? 250, s.maxTimeoutRetry),
      preserve: options.preserve ?? false,
      verify: options.verify ?? false,
      dryRun: options.dryRun ?? false,
      emit,
      addTotal: (files, bytes) => this.#addTotal(files, bytes),
      sent: (job) => {
        // Its directory is there now (a bundle may have made it).
        this.#dirs.add(posix.dirname(job.remote));
        summary.files++;
        summary.bytes += job.size;
        emit({ type: "done", path: job.label, bytes: job.size });
        this.#links.settled(job.label, true);
      },
      skipped: (label, bytes) => {
        summary.skipped++;
        emit(
          options.dryRun
            ? { type: "plan", action: "skip", path: label, bytes }
            : { type: "skip", path: label, bytes },
        );
        this.#links.settled(label, true);
      },
      fail: (label, message) => this.#fail(label, message),
      omit: (label, message) => {
        summary.omissions?.push({ path: label, message });
        emit({ type: "omitted", path: label, message });
      },
      linked: (label) => {
        summary.files++;
        emit({ type: "done", path: label, bytes: 0 });
      },
      stopRun: (error) => this.#stopRun(error),
    };
    this.#ranges = new RangeSender(this.#ctx, {
      busyWaitMs: options.busyWaitMs,
      putMaxBytes: options.putMaxBytes,
      settledMs: options.settledMs,
    });
    this.#bundles = new BundleSender(this.#ctx, {
      spawn: (task) => this.#tasks.spawn(task, BUNDLE_TASK),
      sendAlone: (job) => this.#sendRanged(job),
      ahead,
      posts: this.#posts,
    });
    this.#links = new LinkSender(this.#ctx, {
      spawn: (task) => this.#tasks.spawn(task),
      sendNow: (job) => this.#sendNow(job),
    });
    this.#dirs = new RemoteDirs(this.#ctx);
    this.#planner = new PushPlanner(this.#ctx, {
      filter: this.#filter,
      checksum: options.checksum ?? false,
      verifier: new Verifier(this.#ctx),
      ensureDir: (remote, label) => this.#dirs.ensure(remote, label),
      dirKnown: (remote) => this.#dirs.has(remote),
      dispatch: (job) => this.#dispatch(job),
      spawn: (task) => this.#tasks.spawn(task),
      linker: this.#links,
      links: options.links ?? false,
      unsafeLinks: options.unsafeLinks ?? false,
      hardLinks: options.hardLinks ?? false,
      sparse: options.sparse ?? false,
      ahead,
    });
  }

  async execute(sources: PushSource[]): Promise<PullSummary> {
    const started = performance.now();
    const { base, first } = this.#opening;
    let root: StatEntry | undefined;
    let lease: PushLease | undefined;
    // The first requests went out with the opening (firstAsk).
    if (first.kind === "lease+stat") {
      // Each source goes inside, whatever is there.
      const leasing = this.#lease(first.lease);
      leasing.catch(() => {});
      try {
        root = await this.#rootStat(base, false);
      } catch (error) {
        // No push: a lease taken meanwhile goes back, a wait for one ends.
        this.#opening.runStop.abort(error);
        await leasing.then((held) => held?.release(), () => {});
        this.#remote.close();
        throw error;
      }
      lease = await leasing;
    } else if (first.kind === "lease") {
      // The lease is the destination's whatever is there (a tree pushed to
      // a path without `/`), its answer carrying the destination's stat.
      lease = await this.#lease(first.lease);
      root = lease?.entry !== undefined
        ? lease.entry ?? undefined
        : await this.#rootStat(base, false);
    } else {
      // The first request is not retried: an unreachable server is told at once.
      root = await this.#rootStat(base, false);
      lease = await this.#lease(
        leasePath(this.#o.remotePath, base, sources, {
          scp: this.#o.scpPlacement ?? false,
          remoteIsDir: root?.type === "dir",
        }),
      );
    }
    // Its writes go as the lease's token (see PushRemote.session).
    if (lease !== undefined && this.#o.session === undefined) {
      this.#ctx.push.session = lease.token;
    }
    try {
      // What the server holds now: the push this one waited for changed it
      // (or one that ended since a stat found no destination made it).
      if (lease !== undefined && (lease.waited || root === undefined)) {
        root = lease.path === base && lease.entry !== undefined
          ? lease.entry ?? undefined
          : await this.#rootStat(base, true);
      }
      if (lease?.entry !== undefined) {
        this.#leased = {
          path: lease.path,
          entry: lease.entry ?? undefined,
          upload: lease.upload,
        };
      }
      return await this.#run(sources, base, root, started, lease);
    } finally {
      await lease?.release();
      this.#remote.close();
    }
  }

  /** The entry at the destination (undefined: none); a failure stops the run. */
  async #rootStat(
    base: string,
    retry: boolean,
  ): Promise<StatEntry | undefined> {
    try {
      return await this.#opening.statOrNone(
        base,
        retry ? this.#ctx.backoff : undefined,
      );
    } catch (error) {
      throw this.#fatal ?? this.#rootError(error, base);
    }
  }

  /** The lease of `path` (none for a dry run, or from an older hsyncd), waited for unless `--no-wait`. */
  async #lease(path: string): Promise<PushLease | undefined> {
    if (this.#ctx.dryRun) return undefined;
    const ask = () =>
      lockPushDestination(this.#remote, path, {
        wait: !this.#o.noWait,
        onWait: this.#o.onLockWait,
        onLost: (message) => this.#ctx.emit({ type: "warning", message }),
        signal: this.#signal,
        stat: true,
        records: this.#o.leaseRecords,
      });
    try {
      return await (this.#opening.takeLease(path, ask) ?? ask());
    } catch (error) {
      if (error instanceof DestinationBusy || this.#signal.aborted) throw error;
      throw this.#fatal ?? writeRefusal(error, this.#remote.host) ??
        this.#rootError(error, path);
    }
  }

  /** The push itself, once the destination is this run's. */
  async #run(
    sources: PushSource[],
    base: string,
    root: StatEntry | undefined,
    started: number,
    lease: PushLease | undefined,
  ): Promise<PullSummary> {
    const given = this.#o.remotePath;
    const several = sources.length > 1;
    if ((given.endsWith("/") || several) && root?.type === "file") {
      throw new SourceError(
        `Remote path ${JSON.stringify(base)} exists and is not a directory`,
      );
    }
    if (root?.type === "dir") this.#dirs.add(base);
    try {
      for (const source of sources) {
        if (this.#signal.aborted) break;
        await this.#pushSource(source, base, root, several);
      }
      await this.#planner.settle();
      // Every source is walked: the totals are final (no `+`, an ETA).
      this.#totalFinal = true;
      this.#addTotal(0, 0);
      await this.#bundles.flush();
      const early = endEarly(this.#ctx, lease, {
        planner: this.#planner,
        posts: this.#posts,
        tasks: this.#tasks,
        going: () => this.#fatal === undefined && !this.#o.deleteExtra,
      });
      await this.#tasks.drain();
      if (this.#o.deleteExtra && !this.#signal.aborted) {
        await this.#deleteExtra();
      }
      if (!this.#signal.aborted && !await (await early)?.landed()) {
        // The lease goes back while the directories get their times: a
        // push waiting for it asks once a second, after they are set.
        await Promise.all([this.#planner.finishDirs(), lease?.release()]);
      }
    } catch (error) {
      if (this.#fatal === undefined && !this.#signal.aborted) throw error;
    } finally {
      await this.#tasks.drain();
      this.#totalFinal = true;
      this.#addTotal(0, 0);
    }
    if (this.#fatal !== undefined) throw this.#fatal;
    this.#summary.seconds = (performance.now() - started) / 1000;
    return this.#summary;
  }

  /** One local path: where it goes, what the server has there, then its files. */
  async #pushSource(
    source: PushSource,
    base: string,
    root: StatEntry | undefined,
    several: boolean,
  ): Promise<void> {
    const into = goesInside(this.#o.remotePath, {
      several,
      remoteIsDir: root?.type === "dir",
      sourceIsDir: source.isDir,
      scp: this.#o.scpPlacement ?? false,
    });
    let dest = base;
    let existing = root;
    if (into) {
      if (source.name === "") {
        throw new SourceError(
          `Local path ${
            JSON.stringify(source.given)
          } has no name to go inside ${JSON.stringify(base)} under`,
        );
      }
      // The first write of a run: a server that takes none stops it here.
      if (!await this.#dirs.ensure(base, source.name)) return;
      dest = posix.join(base, source.name);
      try {
        existing = this.#leased?.path === dest
          ? this.#leased.entry
          : await this.#opening.statOrNone(dest, this.#ctx.backoff);
      } catch (error) {
        this.#failSource(source, dest, error);
        return;
      }
    }
    if (!source.isDir) {
      const parent = posix.dirname(dest);
      if (!into && existing === undefined && !this.#dirs.has(parent)) {
        let above: StatEntry | undefined;
        try {
          above = await this.#opening.statOrNone(parent, this.#ctx.backoff);
        } catch (error) {
          this.#failSource(source, parent, error);
          return;
        }
        if (above?.type === "dir") this.#dirs.add(parent);
        else if (!await this.#dirs.ensure(parent, source.name)) return;
      }
      await this.#planner.planFile(
        source,
        {
          remote: dest,
          root: into ? base : parent,
          under: into ? source.name : posix.basename(dest),
        },
        existing,
        this.#leased?.path === dest ? this.#leased.upload : undefined,
      );
      return;
    }
    if (existing !== undefined && existing.type !== "dir") {
      this.#fail(
        source.name,
        `Remote path ${JSON.stringify(dest)} exists and is not a directory`,
      );
      return;
    }
    const entries = new Map<string, StatEntry>();
    // A new tree is made by the bundles of its files, and at the end.
    const made = existing === undefined;
    if (!made) {
      this.#dirs.add(dest);
      if (!await this.#listInto(dest, entries, source)) return;
    }
    const local = new Set<string>();
    if (this.#o.deleteExtra && !made) {
      this.#scopes.push({ dest, name: source.name, remote: entries, local });
    }
    await this.#planner.planTree({
      source,
      dest,
      root: into ? base : dest,
      underPrefix: into ? `${source.name}/` : "",
      remote: entries,
      made,
      existing,
      local,
    });
  }

  /** `--delete`, once every file is settled: before the directories get their times (a deletion changes its directory's). */
  async #deleteExtra(): Promise<void> {
    const summary = this.#summary;
    await new PushDeleter(this.#ctx, {
      filter: this.#filter,
      maxDelete: this.#o.maxDelete,
      dryRun: this.#ctx.dryRun,
      deleted: (extra) => {
        summary.deleted = (summary.deleted ?? 0) + 1;
        this.#planner.touchParentOf(extra.remote);
        this.#ctx.emit({ type: "deleted", path: extra.label });
      },
    }).run(this.#scopes, {
      failed: summary.failed,
      omitted: summary.omissions?.length ?? 0,
    });
  }

  /** The server's entries below `dest`, by relative path; false when the listing failed (counted). */
  async #listInto(
    dest: string,
    entries: Map<string, StatEntry>,
    source: PushSource,
  ): Promise<boolean> {
    const lister = new TreeLister(this.#remote, dest, {
      signal: this.#signal,
      backoff: this.#ctx.backoff,
      maxEntries: this.#o.maxEntries ?? DEFAULT_MAX_ENTRIES,
      onTooMany: (error) => this.#stopRun(error),
      onRetry: (text) => this.#ctx.emit({ type: "warning", message: text }),
      // --delete removes a link itself: never an entry reached through it;
      // -l compares a link with the link there.
      query: {
        links: this.#o.deleteExtra || this.#o.links ? true : undefined,
        // -H compares the names of one file with the server's.
        hardLinks: this.#o.hardLinks ? true : undefined,
      },
    });
    const error = await lister.run((entry) => {
      entries.set(entry.path, entry);
      if (entry.type === "dir") this.#dirs.add(posix.join(dest, entry.path));
      return Promise.resolve();
    }).catch((e: unknown) => e);
    if (this.#signal.aborted) return false;
    if (error === undefined) return true;
    this.#failSource(source, dest, error);
    return false;
  }

  /** Hands on a file that differs: small ones to a bundle, the rest in ranges (one of `-n` slots each: the walk's backpressure). */
  async #dispatch(job: SendJob): Promise<void> {
    // A time before 1970 goes with a commit: a bundle cannot set it.
    const bundled = job.mtime >= 0 &&
      (job.size === 0 || (job.size <= SMALL_FILE_BYTES && !this.#o.verify));
    if (!bundled || this.#ctx.dryRun) return await this.#sendNow(job);
    this.#addTotal(1, job.size);
    await this.#bundles.add(job);
  }

  /** Sends a file in ranges now, whatever its size (a hard link's stand-in: bundles may be gone already). */
  async #sendNow(job: SendJob): Promise<void> {
    this.#addTotal(1, job.size);
    if (this.#ctx.dryRun) {
      // Told, and it stands for a sent file to the names linked to it.
      const { label: path, size: bytes } = job;
      this.#ctx.emit({ type: "plan", action: "transfer", path, bytes });
      return this.#links.settled(path, true);
    }
    const release = await this.#ctx.limits.files.acquire(this.#signal);
    const posted = this.#posts.begin();
    this.#tasks.spawn(
      this.#sendRanged(job, posted).finally(() => {
        posted();
        release();
      }),
      RANGED_TASK,
    );
  }

  async #sendRanged(job: SendJob, posted?: () => void): Promise<void> {
    // Its PUTs make its missing directory; a file that may have none (empty,
    // all holes), or refused 404 by an older hsyncd, makes it first.
    const dir = posix.dirname(job.remote);
    const early = job.size === 0 || job.sparse === true;
    if (early && !await this.#dirs.ensure(dir, job.label)) return;
    for (let made = early;; made = true) {
      try {
        // Sent: ctx.sent knows its directory now.
        return await this.#ranges.send(job, posted);
      } catch (error) {
        if (this.#signal.aborted) return;
        const missing = error instanceof HttpError && error.status === 404;
        if (!missing || made || this.#dirs.has(dir)) {
          return this.#fail(job.label, describeError(error));
        }
        if (!await this.#dirs.ensure(dir, job.label)) return;
      }
    }
  }

  /** A source whose destination cannot be read: the run stops for a refusal of this client, else the source fails. */
  #failSource(source: PushSource, path: string, error: unknown): void {
    if (this.#signal.aborted) return;
    const refusal = writeRefusal(error, this.#remote.host) ??
      (error instanceof HttpError ? undefined : this.#rootError(error, path));
    if (refusal !== undefined) {
      this.#stopRun(refusal);
      return;
    }
    this.#fail(
      source.name,
      `Cannot read remote path ${JSON.stringify(path)}: ${
        describeError(error)
      }`,
    );
  }

  #addTotal(files: number, bytes: number): void {
    this.#totalFiles += files;
    this.#totalBytes += bytes;
    this.#ctx.emit({
      type: "total",
      files: this.#totalFiles,
      bytes: this.#totalBytes,
      final: this.#totalFinal,
    });
  }

  #stopRun(error: ConnectError): void {
    if (this.#fatal !== undefined) return;
    this.#fatal = error;
    this.#opening.runStop.abort(error);
  }

  #fail(path: string, text: string): void {
    this.#links.settled(path, false);
    this.#summary.failed++;
    this.#summary.failures.push({ path, message: text });
    this.#ctx.emit({ type: "failure", path, message: text });
  }

  #rootError(error: unknown, path: string): ConnectError {
    return remoteRootError(error, path, this.#remote.host, "read");
  }
}
