/**
 * Links a pull creates (`-l`, `-H`): each is made under the entry's
 * reserved temporary name in the same directory and renamed over the final
 * name, so the name is always either the old entry or the complete link,
 * and a directory there is never replaced.
 */
import { fileIdOf, sameFileId } from "../shared/checked_open.ts";
import { LocalPathError, reason } from "../shared/errors.ts";
import { partPathFor } from "../shared/part_file.ts";

/** What placing a link did: made it, or found the same link already there. */
export type LinkOutcome = "created" | "same";

/**
 * Makes `path` a symbolic link with the text `target` (never resolved
 * here: it is only text). A file or link at `path` is replaced; a directory
 * is a `LocalPathError` and nothing is written; a link with the same text
 * is left alone (`"same"`).
 */
export function placeSymlink(path: string, target: string): LinkOutcome {
  const now = lstatOrUndefined(path);
  if (now?.isSymlink) {
    try {
      if (Deno.readLinkSync(path) === target) return "same";
    } catch {
      // Replaced just now: the rename below settles it.
    }
  }
  refuseDirectory(path, now);
  placeByRename(path, (temp) => Deno.symlinkSync(target, temp));
  return "created";
}

/**
 * Gives the regular file at `existing` (placed by this run) the name `path`
 * too. `"same"` when `path` already is that file; a file or link at `path`
 * is replaced, a directory is a `LocalPathError`. A name that is not a
 * regular file any more (a link swapped in) is refused, never linked.
 */
export function placeHardLink(existing: string, path: string): LinkOutcome {
  let source: Deno.FileInfo;
  try {
    source = Deno.lstatSync(existing);
  } catch (error) {
    throw new LocalPathError(existing, reason(error), error);
  }
  if (!source.isFile) {
    throw new LocalPathError(existing, "it is not a regular file any more");
  }
  const now = lstatOrUndefined(path);
  if (now?.isFile && sameFileId(fileIdOf(now), fileIdOf(source))) {
    return "same";
  }
  refuseDirectory(path, now);
  placeByRename(path, (temp) => {
    // link(2) does not follow a symlink at `existing`: the check below sees it.
    Deno.linkSync(existing, temp);
    const made = Deno.lstatSync(temp);
    if (!made.isFile || !sameFileId(fileIdOf(made), fileIdOf(source))) {
      throw new LocalPathError(existing, "it was replaced while hsync used it");
    }
  });
  return "created";
}

/**
 * Makes the entry with `make(temp)` at `path`'s temporary name, then
 * renames it over `path` unless a directory appeared there meanwhile; on
 * any failure the temporary name is removed and the error names `path`.
 */
function placeByRename(path: string, make: (temp: string) => void): void {
  const temp = partPathFor(path);
  try {
    removeLeftover(temp);
    make(temp);
    refuseDirectory(path, lstatOrUndefined(path));
    Deno.renameSync(temp, path);
  } catch (error) {
    try {
      Deno.removeSync(temp);
    } catch {
      // nothing was made
    }
    if (error instanceof LocalPathError) throw error;
    throw new LocalPathError(path, reason(error), error);
  }
}

function lstatOrUndefined(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.lstatSync(path);
  } catch {
    return undefined;
  }
}

function refuseDirectory(path: string, info: Deno.FileInfo | undefined): void {
  if (info?.isDirectory) {
    throw new LocalPathError(path, "it is a directory");
  }
}

/** Removes what an earlier attempt left at a temporary name (a link is removed, never followed). */
function removeLeftover(temp: string): void {
  try {
    Deno.removeSync(temp);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}
