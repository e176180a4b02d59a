/**
 * Push `--delete`: what a pushed destination holds that its local tree does
 * not, removed on the server after a complete transfer. Only what the
 * destination's listing named below its root, never what the filters leave
 * out (nor anything below an excluded directory), never hsync's partial
 * files; files and links first, then directories deepest first (the server
 * removes only empty ones); more than `--max-delete` means none.
 */
import { posix } from "node:path";
import { describeError, HttpError } from "../shared/errors.ts";
import { isHsyncOwnName } from "../shared/own_names.ts";
import type { StatEntry } from "../shared/wire.ts";
import type { PathFilter } from "./filters.ts";
import { type PushContext, writeRefusal } from "./push_context.ts";

/** One pushed local tree and its destination, as compared by the push. */
export interface DeleteScope {
  /** The remote directory the tree was copied to. */
  dest: string;
  /** The source's name: labels are `name/rel`. */
  name: string;
  /** The server's entries below `dest`, by relative path (its listing before the transfer). */
  remote: ReadonlyMap<string, StatEntry>;
  /** Every relative path the local walk met (whatever became of it). */
  local: ReadonlySet<string>;
}

/** A remote entry the source does not have. */
export interface ExtraEntry {
  /** Absolute path on the server. */
  remote: string;
  /** The entry in messages (`run42/old/a.txt`). */
  label: string;
  entry: StatEntry;
  /** Components below the destination. */
  depth: number;
}

/** Options of {@linkcode PushDeleter}. */
export interface PushDeleterOptions {
  filter: PathFilter;
  /** More planned deletions than this means none (a failure). */
  maxDelete?: number;
  /** Only `plan` events: nothing is deleted. */
  dryRun: boolean;
  /** An entry is gone (deleted now, or already). */
  deleted: (extra: ExtraEntry) => void;
}

/**
 * The entries of `scopes` to delete, in the order they must go: files and
 * links (by path), then directories deepest first.
 */
export function extraEntries(
  scopes: readonly DeleteScope[],
  filter: PathFilter,
): ExtraEntry[] {
  const leaves: ExtraEntry[] = [];
  const dirs: ExtraEntry[] = [];
  for (const scope of scopes) {
    for (const [rel, entry] of scope.remote) {
      if (scope.local.has(rel)) continue;
      const parts = rel.split("/");
      const name = parts[parts.length - 1];
      if (isHsyncOwnName(name)) continue;
      if (leftOut(filter, parts, entry.type === "dir")) continue;
      const extra: ExtraEntry = {
        remote: posix.join(scope.dest, rel),
        label: `${scope.name}/${rel}`,
        entry,
        depth: parts.length,
      };
      (entry.type === "dir" ? dirs : leaves).push(extra);
    }
  }
  leaves.sort((a, b) => compare(a.remote, b.remote));
  dirs.sort((a, b) => b.depth - a.depth || compare(a.remote, b.remote));
  return [...leaves, ...dirs];
}

/** Whether the filters leave this entry out: excluded itself, below an excluded directory, or not selected. */
function leftOut(
  filter: PathFilter,
  parts: readonly string[],
  isDir: boolean,
): boolean {
  for (let i = 1; i < parts.length; i++) {
    if (filter.excludes(parts.slice(0, i), true)) return true;
  }
  return filter.excludes(parts, isDir) || !filter.wants(parts, isDir);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Deletes (or, in a dry run, announces) the extra entries of one push. */
export class PushDeleter {
  readonly #ctx: PushContext;
  readonly #o: PushDeleterOptions;

  /** A deleter for one push. */
  constructor(context: PushContext, options: PushDeleterOptions) {
    this.#ctx = context;
    this.#o = options;
  }

  /**
   * Deletes what `scopes` hold beyond their sources, unless the transfer
   * had `failed` failures or `omitted` entries not transferred (then one
   * failure, labelled `.`, and nothing deleted), or more than `maxDelete`
   * would go (the same).
   */
  async run(
    scopes: readonly DeleteScope[],
    outcome: { failed: number; omitted: number },
  ): Promise<void> {
    const ctx = this.#ctx;
    const dry = this.#o.dryRun;
    if (outcome.failed > 0 || outcome.omitted > 0) {
      ctx.fail(
        ".",
        `${
          dry ? "Would delete" : "Deleted"
        } nothing: ${outcome.failed} failed, ${outcome.omitted} not transferred (--delete deletes only after a complete transfer)`,
      );
      return;
    }
    const extras = extraEntries(scopes, this.#o.filter);
    const max = this.#o.maxDelete;
    if (max !== undefined && extras.length > max) {
      ctx.fail(
        ".",
        `Would delete ${extras.length} ${
          extras.length === 1 ? "entry" : "entries"
        }, more than --max-delete ${max}: ${
          dry ? "would delete" : "deleted"
        } none`,
      );
      return;
    }
    if (dry) {
      for (const extra of extras) {
        ctx.emit({
          type: "plan",
          action: "delete",
          path: extra.label,
          bytes: extra.entry.type === "file" ? extra.entry.size : 0,
        });
      }
      return;
    }
    // A directory whose entry failed still holds it: not asked (it would be refused as not empty).
    const failed: string[] = [];
    for (const extra of extras) {
      if (ctx.signal.aborted) return;
      if (failed.some((f) => f.startsWith(`${extra.remote}/`))) continue;
      if (!await this.#delete(extra)) failed.push(extra.remote);
    }
  }

  /** One deletion, retried while the network or the server falters; false when it failed (counted) or the run stopped. */
  async #delete(extra: ExtraEntry): Promise<boolean> {
    const ctx = this.#ctx;
    try {
      await ctx.backoff.retry(
        () => ctx.push.delete(extra.remote, ctx.signal),
        ctx.signal,
      );
    } catch (error) {
      if (ctx.signal.aborted) return false;
      const refusal = writeRefusal(error, ctx.remote.host);
      if (refusal !== undefined) {
        ctx.stopRun(refusal);
        return false;
      }
      const why = error instanceof HttpError && error.code === "not_empty"
        ? "it is a directory that is not empty (something appeared in it)"
        : describeError(error);
      ctx.fail(
        extra.label,
        `Cannot delete remote path ${JSON.stringify(extra.remote)}: ${why}`,
      );
      return false;
    }
    this.#o.deleted(extra);
    return true;
  }
}
