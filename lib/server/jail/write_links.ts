/**
 * Links a push creates (`-l`, `-H`), inside a directory the write jail has
 * entered: the link is made under a fresh name there, proven by an `lstat`
 * through the entered directory, then renamed over its name (a file or link
 * there replaced, a directory never), so no moment shows a half-made entry
 * under the name and nothing is made anywhere else.
 */
import { posix } from "node:path";
import { HttpError } from "../../shared/errors.ts";
import { linkStaysInside } from "../../shared/link_target.ts";
import type { Inside } from "./cwd_anchor.ts";
import { quote } from "./rules.ts";
import {
  changed,
  describe,
  join,
  lstatOrUndefined,
  sameFile,
  tryRemove,
  writeFailure,
} from "./write_support.ts";

/** Longest link text `symlink(2)` takes (`PATH_MAX` less its NUL). */
export const MAX_LINK_TEXT = 4095;

/** Where a link goes: its requested path, its directory's kernel path (entered), its name, and the writable root holding it. */
export interface LinkPlace {
  path: string;
  dir: string;
  name: string;
  root: string;
}

/**
 * Creates the symbolic link `place` holding `text` as given, in the entered
 * directory `at`; 403 `unsafe_link` when the text, read from the link's
 * directory, leads outside the writable root (`linkStaysInside`).
 */
export function placeSymlink(
  at: Inside,
  place: LinkPlace,
  text: string,
  prefix: string,
  mtimeMs?: number,
): Deno.FileInfo {
  const rel = posix.relative(place.root, join(place.dir, place.name));
  if (!linkStaysInside(rel, text)) {
    throw new HttpError(
      403,
      "unsafe_link",
      `Cannot create the link ${quote(place.path)} to ${
        quote(text)
      }: a pushed link must be relative and stay inside its Writable_path directory`,
    );
  }
  return placeEntry(
    at,
    place,
    prefix,
    (fresh) => {
      at.symlink(text, fresh);
      // Its own time, set before it gets its name (a rename keeps it).
      if (mtimeMs !== undefined) at.setLinkTime(fresh, mtimeMs);
    },
    (info) => info.isSymlink,
  );
}

/**
 * Gives the regular file `existing` (its kernel path, and the `lstat` that
 * proved it a file below the same root) the name `place` too, in the
 * entered directory `at`. The link goes by `existing`'s name, so what was
 * linked must be the very inode proven (else 409 `changed`, nothing kept).
 */
export function placeLink(
  at: Inside,
  place: LinkPlace,
  existing: { path: string; real: string; info: Deno.FileInfo },
  prefix: string,
): Deno.FileInfo {
  return placeEntry(
    at,
    place,
    prefix,
    (fresh) => {
      try {
        at.link(existing.real, fresh);
      } catch (error) {
        throw linkFailure(place.path, existing.path, error);
      }
    },
    (info) => info.isFile && sameFile(info, existing.info),
  );
}

/**
 * The `lstat` of a hard link's existing file when it may be linked: below
 * the same writable root as the new name (400), there (404), a regular file
 * (400 `not_a_file`).
 */
export function checkLinkSource(
  path: string,
  existing: string,
  sameRoot: boolean,
  info: Deno.FileInfo | undefined,
): Deno.FileInfo {
  const refuse = (status: number, code: string, why: string) =>
    new HttpError(
      status,
      code,
      `Cannot link ${quote(path)} to ${quote(existing)}: ${why}`,
    );
  if (!sameRoot) {
    throw refuse(400, "bad_request", "not below the same Writable_path");
  }
  if (info === undefined) throw refuse(404, "not_found", "it is missing");
  if (!info.isFile) throw refuse(400, "not_a_file", `it is ${describe(info)}`);
  return info;
}

/** A failed `link`: across file systems a 400 of one line, else as any write failure. */
export function linkFailure(
  path: string,
  existing: string,
  error: unknown,
): unknown {
  if ((error as { code?: string } | null)?.code === "EXDEV") {
    return new HttpError(
      400,
      "cross_device",
      `Cannot link ${quote(path)} to ${
        quote(existing)
      }: they are on different file systems`,
    );
  }
  return error;
}

/** 409 `is_a_directory` for a link that would replace a directory. */
function overDirectory(path: string): HttpError {
  return new HttpError(
    409,
    "is_a_directory",
    `Cannot create the link ${quote(path)}: a directory is there`,
  );
}

/**
 * Makes an entry under a fresh name with `make`, checks its `lstat` with
 * `proven`, renames it over the place's name and answers the `lstat` of
 * the name; nothing stays under the fresh name, whatever fails.
 */
function placeEntry(
  at: Inside,
  place: LinkPlace,
  prefix: string,
  make: (fresh: string) => void,
  proven: (info: Deno.FileInfo) => boolean,
): Deno.FileInfo {
  if (lstatOrUndefined(at, place.name)?.isDirectory) {
    throw overDirectory(place.path);
  }
  const fresh = makeFresh(place.path, prefix, make);
  try {
    const made = at.lstat(fresh);
    if (!proven(made)) throw changed(place.path);
    try {
      at.rename(fresh, place.name);
    } catch (error) {
      const code = (error as { code?: string } | null)?.code;
      if (code === "EISDIR" || error instanceof Deno.errors.IsADirectory) {
        throw overDirectory(place.path);
      }
      throw error;
    }
    // Renaming one name of an inode over another of the same does nothing.
    if (lstatOrUndefined(at, fresh) !== undefined) tryRemove(at, fresh);
    const now = at.lstat(place.name);
    if (!sameFile(now, made)) throw changed(place.path);
    return now;
  } catch (error) {
    tryRemove(at, fresh);
    throw error instanceof HttpError ? error : writeFailure(place.path, error);
  }
}

/** Runs `make` on a fresh name (another try when the name was taken meanwhile), and returns that name. */
function makeFresh(
  path: string,
  prefix: string,
  make: (fresh: string) => void,
): string {
  for (let attempt = 0;; attempt++) {
    const bytes = crypto.getRandomValues(new Uint8Array(8));
    const fresh = prefix +
      Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    try {
      make(fresh);
      return fresh;
    } catch (error) {
      if (error instanceof Deno.errors.AlreadyExists && attempt < 3) continue;
      throw error instanceof HttpError ? error : writeFailure(path, error);
    }
  }
}
