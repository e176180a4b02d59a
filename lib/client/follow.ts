/** The follower of `hsync --sync`: a first pull, then the server's watch long-poll, fetching only appended bytes after a bounded tail check. */
import { createHash } from "node:crypto";
import { dirname, join, posix } from "node:path";
import picomatch from "picomatch";
import type { ClientSettings } from "../shared/config.ts";
import {
  ConnectError,
  HttpError,
  LocalPathError,
  reason,
} from "../shared/errors.ts";
import { partPathFor } from "../shared/journal.ts";
import { parseEtag } from "../shared/file_identity.ts";
import { parseContentRange, rangeHeader } from "../shared/byte_range.ts";
import { Limiter } from "../shared/limiter.ts";
import {
  checkName,
  chmodOpened,
  createChecked,
  ensureDirs,
  fileIdOf,
  isDirectory,
  modeToApply,
  openChecked,
  safeComponents,
} from "./local_path.ts";
import {
  DEFAULT_MAX_ENTRIES,
  pull,
  type PullEvent,
  type PullSummary,
} from "./pull.ts";
import { type Exchange, Remote, remoteRootError } from "./remote.ts";
import {
  API,
  type HashResult,
  type StatEntry,
  type WatchResult,
} from "../shared/wire.ts";
import {
  isRetryable,
  message,
  ProtocolError,
  ShortBody,
  sleep,
} from "./retry.ts";

/** Bytes at the end of a local file compared (by SHA-256) with the same span on the server before anything is appended. */
export const TAIL_BYTES = 64 * 1024;
/** Files synchronised at once (each round is one hash and one range request). */
const ROUNDS_AT_ONCE = 8;
/** After a stop is asked, rounds in progress get this long to finish their write. */
const STOP_GRACE_MS = 2_000;
/** State is saved at most this often while following. */
const SAVE_EVERY_MS = 5_000;
const STATE_VERSION = 1;

/** Why a file was fetched whole. */
export type FetchReason =
  /** It appeared on the server. */
  | "new"
  /** It is on the server but not (or no longer) here. */
  | "missing"
  /** Its last local bytes no longer match the server's: rewritten in place. */
  | "rewritten"
  /** Another file now has its name (rotated, or replaced by a rename). */
  | "replaced"
  /** It got shorter on the server. */
  | "truncated";

/** What the follower reports while it runs. */
export type FollowEvent =
  /** Progress of the first pull (the normal engine). */
  | { type: "pull"; event: PullEvent }
  /** The first pull finished. */
  | { type: "pulled"; summary: PullSummary }
  /** Following starts (after the first pull or the resumed check). */
  | {
    type: "following";
    local: string;
    files: number;
    resumed: boolean;
    fromNow: boolean;
  }
  /** New bytes were appended to a local file. */
  | { type: "appended"; path: string; bytes: number; size: number }
  /** A file was fetched whole. */
  | { type: "fetched"; path: string; bytes: number; reason: FetchReason }
  /** A directory appeared. */
  | { type: "dir"; path: string }
  /** The server could not be reached; the next attempt is in `delayMs`. */
  | {
    type: "reconnecting";
    attempt: number;
    max: number;
    delayMs: number;
    message: string;
  }
  /** The server answers again after `reconnecting`. */
  | { type: "reconnected" }
  /** The followed path is gone from the server; the follower waits for it to come back. */
  | { type: "waiting"; message: string }
  /** Something the user should know that is not a failure. */
  | { type: "warning"; path?: string; message: string }
  /** One file could not be synchronised (it is tried again on its next change). */
  | { type: "failure"; path: string; message: string };

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
  /** Files in progress at once during the first pull (`-n`). */
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
}

/** What a follower did, returned when it is stopped. */
export interface FollowSummary {
  /** Bytes appended to local files (first pull excluded). */
  appendedBytes: number;
  /** Files fetched whole while following (first pull excluded). */
  fetchedFiles: number;
  fetchedBytes: number;
  seconds: number;
}

/**
 * Follows `remotePath` into `localPath` until `signal` aborts, then returns.
 * Throws `ConnectError` when the server cannot be reached (or refuses) at the
 * start, or `Max_timeout_retry` times in a row later; `LocalPathError` when
 * the destination cannot be written.
 */
export async function follow(options: FollowOptions): Promise<FollowSummary> {
  return await new Follower(options).run();
}

/** The saved state of one follower (remote root, local root, and per file its remote offset of local byte 0). */
export interface FollowState {
  version: 1;
  baseUrl: string;
  remotePath: string;
  local: string;
  /** Set while the first pull runs: a restart runs it again. */
  pulling?: boolean;
  files: Record<string, { base: number; id?: string; etag?: string }>;
}

/** Reads a follower state file; undefined when absent or unusable (the follower then starts afresh). */
export async function loadFollowState(
  path: string,
): Promise<FollowState | undefined> {
  try {
    if (!(await Deno.lstat(path)).isFile) return undefined;
    const s = JSON.parse(await Deno.readTextFile(path));
    if (
      s?.version !== STATE_VERSION || typeof s.baseUrl !== "string" ||
      typeof s.remotePath !== "string" || typeof s.local !== "string" ||
      typeof s.files !== "object" || s.files === null
    ) return undefined;
    const files: FollowState["files"] = {};
    for (const [rel, f] of Object.entries(s.files as Record<string, unknown>)) {
      const e = f as { base?: unknown; id?: unknown; etag?: unknown };
      if (!Number.isSafeInteger(e?.base) || (e.base as number) < 0) continue;
      files[rel] = {
        base: e.base as number,
        id: typeof e.id === "string" ? e.id : undefined,
        etag: typeof e.etag === "string" ? e.etag : undefined,
      };
    }
    const state: FollowState = {
      version: STATE_VERSION,
      baseUrl: s.baseUrl,
      remotePath: s.remotePath,
      local: s.local,
      files,
    };
    if (s.pulling === true) state.pulling = true;
    return state;
  } catch {
    return undefined;
  }
}

/** Writes a follower state file atomically (temporary file, fsync, rename). */
export async function saveFollowState(
  path: string,
  state: FollowState,
): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  const temp = `${path}.tmp`;
  await Deno.remove(temp).catch(() => {});
  const file = await Deno.open(temp, { write: true, createNew: true });
  try {
    await file.write(new TextEncoder().encode(JSON.stringify(state)));
    await file.sync();
  } finally {
    file.close();
  }
  await Deno.rename(temp, path);
}

/** A remote file being followed. */
interface Tracked {
  /** Remote offset of local byte 0: 0, except for `--from-now` files. */
  base: number;
  /** Device and inode of the remote file last seen under this name. */
  id?: string;
  /** Its last ETag seen. */
  etag?: string;
}

/** One pass over a path: running, and whether another change came meanwhile. */
interface Slot {
  dirty: boolean;
  hint?: StatEntry;
  attempt: number;
}

/** The remote file went away (deletions are not propagated). */
class Gone extends Error {}

class Follower {
  readonly #o: FollowOptions;
  readonly #remote: Remote;
  readonly #rounds = new Limiter(ROUNDS_AT_ONCE);
  /** Aborted at once on stop: no new poll, no new round. */
  readonly #stop = new AbortController();
  /** Aborted after the grace period: requests of rounds still running. */
  readonly #hard = new AbortController();
  readonly #files = new Map<string, Tracked>();
  readonly #dirs = new Set<string>();
  readonly #slots = new Map<string, Slot>();
  readonly #tasks = new Set<Promise<void>>();
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  readonly #verified = new Set<string>();
  readonly #include?: (path: string) => boolean;
  readonly #exclude?: (path: string) => boolean;
  readonly #summary: FollowSummary = {
    appendedBytes: 0,
    fetchedFiles: 0,
    fetchedBytes: 0,
    seconds: 0,
  };
  #dest = "";
  #isDir = false;
  #stateDirty = false;
  #lastSave = 0;
  /** The first pull has not finished: a restart runs it again (it resumes). */
  #pulling = false;
  /** The first scan of a `--from-now` run is still to do (it records offsets instead of fetching). */
  #fromNowScan = false;
  /** Why following was stopped: a server that cannot be trusted further. */
  #fatal?: Error;

  constructor(options: FollowOptions) {
    this.#o = options;
    this.#remote = new Remote({
      baseUrl: options.baseUrl,
      client: options.client,
      sign: options.sign,
      idleTimeoutMs: options.settings.dataTimeout * 1000,
      onRefuse: (error) => this.#halt(error),
    });
    const globs = { dot: true, basename: true };
    if (options.include?.length) {
      this.#include = picomatch(options.include, globs);
    }
    if (options.exclude?.length) {
      this.#exclude = picomatch(options.exclude, globs);
    }
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
      await this.#drain();
      for (const timer of this.#timers) clearTimeout(timer);
      if (this.#dest !== "") await this.#saveState(true);
    }
    if (this.#fatal !== undefined) throw this.#fatal;
    this.#summary.seconds = (performance.now() - started) / 1000;
    return this.#summary;
  }

  // ------------------------------------------------------------ start

  /** Root, cursor, first pull or resumed check; leaves the cursor in #cursor. */
  #cursor: string | null = null;

  async #start(): Promise<void> {
    const { remotePath, localPath } = this.#o;
    let root: StatEntry;
    try {
      root = await this.#remote.stat(remotePath, this.#stop.signal);
    } catch (error) {
      throw this.#rootError(error);
    }
    this.#isDir = root.type === "dir";
    const base = posix.basename(remotePath);
    const into = localPath.endsWith("/") ||
      ((!this.#isDir || this.#o.scpPlacement === true) &&
        isDirectory(localPath));
    this.#dest = into && base !== "" ? join(localPath, base) : localPath;
    if (!this.#isDir && isDirectory(this.#dest)) {
      throw new LocalPathError(this.#dest, "it is a directory");
    }
    if (this.#isDir && exists(this.#dest) && !isDirectory(this.#dest)) {
      throw new LocalPathError(this.#dest, "it exists and is not a directory");
    }
    try {
      Deno.mkdirSync(this.#isDir ? this.#dest : dirname(this.#dest), {
        recursive: true,
      });
    } catch (error) {
      throw new LocalPathError(this.#dest, reason(error), error);
    }

    const saved = this.#o.stateFile === undefined
      ? undefined
      : await loadFollowState(this.#o.stateFile);
    const resumed = saved !== undefined &&
      saved.baseUrl === this.#o.baseUrl && saved.remotePath === remotePath &&
      saved.local === this.#dest;
    if (resumed) {
      for (const [rel, f] of Object.entries(saved.files)) {
        this.#files.set(rel, { ...f });
      }
    }

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
      : !fromNow && !hasData(this.#dest, this.#isDir);
    if (pullFirst) {
      this.#pulling = true;
      this.#stateDirty = true;
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
      });
      this.#emit({ type: "pulled", summary });
    }
    if (this.#stop.signal.aborted) return;
    // Files the pull skipped, failed, or saw change are caught up here; a
    // resumed follower continues each file from its last byte.
    try {
      await this.#rescan(fromNow);
    } catch (error) {
      if (!isRetryable(error, [409])) throw this.#rootError(error);
      // The server went away meanwhile: the poll loop reconnects, then scans.
      this.#cursor = null;
      this.#fromNowScan = fromNow;
    }
    this.#pulling = false;
    this.#stateDirty = true;
    await this.#saveState(true);
    this.#emit({
      type: "following",
      local: this.#dest,
      files: this.#files.size,
      resumed,
      fromNow,
    });
  }

  // ------------------------------------------------------------ polling

  async #pollLoop(): Promise<void> {
    const max = this.#o.settings.maxTimeoutRetry;
    const base = this.#o.retryBaseMs ?? 500;
    let failures = 0;
    let waiting = false;
    while (!this.#stop.signal.aborted) {
      try {
        const result = await this.#watch(this.#cursor);
        if (failures > 0) this.#emit({ type: "reconnected" });
        failures = 0;
        waiting = false;
        if (result.changed.length > this.#maxEntries) {
          this.#halt(
            new ConnectError(
              `Watch answer from ${this.#remote.host} names more than ${this.#maxEntries} paths, the most one run accepts (--max-entries)`,
            ),
          );
          return;
        }
        if (result.rescan) {
          await this.#rescan(this.#fromNowScan);
          this.#fromNowScan = false;
        } else {
          for (const rel of result.changed) this.#onChange(rel);
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
        if (failures > max) {
          throw new ConnectError(
            `Cannot reach ${this.#remote.host} after ${failures} attempts: ${
              this.#why(error)
            }; stopped following`,
            { cause: error },
          );
        }
        const delay = Math.min(30_000, base * 2 ** (failures - 1));
        const jittered = Math.round(delay / 2 + Math.random() * delay / 2);
        this.#emit({
          type: "reconnecting",
          attempt: failures,
          max,
          delayMs: jittered,
          message: this.#why(error),
        });
        await sleep(jittered, this.#stop.signal).catch(() => {});
      }
    }
  }

  /** One long-poll; the server answers at once without a cursor (rescan) or when something changes. */
  async #watch(cursor: string | null): Promise<WatchResult> {
    const s = this.#o.settings;
    const timeout = Math.min(
      25,
      s.dataTimeout >= 10 ? s.dataTimeout - 5 : s.dataTimeout / 2,
    );
    const query: Record<string, string> = {
      path: this.#o.remotePath,
      timeout: String(timeout),
      interval: String(Math.min(3600, Math.max(0.05, s.syncIntervalSec))),
    };
    if (cursor !== null) query.cursor = cursor;
    const ex = await this.#remote.send(this.#remote.url(API.watch, query), {
      signal: this.#stop.signal,
    });
    try {
      const body = await ex.response.json() as WatchResult;
      if (
        typeof body?.cursor !== "string" || !Array.isArray(body.changed) ||
        typeof body.rescan !== "boolean"
      ) throw new ProtocolError("Malformed watch answer");
      return body;
    } finally {
      ex.done();
    }
  }

  /** A path the server says changed. */
  #onChange(rel: string): void {
    if (rel === "") {
      if (!this.#isDir) this.#schedule("");
      return;
    }
    if (!this.#isDir || !this.#allowed(rel)) return;
    this.#schedule(rel);
  }

  /** Every entry of the remote root compared with what is known; only what differs gets a round. */
  async #rescan(initial: boolean): Promise<void> {
    const signal = this.#stop.signal;
    if (!this.#isDir) {
      const st = await this.#remote.stat(this.#o.remotePath, signal);
      if (st.type === "file") this.#reconcile("", st, initial);
      return;
    }
    let count = 0;
    for await (const entry of this.#remote.list(this.#o.remotePath, signal)) {
      if (signal.aborted) return;
      this.#countListed(++count, this.#o.remotePath);
      if (!this.#allowed(entry.path)) continue;
      this.#reconcile(entry.path, entry, initial);
    }
  }

  /** The most entries one listing may hold, and paths followed at once. */
  get #maxEntries(): number {
    return this.#o.maxEntries ?? DEFAULT_MAX_ENTRIES;
  }

  /** Stops following when one listing holds more than the bound (`count` entries so far). */
  #countListed(count: number, remote: string): void {
    if (count <= this.#maxEntries) return;
    const error = new ConnectError(
      `Listing of ${
        JSON.stringify(remote)
      } from ${this.#remote.host} has more than ${this.#maxEntries} entries, the most one run accepts (--max-entries)`,
    );
    this.#halt(error);
    throw error;
  }

  /** Stops following when a path not yet known would exceed the bound on paths followed. */
  #admit(rel: string): void {
    if (this.#files.has(rel) || this.#dirs.has(rel)) return;
    if (this.#files.size + this.#dirs.size < this.#maxEntries) return;
    const error = new ConnectError(
      `${
        JSON.stringify(this.#o.remotePath)
      } on ${this.#remote.host} has more than ${this.#maxEntries} entries to follow, the most one run accepts (--max-entries)`,
    );
    this.#halt(error);
    throw error;
  }

  /** Stops following for good (a redirect, a bound exceeded); {@linkcode follow} then throws `error`. */
  #halt(error: Error): void {
    if (this.#fatal !== undefined) return;
    this.#fatal = error;
    this.#stop.abort(error);
    this.#hard.abort(error);
  }

  /** Compares one remote entry with the local side; schedules a round when they differ. */
  #reconcile(rel: string, entry: StatEntry, initial: boolean): void {
    this.#admit(rel);
    if (entry.type === "dir") {
      if (this.#wanted(rel)) this.#ensureDir(rel);
      else this.#dirs.add(rel);
      return;
    }
    if (!this.#wanted(rel)) return;
    let t = this.#files.get(rel);
    const parts = parseEtag(entry.etag);
    if (t === undefined && initial && this.#o.fromNow) {
      t = { base: entry.size, id: parts?.id, etag: entry.etag };
      this.#files.set(rel, t);
      this.#stateDirty = true;
      return;
    }
    let local: Deno.FileInfo | undefined;
    try {
      local = Deno.lstatSync(this.#target(rel));
    } catch {
      local = undefined;
    }
    if (local?.isFile) {
      const sameSize = (t?.base ?? 0) + local.size === entry.size;
      const sameMtime = (t?.base ?? 0) === 0 &&
        local.mtime?.getTime() === Math.trunc(entry.mtime);
      if (sameSize && (t?.etag === entry.etag || sameMtime)) {
        if (t === undefined) {
          this.#files.set(rel, { base: 0, id: parts?.id, etag: entry.etag });
          this.#stateDirty = true;
        } else this.#note(t, entry.etag, parts?.id);
        return;
      }
    }
    this.#schedule(rel, entry);
  }

  // ------------------------------------------------------------ rounds

  /** Runs a round for `rel`, or marks the one running to go again (no change is lost, none is fetched twice). */
  #schedule(rel: string, hint?: StatEntry): void {
    if (this.#stop.signal.aborted) return;
    const existing = this.#slots.get(rel);
    if (existing !== undefined) {
      existing.dirty = true;
      existing.hint = undefined;
      return;
    }
    const slot: Slot = { dirty: true, hint, attempt: 0 };
    this.#slots.set(rel, slot);
    this.#spawn(this.#runSlot(rel, slot));
  }

  async #runSlot(rel: string, slot: Slot): Promise<void> {
    let release;
    try {
      release = await this.#rounds.acquire(this.#stop.signal);
    } catch {
      this.#slots.delete(rel);
      return;
    }
    let retryIn = 0;
    try {
      slot.dirty = false;
      const hint = slot.hint;
      slot.hint = undefined;
      await this.#round(rel, hint);
      slot.attempt = 0;
    } catch (error) {
      if (!this.#hard.signal.aborted && !this.#stop.signal.aborted) {
        if (isRetryable(error, [409]) || error instanceof ShortBody) {
          // The poll loop decides whether the server is gone; the file is tried again meanwhile.
          slot.attempt++;
          slot.dirty = true;
          retryIn = Math.min(30_000, 250 * 2 ** Math.min(slot.attempt, 7));
          if (slot.attempt === 5) {
            this.#emit({
              type: "warning",
              path: this.#label(rel),
              message: `Still failing after 5 attempts (${
                message(error)
              }); trying again every ${retryIn / 1000} s at most`,
            });
          }
        } else {
          this.#emit({
            type: "failure",
            path: this.#label(rel),
            message: message(error),
          });
        }
      }
    } finally {
      release();
    }
    if (this.#stop.signal.aborted || !slot.dirty) {
      this.#slots.delete(rel);
      return;
    }
    // Another change came meanwhile: queue behind everyone else, so a busy file cannot starve the others.
    if (retryIn > 0) await sleep(retryIn, this.#stop.signal).catch(() => {});
    if (this.#stop.signal.aborted) {
      this.#slots.delete(rel);
      return;
    }
    this.#spawn(this.#runSlot(rel, slot));
  }

  /** One pass over one path: a directory is listed, a file caught up (appended, or fetched whole). */
  async #round(rel: string, hint?: StatEntry): Promise<void> {
    const signal = this.#hard.signal;
    const remote = this.#remotePathOf(rel);
    let t = this.#files.get(rel);
    if (t === undefined || (rel !== "" && this.#dirs.has(rel))) {
      this.#admit(rel);
      // Not a file we follow: find out what it is.
      let st: StatEntry;
      try {
        st = hint ?? await this.#remote.stat(remote, signal);
      } catch (error) {
        if (error instanceof HttpError && error.status === 404) return;
        throw error;
      }
      if (st.type === "dir") {
        await this.#syncDir(rel);
        return;
      }
      this.#dirs.delete(rel);
      if (!this.#wanted(rel)) return;
      if (t === undefined) {
        t = { base: 0 };
        this.#files.set(rel, t);
        this.#stateDirty = true;
      }
      hint = st;
    }
    const target = this.#target(rel);
    let local: Deno.FileInfo | undefined;
    try {
      local = Deno.lstatSync(target);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        throw new LocalPathError(target, reason(error), error);
      }
    }
    if (local !== undefined && !local.isFile) {
      throw new LocalPathError(target, "it exists and is not a regular file");
    }
    if (local === undefined && t.base === 0) {
      await this.#fetchWhole(rel, t, t.id === undefined ? "new" : "missing");
      return;
    }
    let why: FetchReason | undefined;
    try {
      why = await this.#append(rel, t, target, local);
    } catch (error) {
      if (error instanceof Gone) return;
      throw error;
    }
    if (why !== undefined) await this.#fetchWhole(rel, t, why);
  }

  /** A directory that appeared (or changed): created here, and everything in it compared. */
  async #syncDir(rel: string): Promise<void> {
    if (!this.#dirs.has(rel) && this.#wanted(rel)) {
      this.#ensureDir(rel);
      this.#emit({ type: "dir", path: this.#label(rel) });
    }
    this.#dirs.add(rel);
    const signal = this.#hard.signal;
    let count = 0;
    try {
      for await (
        const entry of this.#remote.list(this.#remotePathOf(rel), signal)
      ) {
        this.#countListed(++count, this.#remotePathOf(rel));
        const child = `${rel}/${entry.path}`;
        if (!this.#allowed(child)) continue;
        this.#reconcile(child, entry, false);
      }
    } catch (error) {
      if (error instanceof HttpError && error.status === 404) return;
      throw error;
    }
  }

  /**
   * Appends what the server has past the local end. The hash of the last
   * local bytes (at most {@linkcode TAIL_BYTES}) and the range from the
   * local end are asked at once; the range's bytes are written only once the
   * hash matched, so the local file never holds a byte the server does not.
   * Returns why the file must be fetched whole instead, if it must. The
   * local file is read and written only through handles proven to be the
   * regular file `local` (lstat-ed by the caller): a link planted at its
   * name is never followed.
   */
  async #append(
    rel: string,
    t: Tracked,
    target: string,
    local: Deno.FileInfo | undefined,
  ): Promise<FetchReason | undefined> {
    const localSize = local?.size ?? 0;
    const remote = this.#remotePathOf(rel);
    const offset = t.base + localSize;
    const k = Math.min(TAIL_BYTES, localSize);
    const round = new AbortController();
    const onAbort = () => round.abort(this.#hard.signal.reason);
    this.#hard.signal.addEventListener("abort", onAbort, { once: true });
    const hashP = k > 0
      ? this.#hash(remote, offset - k, k, round.signal)
      : Promise.resolve(undefined);
    // Never left unhandled: the range may fail first.
    hashP.catch(() => {});
    let ex: Exchange | undefined;
    try {
      ex = await this.#remote.send(
        this.#remote.url(API.file, { path: remote }),
        {
          headers: {
            range: rangeHeader({ start: offset }),
            "accept-encoding": "identity",
          },
          accept: [416],
          signal: round.signal,
        },
      );
      const tail = await hashP;
      if (tail === "gone") throw new Gone();
      const res = ex.response;
      const etag = res.headers.get("etag");
      const now = parseEtag(etag);
      const hashed = typeof tail === "object"
        ? parseEtag(tail.etag)
        : undefined;
      // Another inode under the same name: rotated or replaced.
      const id = now?.id ?? hashed?.id;
      if (t.id !== undefined && id !== undefined && id !== t.id) {
        return "replaced";
      }
      if (tail === "short") {
        return "truncated";
      }
      if (tail !== undefined) {
        const mine = await localTailHash(target, local!, localSize - k, k);
        if (mine !== tail.sha256) {
          return t.base > 0 ? "replaced" : "rewritten";
        }
        if (now !== undefined && hashed !== undefined && hashed.id !== now.id) {
          // The hash and the range saw two different files: ask again.
          throw new ShortBody(`"${rel}" was replaced while being read`);
        }
      }
      if (res.status === 416) {
        const m = /^bytes \*\/(\d+)$/.exec(
          res.headers.get("content-range") ?? "",
        );
        const size = m === null ? NaN : Number(m[1]);
        if (!Number.isSafeInteger(size)) {
          throw new ProtocolError(
            `Unsatisfiable range for "${rel}" without a valid Content-Range`,
          );
        }
        if (size < offset) return "truncated";
        this.#note(t, etag, id);
        return;
      }
      if (res.status === 200) {
        // Only an empty file ignores a range: it was truncated to nothing.
        if (offset > 0) return "truncated";
        throw new ProtocolError(`Unexpected 200 for a range of "${rel}"`);
      }
      if (res.status !== 206) {
        throw new ProtocolError(
          `Unexpected status ${res.status} for a range of "${rel}"`,
        );
      }
      const cr = parseContentRange(res.headers.get("content-range"));
      if (cr === undefined || cr.range.start !== offset) {
        throw new ProtocolError(
          `Range response for "${rel}" does not start at byte ${offset}`,
        );
      }
      const end = cr.range.end;
      const file = openTarget(target, local);
      let written: number;
      try {
        written = await this.#writeBody(
          ex,
          file,
          target,
          offset - t.base,
          end - t.base,
        );
        if (
          t.base === 0 && now !== undefined && now.size === end &&
          written === end - offset
        ) {
          await file.utime(new Date(), new Date(now.mtime)).catch(() => {});
        }
      } finally {
        file.close();
      }
      this.#summary.appendedBytes += written;
      if (written > 0) {
        this.#emit({
          type: "appended",
          path: this.#label(rel),
          bytes: written,
          size: offset + written - t.base,
        });
      }
      if (offset + written < end) {
        throw new ShortBody(
          `Body for "${rel}" ended at byte ${offset + written} of ${end}`,
        );
      }
      this.#note(t, etag, id);
    } catch (error) {
      if (error instanceof HttpError && error.status === 404) throw new Gone();
      throw error;
    } finally {
      this.#hard.signal.removeEventListener("abort", onAbort);
      round.abort();
      if (ex !== undefined) {
        ex.done();
        await ex.response.body?.cancel().catch(() => {});
      }
    }
  }

  /** `GET /v1/hash` of a span: the result, "short" when the file is now shorter, "gone" when it is gone. */
  async #hash(
    remote: string,
    offset: number,
    length: number,
    signal: AbortSignal,
  ): Promise<HashResult | "short" | "gone"> {
    let ex: Exchange;
    try {
      ex = await this.#remote.send(
        this.#remote.url(API.hash, {
          path: remote,
          offset: String(offset),
          length: String(length),
        }),
        { signal },
      );
    } catch (error) {
      if (error instanceof HttpError) {
        if (error.status === 416) return "short";
        if (error.status === 404) return "gone";
      }
      throw error;
    }
    try {
      const h = await ex.response.json() as HashResult;
      if (typeof h?.sha256 !== "string" || typeof h.etag !== "string") {
        throw new ProtocolError("Malformed hash answer");
      }
      return h;
    } finally {
      ex.done();
    }
  }

  /** Streams a body into `file` (named `path`) at local bytes `[start, end)`, then fdatasync; returns the bytes written (all on the server). */
  async #writeBody(
    ex: Exchange,
    file: Deno.FsFile,
    path: string,
    start: number,
    end: number,
  ): Promise<number> {
    const body = ex.response.body;
    if (body === null) {
      throw new ProtocolError(`Range response for "${path}" has no body`);
    }
    let pos = start;
    const reader = body.getReader();
    let readError: unknown;
    try {
      await file.seek(pos, Deno.SeekMode.Start);
      while (pos < end) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (error) {
          readError = error;
          break;
        }
        if (chunk.done) break;
        ex.kick();
        let data = chunk.value;
        // Never past the range asked: a longer body is cut, not written.
        if (data.length > end - pos) data = data.subarray(0, end - pos);
        let n = 0;
        while (n < data.length) n += await file.write(data.subarray(n));
        pos += data.length;
      }
      await file.syncData();
    } catch (error) {
      throw new LocalPathError(path, reason(error), error);
    } finally {
      reader.releaseLock();
    }
    const written = pos - start;
    if (readError !== undefined && pos < end) {
      if (ex.signal.aborted) throw ex.signal.reason;
      throw new ShortBody(`Body for "${path}" broke: ${message(readError)}`);
    }
    return written;
  }

  /** Fetches the whole file into its `.hsync-part`, then renames it into place. */
  async #fetchWhole(rel: string, t: Tracked, why: FetchReason): Promise<void> {
    const signal = this.#hard.signal;
    const target = this.#target(rel);
    const part = partPathFor(target);
    let file: Deno.FsFile;
    try {
      // A leftover part or a planted link goes; O_EXCL refuses one planted
      // meanwhile, and the handle (not the name) takes every byte.
      await Deno.remove(part).catch((error) => {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      });
      file = createChecked(part);
    } catch (error) {
      if (error instanceof LocalPathError) throw error;
      throw new LocalPathError(part, reason(error), error);
    }
    const id = fileIdOf(file.statSync());
    let placed = false;
    let ex: Exchange | undefined;
    try {
      try {
        ex = await this.#remote.file(this.#remotePathOf(rel), { signal });
      } catch (error) {
        if (error instanceof HttpError && error.status === 404) return;
        throw error;
      }
      const res = ex.response;
      if (res.status !== 200) {
        throw new ProtocolError(
          `Unexpected status ${res.status} for "${rel}"`,
        );
      }
      const length = Number(res.headers.get("content-length"));
      if (!Number.isSafeInteger(length)) {
        throw new ProtocolError(`Response for "${rel}" has no Content-Length`);
      }
      const etag = res.headers.get("etag");
      const parts = parseEtag(etag);
      const written = await this.#writeBody(ex, file, part, 0, length);
      if (written < length) {
        throw new ShortBody(
          `Body for "${rel}" ended at byte ${written} of ${length}`,
        );
      }
      try {
        if (parts !== undefined && parts.size === length) {
          await file.utime(new Date(), new Date(parts.mtime));
        }
        if (this.#o.preserve) {
          const mode = (await this.#remote.stat(this.#remotePathOf(rel), signal)
            .catch(() => undefined))?.mode;
          if (mode !== undefined) {
            chmodOpened(file, part, modeToApply(mode, this.#o.specialModes));
          }
        }
        checkName(part, id);
        await Deno.rename(part, target);
        placed = true;
      } catch (error) {
        if (error instanceof LocalPathError) throw error;
        throw new LocalPathError(target, reason(error), error);
      }
      if (t.base !== 0) {
        t.base = 0;
        this.#stateDirty = true;
      }
      this.#note(t, etag, parts?.id);
      this.#summary.fetchedFiles++;
      this.#summary.fetchedBytes += written;
      this.#emit({
        type: "fetched",
        path: this.#label(rel),
        bytes: written,
        reason: why,
      });
    } finally {
      file.close();
      if (ex !== undefined) {
        ex.done();
        await ex.response.body?.cancel().catch(() => {});
      }
      if (!placed) await Deno.remove(part).catch(() => {});
    }
  }

  /**
   * Remembers what the server said about a file. A new ETag alone (every
   * append makes one) does not make the state worth saving: at a restart a
   * stale one costs one tail hash, not a refetch.
   */
  #note(t: Tracked, etag: string | null, id: string | undefined): void {
    if (etag !== null) t.etag = etag;
    if (id !== undefined && id !== t.id) {
      t.id = id;
      this.#stateDirty = true;
    }
  }

  // ------------------------------------------------------------ paths

  /** Whether a relative path from the server is safe (warned about when not) and not excluded. */
  #allowed(rel: string): boolean {
    let parts: string[];
    try {
      parts = safeComponents(rel);
    } catch (error) {
      this.#emit({ type: "warning", path: rel, message: message(error) });
      return false;
    }
    const exclude = this.#exclude;
    // An excluded directory excludes everything below it, as in a pull.
    return exclude === undefined || !prefixesOf(parts).some((p) => exclude(p));
  }

  /** Whether an allowed path is included (`--include`): a file is fetched, a directory made. */
  #wanted(rel: string): boolean {
    const include = this.#include;
    if (include === undefined || rel === "") return true;
    return prefixesOf(rel.split("/")).some((p) => include(p));
  }

  /** The local path of a relative path (its parent directories made and checked). */
  #target(rel: string): string {
    if (rel === "") return this.#dest;
    const parts = safeComponents(rel);
    try {
      return join(
        ensureDirs(this.#dest, parts.slice(0, -1), this.#verified),
        parts[parts.length - 1],
      );
    } catch (error) {
      // A directory removed here meanwhile: check again from the top once.
      this.#verified.clear();
      if (error instanceof LocalPathError) throw error;
      throw new LocalPathError(join(this.#dest, ...parts), reason(error));
    }
  }

  #ensureDir(rel: string): void {
    if (rel === "") return;
    ensureDirs(this.#dest, safeComponents(rel), this.#verified);
    this.#dirs.add(rel);
  }

  #remotePathOf(rel: string): string {
    return rel === ""
      ? this.#o.remotePath
      : posix.join(this.#o.remotePath, rel);
  }

  /** The name shown to the user. */
  #label(rel: string): string {
    return rel === "" ? posix.basename(this.#o.remotePath) || "/" : rel;
  }

  // ------------------------------------------------------------ bookkeeping

  async #saveState(force: boolean): Promise<void> {
    const file = this.#o.stateFile;
    if (file === undefined || !this.#stateDirty) return;
    const now = performance.now();
    if (!force && now - this.#lastSave < SAVE_EVERY_MS) return;
    this.#lastSave = now;
    this.#stateDirty = false;
    const files: FollowState["files"] = {};
    for (const [rel, t] of this.#files) files[rel] = { ...t };
    try {
      await saveFollowState(file, {
        version: STATE_VERSION,
        baseUrl: this.#o.baseUrl,
        remotePath: this.#o.remotePath,
        local: this.#dest,
        ...(this.#pulling ? { pulling: true } : {}),
        files,
      });
    } catch (error) {
      this.#stateDirty = true;
      this.#emit({
        type: "warning",
        message: `Cannot save the follow state to "${file}": ${reason(error)}`,
      });
    }
  }

  #spawn(task: Promise<void>): void {
    const tracked: Promise<void> = task.catch((error) => {
      this.#emit({
        type: "failure",
        path: "(internal)",
        message: message(error),
      });
    }).finally(() => this.#tasks.delete(tracked));
    this.#tasks.add(tracked);
  }

  async #drain(): Promise<void> {
    while (this.#tasks.size > 0) await Promise.all([...this.#tasks]);
  }

  /** Why the server could not be reached, without repeating its address. */
  #why(error: unknown): string {
    const text = message(error);
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

/** `a`, `a/b`, `a/b/c` for `a/b/c`: a filter on any of them applies to the path. */
function prefixesOf(parts: string[]): string[] {
  const out: string[] = [];
  for (let i = 1; i <= parts.length; i++) out.push(parts.slice(0, i).join("/"));
  return out;
}

/**
 * Opens the local file of an append: the regular file `local` when it
 * existed (never a link planted since), else a new one (`O_EXCL`).
 */
function openTarget(
  target: string,
  local: Deno.FileInfo | undefined,
): Deno.FsFile {
  if (local !== undefined) {
    return openChecked(target, { write: true, expected: fileIdOf(local) });
  }
  try {
    return createChecked(target);
  } catch (error) {
    if (error instanceof LocalPathError) throw error;
    throw new LocalPathError(target, reason(error), error);
  }
}

/** SHA-256 (hex) of `length` bytes from `offset` of the regular file `local` at `path`. */
async function localTailHash(
  path: string,
  local: Deno.FileInfo,
  offset: number,
  length: number,
): Promise<string> {
  const buffer = new Uint8Array(length);
  using file = openChecked(path, { expected: fileIdOf(local) });
  await file.seek(offset, Deno.SeekMode.Start);
  let n = 0;
  while (n < length) {
    const r = await file.read(buffer.subarray(n));
    if (r === null) break;
    n += r;
  }
  return createHash("sha256").update(buffer.subarray(0, n)).digest("hex");
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

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}
