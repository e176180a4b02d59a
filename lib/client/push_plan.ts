/**
 * Planning a push: each local file compared with the server's copy (size +
 * mtime, or SHA-256 with `--checksum`); what differs is handed on.
 * Directories are made by the first bundle of their files (a file sent in
 * ranges, or linked, makes its own first), and the rest, with every time,
 * all at once at the end. The sources themselves are checked, and placed,
 * in push_sources.ts.
 */
import { posix } from "node:path";
import { fileIdOf } from "../shared/checked_open.ts";
import { describeError, reason } from "../shared/errors.ts";
import { chunked, inBatches } from "./in_batches.ts";
import { JOURNAL_SUFFIX, LOCK_NAME, PART_SUFFIX } from "../shared/own_names.ts";
import { relativeComponents } from "../shared/relative_path.ts";
import { Breather } from "../shared/breather.ts";
import {
  type DirRequest,
  type DirResult,
  linkTimeSettable,
  type ListEntry,
  MKDIR_MAX_DIRS,
  type StatEntry,
} from "../shared/wire.ts";
import type { PathFilter } from "./filters.ts";
import {
  describeLocal,
  type PushContext,
  type SendJob,
} from "./push_context.ts";
import type { FileJob } from "./transfer.ts";
import type { Verifier } from "./verify.ts";
import { inodeKey, localEntry } from "./local_entry.ts";
import type { LocalPrefetch } from "./local_prefetch.ts";
import type { LinkSender } from "./push_links.ts";
import type { PushSource } from "./push_sources.ts";
import type { HeldUpload } from "./remote_push.ts";

/** A directory of a push: where it is, what the server had, and whether its time must be set at the end. */
export interface DirRecord {
  remote: string;
  label: string;
  mtime: number;
  mode: number;
  /** Not on the server when the push started: without `-P`, given the local bits masked by the mode the server made it with (its umask's). */
  fresh: boolean;
  /** Its time (or mode with `-P`) must be set: made, written into, or different on the server. */
  touched: boolean;
}

/** A pushed local tree and where it goes. */
export interface TreePlan {
  source: PushSource;
  /** The remote directory the tree is copied to. */
  dest: string;
  /** The server directory bundles are relative to, and the path of `dest` below it (empty or ending in `/`). */
  root: string;
  underPrefix: string;
  /** The server's entries below `dest`, by relative path (empty when it was made by this run). */
  remote: Map<string, StatEntry>;
  /** `dest` is not on the server yet (its files' bundles make it). */
  made: boolean;
  /** The server's entry of `dest` when it was there. */
  existing?: StatEntry;
  /** Filled with every relative path the walk meets (`--delete` keeps those). */
  local?: Set<string>;
}

/** Options of {@linkcode PushPlanner}. */
export interface PushPlannerOptions {
  filter: PathFilter;
  checksum: boolean;
  verifier: Verifier;
  /** Makes a remote directory (and its parents) unless known; false when it could not be (already counted). */
  ensureDir: (remote: string, label: string) => Promise<boolean>;
  /** Whether a remote directory is known to exist now (made or written into). */
  dirKnown: (remote: string) => boolean;
  /** Hands on a file that differs. */
  dispatch: (job: SendJob) => Promise<void>;
  /** Runs a comparison in the background. */
  spawn: (task: Promise<void>) => void;
  /** Makes symbolic and hard links on the server. */
  linker: LinkSender;
  /** `-l`: symbolic links are made as links (else followed). */
  links: boolean;
  /** With `links`: links that lead outside the copy too. */
  unsafeLinks: boolean;
  /** `-H`: names of one file stay names of one file. */
  hardLinks: boolean;
  /** `-S`: only the data of files with holes is sent. */
  sparse: boolean;
  /** Entries read ahead of the walk, which stops that reading when it starts. */
  ahead?: LocalPrefetch;
}

/** Longest stretch (ms) of the walk without a turn of the event loop. */
const BREATHE_MS = 4;

/** Walks local sources, compares each file with the server's copy, and hands on what must be sent. */
export class PushPlanner {
  readonly #ctx: PushContext;
  /** `-H`: the server's tag of each local file's first name, and whether that name was identical. */
  readonly #firstNames = new Map<string, { tag?: string; same: boolean }>();
  readonly #o: PushPlannerOptions;
  readonly #dirs: DirRecord[] = [];
  readonly #dirByRemote = new Map<string, DirRecord>();
  readonly #comparing = new Set<Promise<void>>();
  /**
   * Lets the event loop run once the walk has gone {@linkcode BREATHE_MS}
   * without: its reads are synchronous and its awaits settle at once, so
   * without a pause no request it started would connect or be answered
   * until the whole tree was walked (a push of 2,000 small files sent its
   * first bundle 130 ms after reading it).
   */
  readonly #breather = new Breather(BREATHE_MS);

  /** A planner for one push. */
  constructor(context: PushContext, options: PushPlannerOptions) {
    this.#ctx = context;
    this.#o = options;
  }

  /**
   * Plans a single local file going to `remote` (whose current entry is
   * `existing`, and what the server holds of an upload to it `held`, when
   * known).
   */
  async planFile(
    source: PushSource,
    target: { remote: string; root: string; under: string },
    existing: StatEntry | undefined,
    held?: HeldUpload | null,
  ): Promise<void> {
    this.#o.ahead?.stop();
    let info: Deno.FileInfo;
    try {
      info = Deno.lstatSync(source.path);
    } catch (error) {
      this.#ctx.fail(
        source.name,
        `Cannot read ${JSON.stringify(source.given)}: ${reason(error)}`,
      );
      return;
    }
    const job = this.#jobOf(source.path, source.name, target, info);
    if (held !== undefined) job.held = held;
    await this.#planName(job, info, existing);
  }

  /** Walks a local tree depth first, making directories before their files. */
  async planTree(tree: TreePlan): Promise<void> {
    this.#o.ahead?.stop();
    let info: Deno.FileInfo;
    try {
      info = Deno.statSync(tree.source.path);
    } catch (error) {
      this.#ctx.omit(
        tree.source.name,
        `Cannot read directory ${JSON.stringify(tree.source.path)}: ${
          reason(error)
        }`,
      );
      return;
    }
    // The tree's own directory gets its time and mode too (as rsync gives
    // them).
    this.#record(
      tree.dest,
      tree.source.name,
      info,
      tree.made ? undefined : tree.existing,
    );
    try {
      await this.#walk(tree, tree.source.path, [], new Set([inodeKey(info)]));
    } finally {
      this.#breather.close();
    }
  }

  /** Waits for the `--checksum` comparisons still running (they may hand on more files). */
  async settle(): Promise<void> {
    while (this.#comparing.size > 0) await Promise.all([...this.#comparing]);
  }

  /**
   * Makes the directories still missing (empty ones: the others were made
   * by their files) and gives every directory that was made, written into
   * or differs on the server its local mtime (and mode with `-P`): one
   * `POST /v1/mkdir` array of up to {@linkcode MKDIR_MAX_DIRS}, made before
   * any time is set (making a directory changes its parent's time, setting
   * one changes nothing else). More directories go in several arrays at
   * once, after a first round that only makes the missing ones; if that
   * round fails, one array at a time, the last first (a directory is
   * listed before those inside it). A directory that could not be made is
   * a failure; a time or mode that could not be set, a warning.
   */
  async finishDirs(): Promise<void> {
    if (this.#ctx.dryRun) return;
    const touched = this.#dirs.filter((d) => d.touched);
    const chunks = chunked(touched, MKDIR_MAX_DIRS);
    let allMade = true;
    if (chunks.length > 1) {
      const fresh = chunked(touched.filter((d) => d.fresh), MKDIR_MAX_DIRS);
      await inBatches(fresh, async (dirs) => {
        try {
          await this.#sendDirs(dirs, (d) => ({ path: d.remote }));
        } catch {
          // Told by the round below, which makes them again.
          allMade = false;
        }
      });
    }
    const finish = (dirs: DirRecord[]) => this.#finishChunk(dirs);
    if (allMade) await inBatches(chunks, finish);
    else for (const dirs of chunks.reverse()) await finish(dirs);
  }

  /**
   * What {@linkcode finishDirs} would send when it is one array (undefined
   * when more, or nothing is sent at all), for a push that sends it early;
   * its answer goes to {@linkcode dirsAnswered}.
   */
  lastDirs(): { dirs: DirRecord[]; asked: DirRequest[] } | undefined {
    if (this.#ctx.dryRun) return undefined;
    const dirs = this.#dirs.filter((d) => d.touched);
    if (dirs.length > MKDIR_MAX_DIRS) return undefined;
    return { dirs, asked: dirs.map((d) => this.#finalDir(d)) };
  }

  /** One array of directories made and given their times; each failure told. */
  async #finishChunk(dirs: DirRecord[]): Promise<void> {
    let results: DirResult[] | undefined;
    let why = "";
    try {
      results = await this.#sendDirs(dirs, (d) => this.#finalDir(d));
    } catch (error) {
      why = describeError(error);
    }
    this.dirsAnswered(dirs, results, why);
  }

  /** The answer to an array of `dirs` (none: it failed, for `why`): each directory's failure told. */
  dirsAnswered(
    dirs: readonly DirRecord[],
    results: DirResult[] | undefined,
    why: string,
  ): void {
    if (this.#ctx.signal.aborted) return;
    dirs.forEach((d, i) => {
      const r = results?.[i];
      if (r === undefined || "error" in r) {
        this.#dirFailed(d, r === undefined ? why : r.message || r.error);
      }
    });
  }

  /** One `POST /v1/mkdir` array, retried while the network or the server falters. */
  #sendDirs(
    dirs: DirRecord[],
    asked: (d: DirRecord) => DirRequest,
  ): Promise<DirResult[]> {
    const ctx = this.#ctx;
    return ctx.backoff.retry(
      () => ctx.push.mkdirs(dirs.map(asked), ctx.signal),
      ctx.signal,
    );
  }

  /**
   * A directory as it must end: its local time; with `-P` its own bits;
   * else, when this run made it, its bits masked by the server's umask (the
   * bits it was made with), as cp and scp mask by theirs.
   */
  #finalDir(d: DirRecord): DirRequest {
    if (this.#ctx.preserve) {
      return { path: d.remote, mtime: d.mtime, mode: d.mode };
    }
    if (d.fresh) {
      return { path: d.remote, mtime: d.mtime, mode: d.mode, narrow: true };
    }
    return { path: d.remote, mtime: d.mtime };
  }

  /** A directory the server did not finish: a failure when it is not there, else a warning. */
  #dirFailed(d: DirRecord, why: string): void {
    const where = JSON.stringify(d.remote);
    if (d.fresh && !this.#o.dirKnown(d.remote)) {
      this.#ctx.fail(d.label, `Cannot make remote directory ${where}: ${why}`);
      return;
    }
    this.#ctx.emit({
      type: "warning",
      path: d.label,
      message: `Cannot set the time of remote directory ${where}: ${why}`,
    });
  }

  /** Marks the directory holding `remote` as changed by this run (its time is set again at the end). */
  touchParentOf(remote: string): void {
    const dir = this.#dirByRemote.get(posix.dirname(remote));
    if (dir !== undefined) dir.touched = true;
  }

  async #walk(
    tree: TreePlan,
    dir: string,
    parts: string[],
    ancestors: Set<string>,
  ): Promise<void> {
    const ctx = this.#ctx;
    const labelOf = (p: string[]) => [tree.source.name, ...p].join("/");
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(dir)];
    } catch (error) {
      ctx.omit(
        labelOf(parts),
        `Cannot read directory ${JSON.stringify(dir)}: ${reason(error)}`,
      );
      return;
    }
    const names = entries.map((e) => e.name).sort();
    for (const name of names) {
      if (ctx.signal.aborted) return;
      await this.#breather.breathe();
      const rel = [...parts, name];
      const relPath = rel.join("/");
      const label = labelOf(rel);
      tree.local?.add(relPath);
      // The lock of a pull writing into this tree now: not the user's data.
      if (name === LOCK_NAME) continue;
      if (name.endsWith(PART_SUFFIX) || name.endsWith(JOURNAL_SUFFIX)) {
        ctx.emit({
          type: "warning",
          path: label,
          message:
            `Skipped "${label}": hsync's partial files (${PART_SUFFIX}, ${JOURNAL_SUFFIX}) are not pushed`,
        });
        continue;
      }
      try {
        relativeComponents(relPath);
      } catch (error) {
        ctx.fail(label, `Cannot push ${describeError(error)}`);
        continue;
      }
      // The kind is not known yet: left out here only if it would be either way.
      if (this.#o.filter.excludes(rel)) continue;
      const path = posix.join(dir, name);
      const entry = localEntry(path, name, relPath, {
        links: this.#o.links,
        unsafeLinks: this.#o.unsafeLinks,
        ancestors,
        known: this.#o.ahead?.lstat(path),
      });
      if (!this.#o.filter.takes(rel, entry.kind === "dir")) continue;
      const remote = posix.join(tree.dest, relPath);
      const existing = tree.remote.get(relPath);
      if (entry.kind === "fail") ctx.fail(label, entry.message);
      else if (entry.kind === "omit") ctx.omit(label, entry.message);
      else if (entry.kind === "symlink") {
        // The same link already there (the listing has links with -l, and
        // their own times): left alone.
        if (
          existing?.type === "symlink" &&
          (existing as ListEntry).target === entry.target &&
          (existing.mtime === entry.mtime || !linkTimeSettable(entry.mtime))
        ) {
          ctx.skipped(label, 0);
          continue;
        }
        if (!await this.#o.ensureDir(posix.dirname(remote), label)) continue;
        this.touchParentOf(remote);
        this.#o.linker.symlink(label, remote, entry.target, entry.mtime);
      } else if (entry.kind === "dir") {
        this.#planDir({ remote, label, rel, existing }, entry.info);
        const inner = new Set(ancestors).add(inodeKey(entry.info));
        await this.#walk(tree, entry.path, rel, inner);
      } else {
        const job = this.#jobOf(entry.path, label, {
          remote,
          root: tree.root,
          under: tree.underPrefix + relPath,
        }, entry.info);
        // In a tree this push made, the server holds no upload of it.
        if (tree.made) job.held = null;
        // A later name of the file is a link made in this directory: it
        // must be there first (a bundle or a file sent in ranges makes its own).
        if (
          this.#o.hardLinks && (entry.info.nlink ?? 1) > 1 &&
          !await this.#o.ensureDir(posix.dirname(remote), label)
        ) continue;
        await this.#planName(job, entry.info, existing);
      }
    }
  }

  /** A directory of the tree, remembered (unless filtered out) to be made if missing and given its time and mode at the end. */
  #planDir(
    at: {
      remote: string;
      label: string;
      rel: string[];
      existing: StatEntry | undefined;
    },
    info: Deno.FileInfo,
  ): void {
    const { remote, label, rel, existing } = at;
    if (existing !== undefined && existing.type !== "dir") {
      this.#ctx.fail(
        label,
        `Remote path ${JSON.stringify(remote)} exists and is not a directory`,
      );
      return;
    }
    if (!this.#o.filter.wants(rel, true)) return;
    if (existing === undefined) this.touchParentOf(remote);
    this.#record(remote, label, info, existing);
  }

  /** Remembers a directory whose time (and mode) is set at the end. */
  #record(
    remote: string,
    label: string,
    info: Deno.FileInfo,
    existing: StatEntry | undefined,
  ): void {
    const mtime = Math.floor(info.mtime?.getTime() ?? 0);
    const mode = (info.mode ?? 0o755) & 0o7777;
    const record: DirRecord = {
      remote,
      label,
      mtime,
      mode,
      fresh: existing === undefined,
      touched: existing === undefined || existing.mtime !== mtime ||
        (this.#ctx.preserve && (existing.mode & 0o777) !== (mode & 0o777)),
    };
    this.#dirs.push(record);
    this.#dirByRemote.set(remote, record);
  }

  /** A file's job, marked sparse with `-S` when it has fewer blocks than bytes. */
  #jobOf(
    local: string,
    label: string,
    target: { remote: string; root: string; under: string },
    info: Deno.FileInfo,
  ): SendJob {
    const job = jobOf(local, label, target, info);
    if (
      this.#o.sparse && info.size > 0 && info.blocks !== null &&
      info.blocks * 512 < info.size
    ) job.sparse = true;
    return job;
  }

  /** A file planned alone, or (`-H`) as one of the names of a file with several. */
  async #planName(
    job: SendJob,
    info: Deno.FileInfo,
    existing: StatEntry | undefined,
  ): Promise<void> {
    if (this.#o.hardLinks && info.nlink !== null && info.nlink > 1) {
      const key = inodeKey(info);
      // The server's names of one file carry one tag (a listing with
      // hardlinks=1): a later name already linked to an identical first
      // name is left alone.
      const tag = (existing as ListEntry | undefined)?.inode;
      const first = this.#firstNames.get(key);
      if (first === undefined) {
        this.#firstNames.set(key, {
          tag,
          same: existing !== undefined && existing.type === "file" &&
            existing.size === job.size && existing.mtime === job.mtime &&
            (!this.#ctx.preserve ||
              (existing.mode & 0o777) === (job.mode & 0o777)),
        });
      } else if (first.same && tag !== undefined && tag === first.tag) {
        this.#ctx.skipped(job.label, job.size);
        return;
      }
      await this.#o.linker.name(
        key,
        job,
        (send) => this.#planJob(job, existing, send),
      );
      return;
    }
    await this.#planJob(job, existing);
  }

  /** Compares one file with the server's entry: identical (skipped), a conflict (failed), or handed on. */
  async #planJob(
    job: SendJob,
    existing: StatEntry | undefined,
    send = this.#o.dispatch,
  ): Promise<void> {
    const ctx = this.#ctx;
    if (existing?.type === "dir") {
      ctx.fail(
        job.label,
        `Remote path ${JSON.stringify(job.remote)} is a directory`,
      );
      return;
    }
    // A link listed as a link (`--delete`) is replaced, whatever its size.
    if (
      existing === undefined || existing.type === "symlink" ||
      existing.size !== job.size
    ) {
      return await this.#hand(job, send);
    }
    if (!this.#o.checksum) {
      const sameMode = !ctx.preserve ||
        (existing.mode & 0o777) === (job.mode & 0o777);
      if (existing.mtime === job.mtime && sameMode) {
        ctx.skipped(job.label, job.size);
        return;
      }
      return await this.#hand(job, send);
    }
    // Hashing takes a while: a few comparisons run beside the walk.
    const release = await ctx.limits.compares.acquire(ctx.signal);
    const task = (async () => {
      let same: boolean;
      try {
        same = await this.#sameByChecksum(job, existing);
      } finally {
        release();
      }
      if (ctx.signal.aborted) return;
      if (same) ctx.skipped(job.label, job.size);
      else await this.#hand(job, send);
    })();
    const tracked = task.catch(() => {}).finally(() =>
      this.#comparing.delete(tracked)
    );
    this.#comparing.add(tracked);
    this.#o.spawn(task);
  }

  async #hand(
    job: SendJob,
    send: (job: SendJob) => Promise<void>,
  ): Promise<void> {
    this.touchParentOf(job.remote);
    await send(job);
  }

  /** Same size and the same SHA-256, span by span, as the server's copy; any doubt means "send it". */
  async #sameByChecksum(job: SendJob, existing: StatEntry): Promise<boolean> {
    const asPulled: FileJob = {
      rel: job.label,
      remote: job.remote,
      target: job.local,
      size: job.size,
      mtime: job.mtime,
      mode: job.mode,
      etag: existing.etag,
    };
    try {
      const bad = await this.#o.verifier.differing(
        asPulled,
        job.local,
        job.id,
        "checking",
      );
      return bad.length === 0;
    } catch {
      return false;
    }
  }
}

/** The job of a local file from its `lstat`. */
function jobOf(
  local: string,
  label: string,
  target: { remote: string; root: string; under: string },
  info: Deno.FileInfo,
): SendJob {
  const job: SendJob = {
    label,
    local,
    ...target,
    size: 0,
    mtime: 0,
    mode: 0,
    changedMs: 0,
    id: fileIdOf(info),
  };
  describeLocal(job, info);
  return job;
}
