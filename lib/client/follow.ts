/** The follower of `hsync --sync`: a first pull, then the server's watch long-poll, fetching only appended bytes after a bounded tail check. */
import type { TokenBucket } from "./bandwidth.ts";
import type { ClientSettings } from "../shared/config.ts";
import {
  ConnectError,
  describeError,
  HttpError,
  LocalPathError,
  reason,
} from "../shared/errors.ts";
import type { WatchResult } from "../shared/wire.ts";
import type { FollowEvent, FollowSummary } from "./follow_events.ts";
import { loadFollowState, saveFollowState } from "./follow_state.ts";
import { FollowTree } from "./follow_tree.ts";
import { PathFilter, readyFilter } from "./filters.ts";
import { DEFAULT_MAX_ENTRIES } from "./listing.ts";
import { destinationOf, isDirectory } from "./destination.ts";
import { makeParentDir, makeTreeRoot } from "./placement.ts";
import { pull } from "./pull.ts";
import { Remote } from "./remote.ts";
import { remoteRootError } from "./root_error.ts";
import { Backoff, isRetryable, sleep } from "./retry.ts";

export type { FollowEvent, FollowSummary } from "./follow_events.ts";
export type { FetchReason } from "./follow_file.ts";

/** After a stop is asked, rounds in progress get this long to finish their write. */
const STOP_GRACE_MS = 2_000;
/** State is saved at most this often while following. */
const SAVE_EVERY_MS = 5_000;

/** Options of {@linkcode follow}. */
export interface FollowOptions {
  /** `http://127.0.0.1:10808`. */
  baseUrl: string;
  /** Absolute path on the server: a file or a directory. */
  remotePath: string;
  /** Destination, placed as by `pull` (a path ending in `/` gets the remote entry inside it). */
  localPath: string;
  /** scp's placement rule for directories too. */
  scpPlacement?: boolean;
  settings: ClientSettings;
  /** Files fetched in ranges at once during the first pull (`-n`). */
  parallelFiles?: number;
  include?: string[];
  exclude?: string[];
  /** Also copy permission bits of files fetched whole (without setuid, setgid, sticky and write-for-others unless `specialModes`). */
  preserve?: boolean;
  /** With `preserve`: apply setuid, setgid, sticky and write-for-others bits from the server too. */
  specialModes?: boolean;
  /**
   * Most entries one listing may hold, and most paths followed at once
   * (default {@linkcode DEFAULT_MAX_ENTRIES}): beyond, following stops with
   * a `ConnectError`, so an endless listing cannot create endless files.
   */
  maxEntries?: number;
  /** Skip what exists at the start; follow only what appears after it. */
  fromNow?: boolean;
  /**
   * Where the follower keeps its state between runs (which files it follows
   * and from which remote offset). Without it a restart cannot tell a
   * `--from-now` file from a short copy.
   */
  stateFile?: string;
  /** Stops following: rounds in progress finish their write, state is saved, {@linkcode follow} returns. */
  signal?: AbortSignal;
  onEvent?: (event: FollowEvent) => void;
  client?: Deno.HttpClient;
  sign?: (request: Request) => Promise<void> | void;
  /** First reconnect delay in milliseconds (doubles per attempt, with jitter); default 500. */
  retryBaseMs?: number;
  /** `--bwlimit`: the one bucket every body of the run passes through. */
  bandwidth?: TokenBucket;
}

/**
 * Follows `remotePath` into `localPath` until `signal` aborts, then returns.
 * Throws `ConnectError` when the server cannot be reached (or refuses) at the
 * start, or `Max_timeout_retry` times in a row later; `LocalPathError` when
 * the destination cannot be written.
 */
export async function follow(options: FollowOptions): Promise<FollowSummary> {
  await readyFilter(options);
  return await new Follower(options).run();
}

class Follower {
  readonly #o: FollowOptions;
  readonly #remote: Remote;
  /** Aborted at once on stop: no new poll, no new round. */
  readonly #stop = new AbortController();
  /** Aborted after the grace period: requests of rounds still running. */
  readonly #hard = new AbortController();
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  readonly #summary: FollowSummary = {
    appendedBytes: 0,
    fetchedFiles: 0,
    fetchedBytes: 0,
    seconds: 0,
  };
  /** What is followed; made once the destination is known. */
  #tree?: FollowTree;
  #dest = "";
  #lastSave = 0;
  /** The first pull has not finished: a restart runs it again (it resumes). */
  #pulling = false;
  /** The first scan of a `--from-now` run is still to do (it records offsets instead of fetching). */
  #fromNowScan = false;
  /** Why following was stopped: a server that cannot be trusted further. */
  #fatal?: Error;
  /** The watch cursor: null until the server gave one, and after the server was lost. */
  #cursor: string | null = null;

  constructor(options: FollowOptions) {
    this.#o = options;
    this.#remote = new Remote({
      baseUrl: options.baseUrl,
      client: options.client,
      sign: options.sign,
      idleTimeoutMs: options.settings.dataTimeout * 1000,
      onRefuse: (error) => this.#stopRun(error),
      bandwidth: options.bandwidth,
    });
  }

  async run(): Promise<FollowSummary> {
    const started = performance.now();
    const outer = this.#o.signal;
    const onStop = () => {
      this.#stop.abort(outer?.reason);
      const t = setTimeout(
        () => this.#hard.abort(outer?.reason),
        STOP_GRACE_MS,
      );
      this.#timers.add(t);
    };
    if (outer?.aborted) onStop();
    outer?.addEventListener("abort", onStop, { once: true });
    try {
      await this.#start();
      await this.#pollLoop();
    } catch (error) {
      throw this.#fatal ?? error;
    } finally {
      outer?.removeEventListener("abort", onStop);
      // Rounds in progress finish their write (or are cut after the grace period).
      if (!this.#stop.signal.aborted) this.#stop.abort();
      const t = setTimeout(() => this.#hard.abort(), STOP_GRACE_MS);
      this.#timers.add(t);
      await this.#tree?.drain();
      for (const timer of this.#timers) clearTimeout(timer);
      if (this.#dest !== "") await this.#saveState(true);
    }
    if (this.#fatal !== undefined) throw this.#fatal;
    this.#summary.seconds = (performance.now() - started) / 1000;
    return this.#summary;
  }

  // ------------------------------------------------------------ start

  /** Root, cursor, first pull or resumed check; leaves the cursor in #cursor. */
  async #start(): Promise<void> {
    const { remotePath, localPath } = this.#o;
    let root;
    try {
      root = await this.#remote.stat(remotePath, this.#stop.signal);
    } catch (error) {
      throw this.#rootError(error);
    }
    const isDir = root.type === "dir";
    this.#dest = destinationOf(localPath, remotePath, {
      remoteIsDir: isDir,
      scp: this.#o.scpPlacement,
    });
    if (isDir) makeTreeRoot(this.#dest);
    else if (isDirectory(this.#dest)) {
      throw new LocalPathError(this.#dest, "it is a directory");
    } else makeParentDir(this.#dest);
    const tree = this.#tree = new FollowTree({
      remote: this.#remote,
      remotePath,
      isDir,
      dest: this.#dest,
      filter: new PathFilter(this.#o),
      fromNow: this.#o.fromNow === true,
      maxEntries: this.#maxEntries,
      preserve: this.#o.preserve,
      specialModes: this.#o.specialModes,
      stop: this.#stop.signal,
      hard: this.#hard.signal,
      summary: this.#summary,
      emit: (event) => this.#emit(event),
      stopRun: (error) => this.#stopRun(error),
    });

    const saved = this.#o.stateFile === undefined
      ? undefined
      : await loadFollowState(this.#o.stateFile);
    const resumed = saved !== undefined &&
      saved.baseUrl === this.#o.baseUrl && saved.remotePath === remotePath &&
      saved.local === this.#dest;
    if (resumed) tree.restore(saved.files);

    // The cursor comes first: whatever changes during the pull is in the next poll.
    const first = await this.#watch(null).catch((error) => {
      throw this.#rootError(error);
    });
    this.#cursor = first.cursor;

    const fromNow = this.#o.fromNow === true;
    // An empty destination gets the normal engine; so does a first pull that
    // was interrupted (it resumes from its journals). Existing data is
    // checked file by file instead, so a grown file is never fetched again.
    const pullFirst = resumed
      ? saved.pulling === true
      : !fromNow && !hasData(this.#dest, isDir);
    if (pullFirst) {
      this.#pulling = true;
      tree.dirty = true;
      await this.#saveState(true);
      const summary = await pull({
        baseUrl: this.#o.baseUrl,
        remotePath,
        localPath: this.#dest,
        settings: this.#o.settings,
        parallelFiles: this.#o.parallelFiles ?? 8,
        include: this.#o.include,
        exclude: this.#o.exclude,
        preserve: this.#o.preserve,
        specialModes: this.#o.specialModes,
        maxEntries: this.#o.maxEntries,
        signal: this.#stop.signal,
        onEvent: (event) => this.#emit({ type: "pull", event }),
        client: this.#o.client,
        sign: this.#o.sign,
        bandwidth: this.#o.bandwidth,
      });
      this.#emit({ type: "pulled", summary });
    }
    if (this.#stop.signal.aborted) return;
    // Files the pull skipped, failed, or saw change are caught up here; a
    // resumed follower continues each file from its last byte.
    try {
      await tree.rescan(fromNow);
    } catch (error) {
      if (!isRetryable(error, [409])) throw this.#rootError(error);
      // The server went away meanwhile: the poll loop reconnects, then scans.
      this.#cursor = null;
      this.#fromNowScan = fromNow;
    }
    this.#pulling = false;
    tree.dirty = true;
    await this.#saveState(true);
    this.#emit({
      type: "following",
      local: this.#dest,
      files: tree.files,
      resumed,
      fromNow,
    });
  }

  // ------------------------------------------------------------ polling

  async #pollLoop(): Promise<void> {
    const tree = this.#tree!;
    const backoff = new Backoff(
      this.#o.retryBaseMs ?? 500,
      this.#o.settings.maxTimeoutRetry,
    );
    let failures = 0;
    let waiting = false;
    while (!this.#stop.signal.aborted) {
      try {
        const result = await this.#watch(this.#cursor);
        if (failures > 0) this.#emit({ type: "reconnected" });
        failures = 0;
        waiting = false;
        if (result.changed.length > this.#maxEntries) {
          this.#stopRun(
            new ConnectError(
              `Watch answer from ${this.#remote.host} names more than ${this.#maxEntries} paths, the most one run accepts (--max-entries)`,
              { refused: true },
            ),
          );
          return;
        }
        if (result.rescan) {
          await tree.rescan(this.#fromNowScan);
          this.#fromNowScan = false;
        } else {
          for (const rel of result.changed) tree.onChange(rel);
        }
        this.#cursor = result.cursor;
        await this.#saveState(false);
      } catch (error) {
        if (this.#stop.signal.aborted) return;
        if (error instanceof HttpError && error.status === 404) {
          // Rotated away, not yet recreated: wait for it without giving up.
          if (!waiting) {
            this.#emit({
              type: "waiting",
              message: `${
                JSON.stringify(this.#o.remotePath)
              } is gone from ${this.#remote.host}; waiting for it to come back`,
            });
          }
          waiting = true;
          await sleep(
            Math.min(1000, this.#o.settings.syncIntervalSec * 1000),
            this.#stop.signal,
          ).catch(() => {});
          continue;
        }
        if (!isRetryable(error, [409])) throw this.#rootError(error);
        failures++;
        if (failures > backoff.maxRetries) {
          throw new ConnectError(
            `Cannot reach ${this.#remote.host} after ${failures} attempts: ${
              this.#why(error)
            }; stopped following`,
            { cause: error },
          );
        }
        const delayMs = backoff.delayMs(failures);
        this.#emit({
          type: "reconnecting",
          attempt: failures,
          max: backoff.maxRetries,
          delayMs,
          message: this.#why(error),
        });
        await sleep(delayMs, this.#stop.signal).catch(() => {});
      }
    }
  }

  /** One long-poll; the server answers at once without a cursor (rescan) or when something changes. */
  #watch(cursor: string | null): Promise<WatchResult> {
    const s = this.#o.settings;
    return this.#remote.watch(this.#o.remotePath, {
      cursor,
      timeout: Math.min(
        25,
        s.dataTimeout >= 10 ? s.dataTimeout - 5 : s.dataTimeout / 2,
      ),
      interval: Math.min(3600, Math.max(0.05, s.syncIntervalSec)),
      signal: this.#stop.signal,
    });
  }

  /** The most entries one listing may hold, and paths followed at once. */
  get #maxEntries(): number {
    return this.#o.maxEntries ?? DEFAULT_MAX_ENTRIES;
  }

  /** Stops following for good (a redirect, a bound exceeded); {@linkcode follow} then throws `error`. */
  #stopRun(error: Error): void {
    if (this.#fatal !== undefined) return;
    this.#fatal = error;
    this.#stop.abort(error);
    this.#hard.abort(error);
  }

  // ------------------------------------------------------------ bookkeeping

  /** Saves the state when something worth saving changed (at most every few seconds unless `force`). */
  async #saveState(force: boolean): Promise<void> {
    const file = this.#o.stateFile;
    const tree = this.#tree;
    if (file === undefined || tree === undefined || !tree.dirty) return;
    const now = performance.now();
    if (!force && now - this.#lastSave < SAVE_EVERY_MS) return;
    this.#lastSave = now;
    try {
      await saveFollowState(file, {
        version: 1,
        baseUrl: this.#o.baseUrl,
        remotePath: this.#o.remotePath,
        local: this.#dest,
        ...(this.#pulling ? { pulling: true } : {}),
        files: tree.snapshot(),
      });
    } catch (error) {
      tree.dirty = true;
      this.#emit({
        type: "warning",
        message: `Cannot save the follow state to "${file}": ${reason(error)}`,
      });
    }
  }

  /** Why the server could not be reached, without repeating its address. */
  #why(error: unknown): string {
    const text = describeError(error);
    const prefix = `Cannot reach ${this.#remote.host}: `;
    return text.startsWith(prefix) ? text.slice(prefix.length) : text;
  }

  #emit(event: FollowEvent): void {
    this.#o.onEvent?.(event);
  }

  #rootError(error: unknown): unknown {
    if (this.#stop.signal.aborted) return error;
    if (error instanceof LocalPathError) return error;
    return remoteRootError(
      error,
      this.#o.remotePath,
      this.#remote.host,
      "follow",
    );
  }
}

/** True when a destination already holds something (then the first pull is replaced by per-file checks). */
function hasData(dest: string, isDir: boolean): boolean {
  try {
    if (!isDir) return Deno.lstatSync(dest).isFile;
    for (const _ of Deno.readDirSync(dest)) return true;
    return false;
  } catch {
    return false;
  }
}
