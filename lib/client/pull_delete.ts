/**
 * `--delete` for a pull: the entries below the local copy's root that the
 * remote listing did not have, found without ever going through a link and
 * removed children first, only once the transfer is known to be complete.
 */
import { join } from "node:path";
import { describeError, reason } from "../shared/errors.ts";
import { isHsyncOwnName } from "../shared/own_names.ts";
import type { PathFilter } from "./filters.ts";
import type { PullEvent } from "./transfer.ts";

/** One local entry the source does not have. */
export interface Extra {
  /** Relative to the copy's root, `/`-separated (for events and messages). */
  rel: string;
  /** The local path. */
  path: string;
  isDir: boolean;
}

/**
 * The entries below `root` whose relative path is not in `listed`, children
 * before their directory. Kept: what the filter leaves out (and everything
 * below an excluded directory), `.hsync-part`/`.hsync-journal` files (an
 * interrupted transfer's data), the `.hsync-lock` of a running pull, and a directory that keeps anything. A
 * symbolic link is an entry itself (checked with lstat), never followed.
 */
export function findExtras(
  root: string,
  listed: ReadonlySet<string>,
  filter: PathFilter,
): Extra[] {
  const out: Extra[] = [];
  walk(root, [], listed, filter, out);
  return out;
}

/** Walks one directory; returns whether everything in it is to be deleted. */
function walk(
  dir: string,
  parts: string[],
  listed: ReadonlySet<string>,
  filter: PathFilter,
  out: Extra[],
): boolean {
  let names: string[];
  try {
    names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  } catch {
    // Unreadable: what is in it is unknown, so it is kept.
    return false;
  }
  let all = true;
  for (const name of names) {
    if (isHsyncOwnName(name)) {
      all = false;
      continue;
    }
    const path = join(dir, name);
    const here = [...parts, name];
    let info: Deno.FileInfo;
    try {
      info = Deno.lstatSync(path);
    } catch {
      all = false;
      continue;
    }
    const isDir = info.isDirectory;
    if (filter.excludes(here, isDir)) {
      all = false;
      continue;
    }
    const rel = here.join("/");
    if (isDir) {
      const empty = walk(path, here, listed, filter, out);
      if (empty && !listed.has(rel) && filter.wants(here, true)) {
        out.push({ rel, path, isDir });
      } else all = false;
      continue;
    }
    if (listed.has(rel) || !filter.wants(here, false)) {
      all = false;
      continue;
    }
    out.push({ rel, path, isDir });
  }
  return all;
}

/**
 * Removes one entry found by {@linkcode findExtras}: a link or file is
 * unlinked, a directory removed only when empty. Every directory on the way
 * from `root` is checked again (lstat) to be a real directory, so a link
 * swapped in since the walk is never gone through. Throws an `Error` with
 * the reason.
 */
export function removeExtra(root: string, extra: Extra): void {
  const parts = extra.rel.split("/");
  let at = root;
  for (const part of parts.slice(0, -1)) {
    at = join(at, part);
    const info = Deno.lstatSync(at);
    if (!info.isDirectory) {
      throw new Error(
        `${JSON.stringify(at)} is no longer a directory: not deleted`,
      );
    }
  }
  const now = Deno.lstatSync(extra.path);
  if (now.isDirectory !== extra.isDir) {
    throw new Error("It changed since it was listed: not deleted");
  }
  try {
    Deno.removeSync(extra.path);
  } catch (error) {
    throw new Error(`Cannot delete it: ${reason(error)}`);
  }
}

/** The one line of a `--delete` that deleted nothing because there were more than `max`. */
export function tooManyDeletions(count: number, max: number): string {
  return `Would delete ${count} entries, more than --max-delete ${max}: deleted none`;
}

/** The one line of a `--delete` that deleted nothing because `count` entries failed or were left out. */
export function notDeleting(count: number): string {
  return `Deleted nothing: ${count} ${
    count === 1 ? "entry" : "entries"
  } failed or ${count === 1 ? "was" : "were"} not transferred`;
}

/** What {@linkcode deleteExtras} is given by the run. */
export interface DeleteOptions {
  /** The local copy's root directory. */
  root: string;
  /** Every relative path the remote listing had (filtered or not). */
  listed: ReadonlySet<string>;
  filter: PathFilter;
  /** More planned deletions than this: none is made. */
  maxDelete?: number;
  /** `--dry-run`: `plan` events instead of deletions. */
  dryRun: boolean;
  /** Entries that failed or were not transferred: any means nothing is deleted. */
  blocked: number;
  emit: (event: PullEvent) => void;
  fail: (path: string, message: string) => void;
}

/**
 * Deletes (or with `dryRun` plans) the extras of a completed transfer;
 * returns how many were deleted. A transfer with failures or omissions,
 * or more extras than `maxDelete`, deletes nothing and is one failure
 * (path `.`). A directory below which a deletion failed is left alone.
 */
export function deleteExtras(o: DeleteOptions): number {
  if (o.blocked > 0) {
    o.fail(".", notDeleting(o.blocked));
    return 0;
  }
  const extras = findExtras(o.root, o.listed, o.filter);
  if (o.maxDelete !== undefined && extras.length > o.maxDelete) {
    o.fail(".", tooManyDeletions(extras.length, o.maxDelete));
    return 0;
  }
  let deleted = 0;
  const kept = new Set<string>();
  for (const extra of extras) {
    if (o.dryRun) {
      o.emit({ type: "plan", action: "delete", path: extra.rel, bytes: 0 });
      continue;
    }
    if (kept.has(extra.rel)) continue;
    try {
      removeExtra(o.root, extra);
    } catch (error) {
      o.fail(extra.rel, describeError(error));
      const parts = extra.rel.split("/");
      for (let i = 1; i < parts.length; i++) {
        kept.add(parts.slice(0, i).join("/"));
      }
      continue;
    }
    deleted++;
    o.emit({ type: "deleted", path: extra.rel });
  }
  return deleted;
}
