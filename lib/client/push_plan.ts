/**
 * Planning a push: each local file compared with the server's copy (size +
 * mtime, or SHA-256 with `--checksum`); what differs is handed on,
 * directories are made before their files and get their times last. The
 * sources themselves are checked, and placed, in push_sources.ts.
 */
import { posix } from "node:path";
import { fileIdOf } from "../shared/checked_open.ts";
import { describeError, reason } from "../shared/errors.ts";
import { inBatches } from "./in_batches.ts";
import { JOURNAL_SUFFIX, LOCK_NAME, PART_SUFFIX } from "../shared/part_file.ts";
import { relativeComponents } from "../shared/relative_path.ts";
import { sleep } from "../shared/sleep.ts";
import type { ListEntry, StatEntry } from "../shared/wire.ts";
import type { PathFilter } from "./filters.ts";
import {
  describeLocal,
  type PushContext,
  type SendJob,
} from "./push_context.ts";
import type { FileJob } from "./transfer.ts";
import type { Verifier } from "./verify.ts";
import { inodeKey, localEntry } from "./local_entry.ts";
import type { LinkSender } from "./push_links.ts";
import type { PushSource } from "./push_sources.ts";

/** A directory of a push: where it is, what the server had, and whether its time must be set at the end. */
interface DirRecord {
  remote: string;
  label: string;
  mtime: number;
  mode: number;
  /** This run made it: without `-P`, the local bits masked by the mode the server gave it (its umask's). */
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
  /** `dest` was made by this run. */
  made: boolean;
  /**
   * The making of `dest`, still in flight (false: it failed, and was told):
   * its first subdirectories are made meanwhile (each with its parents), a
   * round trip saved.
   */
  ready?: Promise<boolean>;
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
  /**
   * Makes these remote directories at once (a few requests in flight, not
   * one round trip each), as far as it can; what it could not make is left
   * to {@linkcode PushPlannerOptions.ensureDir}, which tells why.
   */
  prepareDirs: (remotes: string[]) => Promise<void>;
  /** Hands on a file that differs. */
  dispatch: (job: SendJob) => Promise<void>;
  /** Runs a comparison in the background. */
  spawn: (task: Promise<void>) => void;
  /** The mode a directory this run made was given by the server. */
  madeMode: (remote: string) => number | undefined;
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
  /** When the walk last let the event loop run. */
  #breathed = performance.now();

  /** A planner for one push. */
  constructor(context: PushContext, options: PushPlannerOptions) {
    this.#ctx = context;
    this.#o = options;
  }

  /** Plans a single local file going to `remote` (whose current entry is `existing`). */
  async planFile(
    source: PushSource,
    target: { remote: string; root: string; under: string },
    existing: StatEntry | undefined,
  ): Promise<void> {
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
    await this.#planName(job, info, existing);
  }

  /** Walks a local tree depth first, making directories before their files. */
  async planTree(tree: TreePlan): Promise<void> {
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
    // them), once it is there.
    const record = () =>
      this.#record(
        tree.dest,
        tree.source.name,
        info,
        tree.made ? undefined : tree.existing,
      );
    if (tree.ready === undefined) record();
    await this.#walk(
      tree,
      tree.source.path,
      [],
      new Set([inodeKey(info)]),
      tree.ready?.then((made) => {
        if (made) record();
        return made;
      }),
    );
  }

  /** Waits for the `--checksum` comparisons still running (they may hand on more files). */
  async settle(): Promise<void> {
    while (this.#comparing.size > 0) await Promise.all([...this.#comparing]);
  }

  /**
   * Gives every directory that was made, written into or differs on the
   * server its local mtime (and mode with `-P`), all at once once every
   * entry is in place: setting a directory's time or mode changes nothing
   * in its parent (only making, renaming or removing an entry does). A
   * failure is a warning.
   */
  async finishDirs(): Promise<void> {
    if (this.#ctx.dryRun) return;
    await inBatches(
      this.#dirs.filter((d) => d.touched),
      (d) => this.#finishDir(d),
    );
  }

  /** Sets one directory's time (and mode); a failure is a warning. */
  async #finishDir(d: DirRecord): Promise<void> {
    const ctx = this.#ctx;
    if (ctx.signal.aborted) return;
    try {
      await ctx.backoff.retry(
        () =>
          ctx.push.mkdir(d.remote, {
            mtime: d.mtime,
            mode: modeToSet(
              d,
              d.fresh ? this.#o.madeMode(d.remote) : undefined,
              ctx.preserve,
            ),
            signal: ctx.signal,
          }),
        ctx.signal,
      );
    } catch (error) {
      if (ctx.signal.aborted) return;
      ctx.emit({
        type: "warning",
        path: d.label,
        message: `Cannot set the time of remote directory ${
          JSON.stringify(d.remote)
        }: ${describeError(error)}`,
      });
    }
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
    ready?: Promise<boolean>,
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
    // The subdirectories missing on the server are made together first: a
    // round trip for all of them, not one each (far away, that is the cost).
    const prepared = this.#o.prepareDirs(
      entries.filter((e) => {
        const rel = [...parts, e.name];
        return e.isDirectory && !tree.remote.has(rel.join("/")) &&
          !this.#o.filter.excludes(rel, true) &&
          this.#o.filter.wants(rel, true);
      }).map((e) => posix.join(tree.dest, ...parts, e.name)),
    );
    const [made] = await Promise.all([ready ?? true, prepared]);
    if (!made) return;
    for (const name of names) {
      if (ctx.signal.aborted) return;
      await this.#breathe();
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
      const entry = localEntry(posix.join(dir, name), name, relPath, {
        links: this.#o.links,
        unsafeLinks: this.#o.unsafeLinks,
        ancestors,
      });
      // Only a directory is walked into when the include globs do not name it.
      if (
        entry.kind === "dir"
          ? this.#o.filter.excludes(rel, true)
          : !this.#o.filter.wants(rel, false)
      ) continue;
      const remote = posix.join(tree.dest, relPath);
      const existing = tree.remote.get(relPath);
      if (entry.kind === "fail") ctx.fail(label, entry.message);
      else if (entry.kind === "omit") ctx.omit(label, entry.message);
      else if (entry.kind === "symlink") {
        // The same link already there (the listing has links with -l): left alone.
        if (
          existing?.type === "symlink" &&
          (existing as ListEntry).target === entry.target
        ) {
          ctx.skipped(label, 0);
          continue;
        }
        if (!await this.#o.ensureDir(posix.dirname(remote), label)) continue;
        this.touchParentOf(remote);
        this.#o.linker.symlink(label, remote, entry.target);
      } else if (entry.kind === "dir") {
        await this.#planDir({ remote, label, rel, existing }, entry.info);
        const inner = new Set(ancestors).add(inodeKey(entry.info));
        await this.#walk(tree, entry.path, rel, inner);
      } else {
        const job = this.#jobOf(entry.path, label, {
          remote,
          root: tree.root,
          under: tree.underPrefix + relPath,
        }, entry.info);
        if (!await this.#o.ensureDir(posix.dirname(remote), label)) continue;
        await this.#planName(job, entry.info, existing);
      }
    }
  }

  /**
   * Lets the event loop run once the walk has gone {@linkcode BREATHE_MS}
   * without: its reads are synchronous and its awaits settle at once, so
   * without a pause no request it started would connect or be answered
   * until the whole tree was walked (a push of 2,000 small files sent its
   * first bundle 130 ms after reading it).
   */
  async #breathe(): Promise<void> {
    const now = performance.now();
    if (now - this.#breathed < BREATHE_MS) return;
    await sleep(0);
    this.#breathed = performance.now();
  }

  /** A directory of the tree: made on the server (unless filtered out) and remembered for its time and mode. */
  async #planDir(
    at: {
      remote: string;
      label: string;
      rel: string[];
      existing: StatEntry | undefined;
    },
    info: Deno.FileInfo,
  ): Promise<void> {
    const { remote, label, rel, existing } = at;
    if (existing !== undefined && existing.type !== "dir") {
      this.#ctx.fail(
        label,
        `Remote path ${JSON.stringify(remote)} exists and is not a directory`,
      );
      return;
    }
    if (!this.#o.filter.wants(rel, true)) return;
    if (!await this.#o.ensureDir(remote, label)) return;
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
    id: fileIdOf(info),
    source: "",
  };
  describeLocal(job, info);
  return job;
}

/**
 * The mode to give a directory at the end: with `-P` its own bits; else,
 * for one this run made, its bits masked by the server's umask (the bits
 * it was made with), as cp and scp mask by theirs; otherwise none.
 */
function modeToSet(
  d: DirRecord,
  made: number | undefined,
  preserve: boolean,
): number | undefined {
  if (preserve) return d.mode;
  if (made === undefined) return undefined;
  const masked = d.mode & made & 0o777;
  return masked === (made & 0o777) ? undefined : masked;
}
