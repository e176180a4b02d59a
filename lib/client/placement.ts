/**
 * Where remote entries land locally (below the destination of
 * lib/client/destination.ts): untrusted relative paths from the server mapped
 * onto it, refusing anything that could write outside it; directories made
 * and given their times.
 */
import { dirname, join } from "node:path";
import { openChecked } from "../shared/checked_open.ts";
import { chmodOpened } from "../shared/chmod_opened.ts";
import { LocalPathError, reason } from "../shared/errors.ts";
import { isDirectory } from "./destination.ts";
import { LOCK_NAME } from "../shared/own_names.ts";
import {
  relativeComponents,
  RelativePathError,
} from "../shared/relative_path.ts";

/** Makes the directory a remote file is written into; `LocalPathError` naming it when it cannot be. */
export function makeParentDir(path: string): void {
  const parent = dirname(path);
  try {
    Deno.mkdirSync(parent, { recursive: true });
  } catch (error) {
    throw new LocalPathError(parent, reason(error), error);
  }
}

/**
 * Makes the directory a remote tree is copied to (an existing one is merged
 * into); returns true when it did not exist. `LocalPathError` naming it when
 * something else is there or it cannot be made. Its mode and times are never
 * changed: it may be the user's own directory (".", $HOME).
 */
export function makeTreeRoot(dest: string): boolean {
  const existed = isDirectory(dest);
  // No "is it something else" look before the mkdir: another hsync may make
  // the directory in between (two runs into one destination), which is fine.
  try {
    Deno.mkdirSync(dest, { recursive: true });
    if (!Deno.statSync(dest).isDirectory) {
      throw new LocalPathError(dest, "it exists and is not a directory");
    }
  } catch (error) {
    if (error instanceof LocalPathError) throw error;
    if (error instanceof Deno.errors.AlreadyExists) {
      throw new LocalPathError(dest, "it exists and is not a directory");
    }
    throw new LocalPathError(dest, reason(error), error);
  }
  return !existed;
}

/** Whether `dir` holds nothing but a pull's lock file (a tree root no run has written into yet). */
export function holdsOnlyLock(dir: string): boolean {
  for (const entry of Deno.readDirSync(dir)) {
    if (entry.name !== LOCK_NAME) return false;
  }
  return true;
}

/** A relative path from the server that must not be written. */
export class UnsafePathError extends Error {
  /** The refused path, as the server sent it. */
  readonly path: string;
  constructor(path: string, why: string) {
    super(`Refused path ${JSON.stringify(path)} from the server: ${why}`);
    this.name = "UnsafePathError";
    this.path = path;
  }
}

/**
 * Joins a `/`-separated relative path from the server onto `root`. Refuses
 * (with {@linkcode UnsafePathError}) a path that is empty, absolute, holds a
 * NUL or a backslash, has an empty, `.` or `..` component, or a component
 * ending in the client's own `.hsync-part`/`.hsync-journal` suffixes (which
 * would let one entry overwrite another's partial data).
 */
export function safeJoin(root: string, relPath: string): string {
  return join(root, ...safeComponents(relPath));
}

/** The components of a relative path from the server, checked as {@linkcode safeJoin} does. */
export function safeComponents(relPath: string): string[] {
  try {
    return relativeComponents(relPath);
  } catch (error) {
    if (error instanceof RelativePathError) {
      throw new UnsafePathError(relPath, error.why);
    }
    throw error;
  }
}

/**
 * Makes sure every directory from `root` down to `root/components...`
 * exists and is a real directory, creating missing ones one level at a time.
 * An existing symlink or non-directory on the way is refused with
 * {@linkcode LocalPathError}, so a link planted in the output directory
 * cannot redirect writes. `root` itself is trusted (the user chose it).
 * Directories already checked in this run are remembered in `verified`,
 * and the ones it made in `created` (files there need no comparison).
 * Synchronous on purpose: a few microseconds per new directory, and no
 * other task can interleave between the check and the use.
 */
export function ensureDirs(
  root: string,
  components: string[],
  verified: Set<string>,
  created?: Set<string>,
): string {
  let path = root;
  for (const part of components) {
    path = join(path, part);
    if (verified.has(path)) continue;
    let info: Deno.FileInfo | undefined;
    try {
      info = Deno.lstatSync(path);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        throw new LocalPathError(path, reason(error), error);
      }
    }
    if (info === undefined) {
      try {
        Deno.mkdirSync(path);
        created?.add(path);
      } catch (error) {
        if (!(error instanceof Deno.errors.AlreadyExists)) {
          throw new LocalPathError(path, reason(error), error);
        }
      }
      info = Deno.lstatSync(path);
    }
    if (info.isSymlink) {
      throw new LocalPathError(path, "it is a symbolic link");
    }
    if (!info.isDirectory) {
      throw new LocalPathError(path, "it exists and is not a directory");
    }
    verified.add(path);
  }
  return path;
}

/**
 * `--dry-run`'s {@linkcode ensureDirs}: the same checks, creating nothing.
 * A missing directory (and everything below it) goes into `absent`: what
 * would be made there needs no comparison.
 */
export function probeDirs(
  root: string,
  components: string[],
  verified: Set<string>,
  absent: Set<string>,
): string {
  let path = root;
  for (const part of components) {
    const parent = path;
    path = join(path, part);
    if (verified.has(path) || absent.has(path)) continue;
    if (absent.has(parent)) {
      absent.add(path);
      continue;
    }
    let info: Deno.FileInfo;
    try {
      info = Deno.lstatSync(path);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        throw new LocalPathError(path, reason(error), error);
      }
      absent.add(path);
      continue;
    }
    if (info.isSymlink) {
      throw new LocalPathError(path, "it is a symbolic link");
    }
    if (!info.isDirectory) {
      throw new LocalPathError(path, "it exists and is not a directory");
    }
    verified.add(path);
  }
  return path;
}

/** `--dry-run`'s {@linkcode makeTreeRoot}: true when `dest` is missing; `LocalPathError` when it is not a directory. */
export function probeTreeRoot(dest: string): boolean {
  if (isDirectory(dest)) return false;
  if (exists(dest)) {
    throw new LocalPathError(dest, "it exists and is not a directory");
  }
  return true;
}

/** Permission bits a server may not set unless the user asks: setuid, setgid, sticky, and write for others. */
export const UNSAFE_MODE_BITS = 0o7002;

/** The permission bits of a server's `mode` to apply locally: without {@linkcode UNSAFE_MODE_BITS} unless `special`. */
export function modeToApply(mode: number, special = false): number {
  return mode & (special ? 0o7777 : 0o7777 & ~UNSAFE_MODE_BITS);
}

/** Permission bits a file's creation leaves out by default: `umask(2)`; 0o022 when it cannot be read. */
export function localUmask(): number {
  try {
    return Deno.umask();
  } catch {
    return 0o022;
  }
}

/**
 * The permission bits of an entry this run creates, from the server's
 * `mode`: exactly as {@linkcode modeToApply} gives them with `preserve`
 * (`-P`), else also masked by the local `umask` as cp and scp do, so a
 * private file stays private and an executable stays executable.
 */
export function modeForNew(
  mode: number,
  options: { preserve?: boolean; special?: boolean; umask: number },
): number {
  if (options.preserve) return modeToApply(mode, options.special);
  return modeToApply(mode) & ~options.umask;
}

/** Whether anything is at `path` (a dangling link included). */
function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Sets a directory's mtime (and mode) through a handle checked against its
 * name, so a link swapped in is not followed. A directory that cannot be
 * opened (no read permission) is checked by `lstat` and set by name.
 */
export function setDirMeta(path: string, mtime: number, mode?: number): void {
  let file: Deno.FsFile;
  try {
    file = openChecked(path, { dir: true });
  } catch (error) {
    if (
      !(error instanceof LocalPathError) ||
      !(error.cause instanceof Deno.errors.PermissionDenied)
    ) throw error;
    const info = Deno.lstatSync(path);
    if (!info.isDirectory) throw error;
    if (mode !== undefined) Deno.chmodSync(path, mode);
    Deno.utimeSync(path, new Date(), new Date(mtime));
    return;
  }
  try {
    if (mode !== undefined) chmodOpened(file, path, mode);
    file.utimeSync(new Date(), new Date(mtime));
  } finally {
    file.close();
  }
}
