/**
 * Planning a pull: each remote entry is checked, filtered and compared with
 * the local copy, and a file that differs is routed (empty, bundle or
 * ranges); directories are made as they are listed and get their times last.
 */
import { join, posix } from "node:path";
import { fileIdOf, openChecked } from "../shared/checked_open.ts";
import { chmodOpened } from "../shared/chmod_opened.ts";
import { describeError, reason } from "../shared/errors.ts";
import { mtimeMs } from "../shared/file_identity.ts";
import { linkStaysInside } from "../shared/link_target.ts";
import {
  linkTimeSettable,
  type ListEntry,
  type ListOmission,
  type StatEntry,
} from "../shared/wire.ts";
import type { PathFilter } from "./filters.ts";
import type { HardLinks } from "./hard_links.ts";
import { placeSymlink } from "./links.ts";
import {
  ensureDirs,
  probeDirs,
  safeComponents,
  setDirMeta,
} from "./placement.ts";
import type { FileJob, PullContext } from "./transfer.ts";
import type { Verifier } from "./verify.ts";

/** Files up to this size go through `POST /v1/bundle` (the server's own limit is 1 MiB). */
export const SMALL_FILE_BYTES = 256 * 1024;

/** How a file that differs travels: nothing to fetch, whole in a bundle, or in ranges. */
export type Route = "empty" | "bundle" | "ranges";

/** The route of a file of `size` bytes. */
export function routeOf(size: number): Route {
  if (size === 0) return "empty";
  return size <= SMALL_FILE_BYTES ? "bundle" : "ranges";
}

/** Options of {@linkcode Planner}. */
export interface PlannerOptions {
  /** The pulled root on the server. */
  root: string;
  /** Where the root goes locally (a directory for a tree). */
  dest: string;
  /** `--include`/`--exclude`. */
  filter: PathFilter;
  /** Decide "identical" by SHA-256 instead of size + mtime. */
  checksum: boolean;
  /** Compares local and remote SHA-256 for `checksum`. */
  verifier: Verifier;
  /** Hands on a file that differs (its target claimed). */
  dispatch: (job: FileJob) => Promise<void>;
  /** Runs a comparison in the background. */
  spawn: (task: Promise<void>) => void;
  /** `-P`: files and directories that exist already get the server's mode too. */
  preserve?: boolean;
  /** `--unsafe-links`: `symlink` entries whose target leaves the copy are created too. */
  unsafeLinks?: boolean;
  /** `-H`: names tagged as one file, linked instead of fetched twice. */
  hardLinks?: HardLinks;
  /** `-S`: told each file the listing says has holes. */
  sparse?: (job: FileJob) => void;
  /** Told an entry that is not transferred and is not a failure (no `path`: withheld). */
  omit: (path: string | undefined, message: string) => void;
  /** `--dry-run`: the same checks and comparisons, creating and changing nothing (links told as `plan` events). */
  dryRun?: boolean;
}

/** What sets a link's own time (node's fs), loaded with the first link a run makes. */
let linkTimes: typeof import("../shared/fd_times.ts") | undefined;

/** The omission of a `symlink` entry whose target leaves the copy, without `--unsafe-links`. */
export const UNSAFE_LINK_MESSAGE =
  "Symbolic link target leads outside the copy: not created (--unsafe-links creates it)";

/** Compares each listed entry with the local side and hands on what must be fetched. */
export class Planner {
  readonly #ctx: PullContext;
  readonly #o: PlannerOptions;
  /** Directories checked to be real directories in this run. */
  readonly #verified = new Set<string>();
  /** Directories this run created: nothing in them needs comparing. */
  readonly #created = new Set<string>();
  readonly #dirs: Array<
    { path: string; mtime: number; mode: number; created: boolean }
  > = [];
  /** `checksum` comparisons running beside the listing. */
  readonly #comparing = new Set<Promise<void>>();

  /** A planner for one pull. */
  constructor(context: PullContext, options: PlannerOptions) {
    this.#ctx = context;
    this.#o = options;
  }

  /** Records that the tree's root directory was made by this run. */
  rootCreated(): void {
    this.#created.add(this.#o.dest);
  }

  /** The job of a remote root that is a file; undefined when identical (counted as skipped). */
  async planRootFile(
    root: StatEntry,
    base: string,
  ): Promise<FileJob | undefined> {
    const modes = this.#ctx.readyForMode({ mode: root.mode, type: "file" });
    if (modes !== undefined) await modes;
    const job: FileJob = {
      rel: base || this.#o.dest,
      remote: this.#o.root,
      target: this.#o.dest,
      size: root.size,
      mtime: root.mtime,
      mode: root.mode,
      etag: root.etag,
    };
    if (root.sparse === true) this.#o.sparse?.(job);
    const same = this.#o.checksum
      ? await this.#sameByChecksum(job)
      : this.#sameBySizeAndMtime(job);
    return same ? undefined : job;
  }

  /** Plans one listing entry: refused, filtered out, a directory made, identical, or handed on. */
  async plan(entry: ListEntry): Promise<void> {
    const ctx = this.#ctx;
    const modes = ctx.readyForMode(entry);
    if (modes !== undefined) await modes;
    const dest = this.#o.dest;
    let parts: string[];
    try {
      parts = safeComponents(entry.path);
    } catch (error) {
      ctx.fail(entry.path, describeError(error));
      return;
    }
    if (!this.#o.filter.wants(parts, entry.type === "dir")) return;
    if (entry.type === "dir") {
      try {
        const path = this.#dirsTo(parts);
        this.#dirs.push({
          path,
          mtime: entry.mtime,
          mode: entry.mode,
          created: this.#created.has(path),
        });
      } catch (error) {
        ctx.fail(entry.path, describeError(error));
      }
      return;
    }
    if (entry.type === "symlink") {
      await this.#planSymlink(entry, parts);
      return;
    }
    const job: FileJob = {
      rel: entry.path,
      remote: posix.join(this.#o.root, entry.path),
      target: join(dest, ...parts),
      size: entry.size,
      mtime: entry.mtime,
      mode: entry.mode,
      etag: entry.etag,
    };
    if (entry.sparse === true) this.#o.sparse?.(job);
    let parent: string;
    try {
      parent = this.#dirsTo(parts.slice(0, -1));
    } catch (error) {
      ctx.fail(entry.path, describeError(error));
      return;
    }
    if (ctx.targets.has(job.target)) {
      ctx.fail(entry.path, "The server listed this path twice");
      return;
    }
    // The first name of a file with several is fetched as usual; the others wait for it.
    const links = this.#o.hardLinks;
    if (entry.inode !== undefined && links !== undefined) {
      // Claimed before a waiting name may be linked (and released) at once.
      ctx.targets.add(job.target);
      if (!links.claim(entry.inode, job)) return;
      ctx.targets.delete(job.target);
    }
    // A failed lstat costs about 50 us (it builds an error): skip it where
    // nothing can exist yet.
    const fresh = this.#created.has(parent);
    if (this.#o.checksum && !fresh) {
      // Hashing takes a while: a few comparisons run beside the listing.
      ctx.targets.add(job.target);
      const release = await ctx.limits.compares.acquire(ctx.signal);
      const task = (async () => {
        let same: boolean;
        try {
          same = await this.#sameByChecksum(job);
        } finally {
          release();
        }
        if (same || ctx.signal.aborted) ctx.targets.delete(job.target);
        else await this.#o.dispatch(job);
      })();
      const tracked = task.catch(() => {}).finally(() =>
        this.#comparing.delete(tracked)
      );
      this.#comparing.add(tracked);
      this.#o.spawn(task);
      return;
    }
    if (!fresh && this.#sameBySizeAndMtime(job)) return;
    ctx.targets.add(job.target);
    await this.#o.dispatch(job);
  }

  /** An omission line of the listing: told unless `--include`/`--exclude` leave its path out anyway. */
  omitted(line: ListOmission): void {
    if (line.path !== undefined) {
      try {
        if (!this.#o.filter.wants(safeComponents(line.path))) return;
      } catch {
        // A path that could not be written is still named.
      }
    }
    this.#o.omit(line.path, line.message);
  }

  /** A `symlink` entry (`-l`): created in place, unless its target leaves the copy. */
  async #planSymlink(entry: ListEntry, parts: string[]): Promise<void> {
    const ctx = this.#ctx;
    const text = entry.target ?? "";
    if (!this.#o.unsafeLinks && !linkStaysInside(entry.path, text)) {
      this.#o.omit(entry.path, UNSAFE_LINK_MESSAGE);
      return;
    }
    let path: string;
    try {
      // A link made earlier in this run is never gone through: ensureDirs refuses it.
      path = join(this.#dirsTo(parts.slice(0, -1)), parts[parts.length - 1]);
    } catch (error) {
      ctx.fail(entry.path, describeError(error));
      return;
    }
    if (ctx.targets.has(path)) {
      ctx.fail(entry.path, "The server listed this path twice");
      return;
    }
    const job: FileJob = {
      rel: entry.path,
      remote: posix.join(this.#o.root, entry.path),
      target: path,
      size: 0,
      mtime: entry.mtime,
      mode: entry.mode,
      etag: entry.etag,
    };
    if (this.#o.dryRun) {
      if (sameSymlink(path, text)) ctx.skipped(job);
      else {
        ctx.emit({ type: "plan", action: "transfer", path: job.rel, bytes: 0 });
      }
      return;
    }
    // node's fs sets a link's own time: loaded with the first link only.
    linkTimes ??= await import("../shared/fd_times.ts");
    let outcome;
    try {
      outcome = placeSymlink(path, text);
      // The link's own time, as rsync -a keeps it (a link already the same
      // gets it too when it differs: still skipped, nothing sent).
      if (
        linkTimeSettable(job.mtime) &&
        (outcome === "created" || mtimeMs(Deno.lstatSync(path)) !== job.mtime)
      ) {
        linkTimes.setLinkMtimeMs(path, job.mtime);
      }
    } catch (error) {
      ctx.fail(entry.path, describeError(error));
      return;
    }
    if (outcome === "same") ctx.skipped(job);
    else ctx.placed(job);
  }

  /** The local directory of `parts` below the destination, made unless `dryRun` (checked either way). */
  #dirsTo(parts: string[]): string {
    return this.#o.dryRun
      ? probeDirs(this.#o.dest, parts, this.#verified, this.#created)
      : ensureDirs(this.#o.dest, parts, this.#verified, this.#created);
  }

  /** Waits for the `checksum` comparisons still running (they may hand on more files). */
  async settle(): Promise<void> {
    while (this.#comparing.size > 0) await Promise.all([...this.#comparing]);
  }

  /** Gives every directory listed its mtime (and mode), deepest first; a failure is a warning. */
  finishDirs(): void {
    // Deepest first (the listing puts a directory before its contents), so
    // setting a child's times does not change its parent's afterwards.
    for (let i = this.#dirs.length - 1; i >= 0; i--) {
      const d = this.#dirs[i];
      // A directory that was there keeps its mode unless -P (as rsync does).
      const mode = d.created || this.#o.preserve
        ? this.#ctx.modeOf(d)
        : undefined;
      try {
        setDirMeta(d.path, d.mtime, mode);
      } catch (error) {
        this.#ctx.emit({
          type: "warning",
          path: d.path,
          message: `Cannot set the time of "${d.path}": ${reason(error)}`,
        });
      }
    }
  }

  /** Size and mtime (ms) equal: leave the file alone (and fix its mode with `preserve`). */
  #sameBySizeAndMtime(job: FileJob): boolean {
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
    const mode = this.#o.preserve && !this.#o.dryRun
      ? this.#ctx.modeOf(job)
      : undefined;
    if (mode !== undefined && ((info.mode ?? 0) & 0o7777) !== mode) {
      try {
        using file = openChecked(job.target, { expected: fileIdOf(info) });
        chmodOpened(file, job.target, mode);
      } catch {
        return false;
      }
    }
    this.#ctx.skipped(job);
    return true;
  }

  /**
   * Same size and the same SHA-256 as the server's (`checksum`): leave the
   * content alone, and give it the remote mtime (and mode) so a later
   * size + mtime comparison agrees. Any doubt means "fetch it".
   */
  async #sameByChecksum(job: FileJob): Promise<boolean> {
    let info: Deno.FileInfo;
    try {
      info = await Deno.lstat(job.target);
    } catch {
      return false;
    }
    if (!info.isFile || info.size !== job.size) return false;
    try {
      const id = fileIdOf(info);
      const bad = await this.#o.verifier.differing(
        job,
        job.target,
        id,
        "checking",
      );
      if (bad.length > 0) return false;
      if (this.#o.dryRun) {
        this.#ctx.skipped(job);
        return true;
      }
      using file = openChecked(job.target, { expected: id });
      await file.utime(new Date(), new Date(job.mtime));
      const mode = this.#o.preserve ? this.#ctx.modeOf(job) : undefined;
      if (mode !== undefined) chmodOpened(file, job.target, mode);
    } catch {
      return false;
    }
    this.#ctx.skipped(job);
    return true;
  }
}

/** Whether `path` is a symbolic link whose text is `target` (a dry run's "skip"). */
function sameSymlink(path: string, target: string): boolean {
  try {
    return Deno.lstatSync(path).isSymlink && Deno.readLinkSync(path) === target;
  } catch {
    return false;
  }
}
