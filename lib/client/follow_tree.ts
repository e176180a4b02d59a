/**
 * What a follower follows: every remote file and directory under the root it
 * knows, compared with the local side on each change or rescan, and the
 * rounds that catch a path up (one at a time per path, a few paths at once).
 */
import { join, posix } from "node:path";
import {
  ConnectError,
  describeError,
  HttpError,
  LocalPathError,
  reason,
} from "../shared/errors.ts";
import { parseEtag } from "../shared/file_identity.ts";
import { Limiter } from "../shared/limiter.ts";
import {
  isOmission,
  type ListOmission,
  type StatEntry,
} from "../shared/wire.ts";
import type { FollowEvent, FollowSummary } from "./follow_events.ts";
import {
  appendNew,
  type FetchReason,
  fetchWhole,
  type FollowedFile,
  Gone,
} from "./follow_file.ts";
import type { FollowState } from "./follow_state.ts";
import type { PathFilter } from "./filters.ts";
import { tooManyEntries } from "./listing.ts";
import { ensureDirs, safeComponents } from "./placement.ts";
import type { Remote } from "./remote.ts";
import { isRetryable, ShortBody, sleep } from "./retry.ts";
import { TaskGroup } from "./scheduler.ts";

/** Files synchronised at once (each round is one hash and one range request). */
const ROUNDS_AT_ONCE = 8;

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

/** What a {@linkcode FollowTree} is given. */
export interface FollowTreeOptions {
  /** The server. */
  remote: Remote;
  /** The followed root on the server, and whether it is a directory. */
  remotePath: string;
  /** True when the root is a directory. */
  isDir: boolean;
  /** Where it is followed locally. */
  dest: string;
  /** `--include`/`--exclude`. */
  filter: PathFilter;
  /** Skip what exists at the first scan. */
  fromNow: boolean;
  /** Most entries one listing may hold, and paths followed at once. */
  maxEntries: number;
  /** Also copy permission bits of files fetched whole. */
  preserve?: boolean;
  /** With `preserve`: setuid, setgid, sticky and write-for-others too. */
  specialModes?: boolean;
  /** Aborted at once on stop: no new round. */
  stop: AbortSignal;
  /** Aborted after the grace period: requests of rounds still running. */
  hard: AbortSignal;
  /** Counts what the rounds did. */
  summary: FollowSummary;
  /** Where events go. */
  emit: (event: FollowEvent) => void;
  /** Stops following for good (a bound exceeded). */
  stopRun: (error: Error) => void;
}

/** The files and directories followed, and the rounds that keep them identical. */
export class FollowTree {
  readonly #o: FollowTreeOptions;
  readonly #rounds = new Limiter(ROUNDS_AT_ONCE);
  /** Files followed, by path relative to the root. */
  readonly #followed = new Map<string, Tracked>();
  readonly #dirs = new Set<string>();
  readonly #slots = new Map<string, Slot>();
  readonly #verified = new Set<string>();
  readonly #tasks: TaskGroup;
  /** Something worth saving changed since the last {@linkcode FollowTree.snapshot}. */
  dirty = false;

  /** An empty tree. */
  constructor(options: FollowTreeOptions) {
    this.#o = options;
    this.#tasks = new TaskGroup((error) =>
      options.emit({
        type: "failure",
        path: "(internal)",
        message: describeError(error),
      })
    );
  }

  /** Files followed. */
  get files(): number {
    return this.#followed.size;
  }

  /** Takes the files of a saved state. */
  restore(files: FollowState["files"]): void {
    for (const [rel, f] of Object.entries(files)) {
      this.#followed.set(rel, { ...f });
    }
  }

  /** The files as saved in a state file (clears {@linkcode FollowTree.dirty}). */
  snapshot(): FollowState["files"] {
    this.dirty = false;
    const files: FollowState["files"] = {};
    for (const [rel, t] of this.#followed) files[rel] = { ...t };
    return files;
  }

  /** Waits for every round, including those started meanwhile. */
  async drain(): Promise<void> {
    await this.#tasks.drain();
  }

  /** A path the server says changed. */
  onChange(rel: string): void {
    if (rel === "") {
      if (!this.#o.isDir) this.#schedule("");
      return;
    }
    if (!this.#o.isDir || !this.#allowed(rel)) return;
    this.#schedule(rel);
  }

  /** Every entry of the remote root compared with what is known; only what differs gets a round. */
  async rescan(initial: boolean): Promise<void> {
    const { remote, remotePath, stop: signal } = this.#o;
    if (!this.#o.isDir) {
      const st = await remote.stat(remotePath, signal);
      if (st.type === "file") this.#reconcile("", st, initial);
      return;
    }
    let count = 0;
    for await (const entry of remote.list(remotePath, signal)) {
      if (signal.aborted) return;
      this.#countListed(++count, remotePath);
      if (isOmission(entry)) {
        this.#omitted("", entry);
        continue;
      }
      if (!this.#allowed(entry.path, entry.type === "dir")) continue;
      this.#reconcile(entry.path, entry, initial);
    }
  }

  /** An entry the server left out of a listing of `dir`: a warning when it is named (it is not followed). */
  #omitted(dir: string, line: ListOmission): void {
    if (line.path === undefined) return;
    const rel = dir === "" ? line.path : `${dir}/${line.path}`;
    const parts = rel.split("/");
    if (this.#o.filter.excludes(parts) || !this.#wanted(rel)) return;
    this.#o.emit({
      type: "warning",
      path: rel,
      message: `"${rel}" is not followed: ${line.message}`,
    });
  }

  /** Stops following when one listing holds more than the bound (`count` entries so far). */
  #countListed(count: number, remote: string): void {
    if (count <= this.#o.maxEntries) return;
    const error = tooManyEntries(
      remote,
      this.#o.remote.host,
      this.#o.maxEntries,
    );
    this.#o.stopRun(error);
    throw error;
  }

  /** Stops following when a path not yet known would exceed the bound on paths followed. */
  #admit(rel: string): void {
    if (this.#followed.has(rel) || this.#dirs.has(rel)) return;
    const max = this.#o.maxEntries;
    if (this.#followed.size + this.#dirs.size < max) return;
    const error = new ConnectError(
      `${
        JSON.stringify(this.#o.remotePath)
      } on ${this.#o.remote.host} has more than ${max} entries to follow, the most one run accepts (--max-entries)`,
      { refused: true },
    );
    this.#o.stopRun(error);
    throw error;
  }

  /** Compares one remote entry with the local side; schedules a round when they differ. */
  #reconcile(rel: string, entry: StatEntry, initial: boolean): void {
    this.#admit(rel);
    if (entry.type === "dir") {
      if (this.#wanted(rel, true)) this.#ensureDir(rel);
      else this.#dirs.add(rel);
      return;
    }
    if (!this.#wanted(rel, false)) return;
    let t = this.#followed.get(rel);
    const parts = parseEtag(entry.etag);
    if (t === undefined && initial && this.#o.fromNow) {
      t = { base: entry.size, id: parts?.id, etag: entry.etag };
      this.#followed.set(rel, t);
      this.dirty = true;
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
          this.#followed.set(rel, {
            base: 0,
            id: parts?.id,
            etag: entry.etag,
          });
          this.dirty = true;
        } else this.#note(t, entry.etag, parts?.id);
        return;
      }
    }
    this.#schedule(rel, entry);
  }

  // ------------------------------------------------------------ rounds

  /** Runs a round for `rel`, or marks the one running to go again (no change is lost, none is fetched twice). */
  #schedule(rel: string, hint?: StatEntry): void {
    if (this.#o.stop.aborted) return;
    const existing = this.#slots.get(rel);
    if (existing !== undefined) {
      existing.dirty = true;
      existing.hint = undefined;
      return;
    }
    const slot: Slot = { dirty: true, hint, attempt: 0 };
    this.#slots.set(rel, slot);
    this.#tasks.spawn(this.#runSlot(rel, slot));
  }

  async #runSlot(rel: string, slot: Slot): Promise<void> {
    const { stop, hard } = this.#o;
    let release;
    try {
      release = await this.#rounds.acquire(stop);
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
      if (!hard.aborted && !stop.aborted) {
        if (isRetryable(error, [409]) || error instanceof ShortBody) {
          // The poll loop decides whether the server is gone; the file is tried again meanwhile.
          slot.attempt++;
          slot.dirty = true;
          retryIn = Math.min(30_000, 250 * 2 ** Math.min(slot.attempt, 7));
          if (slot.attempt === 5) {
            this.#o.emit({
              type: "warning",
              path: this.#label(rel),
              message: `Still failing after 5 attempts (${
                describeError(error)
              }); trying again every ${retryIn / 1000} s at most`,
            });
          }
        } else {
          this.#o.emit({
            type: "failure",
            path: this.#label(rel),
            message: describeError(error),
          });
        }
      }
    } finally {
      release();
    }
    if (stop.aborted || !slot.dirty) {
      this.#slots.delete(rel);
      return;
    }
    // Another change came meanwhile: queue behind everyone else, so a busy file cannot starve the others.
    if (retryIn > 0) await sleep(retryIn, stop).catch(() => {});
    if (stop.aborted) {
      this.#slots.delete(rel);
      return;
    }
    this.#tasks.spawn(this.#runSlot(rel, slot));
  }

  /** One pass over one path: a directory is listed, a file caught up (appended, or fetched whole). */
  async #round(rel: string, hint?: StatEntry): Promise<void> {
    const signal = this.#o.hard;
    const remote = this.#remotePathOf(rel);
    let t = this.#followed.get(rel);
    if (t === undefined || (rel !== "" && this.#dirs.has(rel))) {
      this.#admit(rel);
      // Not a file we follow: find out what it is.
      let st: StatEntry;
      try {
        st = hint ?? await this.#o.remote.stat(remote, signal);
      } catch (error) {
        if (error instanceof HttpError && error.status === 404) return;
        throw error;
      }
      // A change is told before its kind is known: `dir/` rules apply now.
      if (rel !== "" && !this.#allowed(rel, st.type === "dir")) return;
      if (st.type === "dir") {
        await this.#syncDir(rel);
        return;
      }
      this.#dirs.delete(rel);
      if (!this.#wanted(rel, false)) return;
      if (t === undefined) {
        t = { base: 0 };
        this.#followed.set(rel, t);
        this.dirty = true;
      }
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
    const f: FollowedFile = {
      rel,
      remote,
      target,
      local,
      base: t.base,
      id: t.id,
    };
    if (local === undefined && t.base === 0) {
      await this.#fetchWholeAgain(f, t, t.id === undefined ? "new" : "missing");
      return;
    }
    let outcome;
    try {
      outcome = await appendNew(this.#o.remote, f, signal, (bytes, size) => {
        this.#o.summary.appendedBytes += bytes;
        if (bytes > 0) {
          this.#o.emit({
            type: "appended",
            path: this.#label(rel),
            bytes,
            size,
          });
        }
      });
    } catch (error) {
      if (error instanceof Gone) return;
      throw error;
    }
    if ("refetch" in outcome) {
      await this.#fetchWholeAgain(f, t, outcome.refetch);
    } else this.#note(t, outcome.etag, outcome.id);
  }

  /** Fetches a file whole (placed under its name), and follows it from byte 0. */
  async #fetchWholeAgain(
    f: FollowedFile,
    t: Tracked,
    why: FetchReason,
  ): Promise<void> {
    const got = await fetchWhole(this.#o.remote, f, this.#o.hard, this.#o);
    if (got === undefined) return;
    if (t.base !== 0) {
      t.base = 0;
      this.dirty = true;
    }
    this.#note(t, got.etag, got.id);
    this.#o.summary.fetchedFiles++;
    this.#o.summary.fetchedBytes += got.bytes;
    this.#o.emit({
      type: "fetched",
      path: this.#label(f.rel),
      bytes: got.bytes,
      reason: why,
    });
  }

  /** A directory that appeared (or changed): created here, and everything in it compared. */
  async #syncDir(rel: string): Promise<void> {
    if (!this.#dirs.has(rel) && this.#wanted(rel, true)) {
      this.#ensureDir(rel);
      this.#o.emit({ type: "dir", path: this.#label(rel) });
    }
    this.#dirs.add(rel);
    const remote = this.#remotePathOf(rel);
    let count = 0;
    try {
      for await (const entry of this.#o.remote.list(remote, this.#o.hard)) {
        this.#countListed(++count, remote);
        if (isOmission(entry)) {
          this.#omitted(rel, entry);
          continue;
        }
        const child = `${rel}/${entry.path}`;
        if (!this.#allowed(child, entry.type === "dir")) continue;
        this.#reconcile(child, entry, false);
      }
    } catch (error) {
      if (error instanceof HttpError && error.status === 404) return;
      throw error;
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
      this.dirty = true;
    }
  }

  // ------------------------------------------------------------ paths

  /** Whether a relative path from the server is safe (warned about when not) and not excluded (`isDir` unknown: excluded either way). */
  #allowed(rel: string, isDir?: boolean): boolean {
    let parts: string[];
    try {
      parts = safeComponents(rel);
    } catch (error) {
      this.#o.emit({
        type: "warning",
        path: rel,
        message: describeError(error),
      });
      return false;
    }
    // An excluded directory excludes everything below it, as in a pull.
    return !this.#o.filter.excludes(parts, isDir);
  }

  /** Whether an allowed path is included (`--include`): a file is fetched, a directory made. */
  #wanted(rel: string, isDir?: boolean): boolean {
    return rel === "" || this.#o.filter.includes(rel.split("/"), isDir);
  }

  /** The local path of a relative path (its parent directories made and checked). */
  #target(rel: string): string {
    const dest = this.#o.dest;
    if (rel === "") return dest;
    const parts = safeComponents(rel);
    try {
      return join(
        ensureDirs(dest, parts.slice(0, -1), this.#verified),
        parts[parts.length - 1],
      );
    } catch (error) {
      // A directory removed here meanwhile: check again from the top once.
      this.#verified.clear();
      if (error instanceof LocalPathError) throw error;
      throw new LocalPathError(join(dest, ...parts), reason(error));
    }
  }

  #ensureDir(rel: string): void {
    if (rel === "") return;
    ensureDirs(this.#o.dest, safeComponents(rel), this.#verified);
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
}
