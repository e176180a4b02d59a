/** Maps untrusted relative paths from the server onto the output directory, refusing anything that could write outside it. */
import { closeSync, constants, fchmodSync, fstatSync, openSync } from "node:fs";
import { join } from "node:path";
import {
  relativeComponents,
  RelativePathError,
} from "../shared/relative_path.ts";
import { LocalPathError, reason } from "../shared/errors.ts";

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

/** What makes a file the same file: its device and inode. */
export interface FileId {
  dev: number;
  ino: number;
}

/** The identity of a file from its `stat`/`lstat`. */
export function fileIdOf(info: Deno.FileInfo): FileId {
  return { dev: info.dev, ino: info.ino ?? -1 };
}

/** True when both name the same inode. */
export function sameFileId(a: FileId, b: FileId): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/** What a checked open expects at the name. */
export interface CheckedOpenOptions {
  /** Open for writing too (never truncating: that is the caller's, after the check). */
  write?: boolean;
  /** A directory instead of a regular file. */
  dir?: boolean;
  /** The inode that must be there (a part file this run created, say). */
  expected?: FileId;
}

/**
 * Opens the existing regular file (or directory) at `path` and proves it is
 * the entry at that name. Deno resolves every component of an opened path
 * itself, so `O_NOFOLLOW` cannot stop a final symlink: instead the name is
 * `lstat`ed before the open (a symlink, FIFO or device is never opened, so
 * nothing blocks or writes through it) and again after it, and the handle's
 * own `fstat` must show the same device and inode (and `expected`, when
 * given). Anything else throws {@linkcode LocalPathError} with the handle
 * closed and nothing written.
 */
export function openChecked(
  path: string,
  options: CheckedOpenOptions = {},
): Deno.FsFile {
  let before: Deno.FileInfo;
  try {
    before = Deno.lstatSync(path);
  } catch (error) {
    throw new LocalPathError(path, reason(error), error);
  }
  refuseKind(path, before, options.dir ?? false);
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true, write: options.write ?? false });
  } catch (error) {
    throw new LocalPathError(path, reason(error), error);
  }
  try {
    checkOpened(file, path, options);
  } catch (error) {
    file.close();
    throw error;
  }
  return file;
}

/**
 * Creates `path` as a new, empty regular file (`O_CREAT|O_EXCL`: any entry
 * at the name, a dangling symlink included, makes it fail with
 * `Deno.errors.AlreadyExists`, which is rethrown as is so the caller can
 * remove the entry and try again), then checks the handle against the name
 * as {@linkcode openChecked} does. Other failures throw
 * {@linkcode LocalPathError}.
 */
export function createChecked(path: string): Deno.FsFile {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true, write: true, createNew: true });
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) throw error;
    throw new LocalPathError(path, reason(error), error);
  }
  try {
    checkOpened(file, path, {});
  } catch (error) {
    file.close();
    throw error;
  }
  return file;
}

/**
 * Throws {@linkcode LocalPathError} unless the entry at `path` now is the
 * file open as `file`: same device and inode, a regular file (a directory
 * with `dir`), and `expected` when given. Returns the handle's `fstat`.
 */
export function checkOpened(
  file: Deno.FsFile,
  path: string,
  options: CheckedOpenOptions = {},
): Deno.FileInfo {
  let opened: Deno.FileInfo;
  let named: Deno.FileInfo;
  try {
    opened = file.statSync();
    named = Deno.lstatSync(path);
  } catch (error) {
    throw new LocalPathError(path, reason(error), error);
  }
  const dir = options.dir ?? false;
  refuseKind(path, named, dir);
  const id = fileIdOf(opened);
  if (
    !sameFileId(id, fileIdOf(named)) ||
    (dir ? !opened.isDirectory : !opened.isFile) ||
    (options.expected !== undefined && !sameFileId(id, options.expected))
  ) {
    throw new LocalPathError(path, "it was replaced while hsync used it");
  }
  return opened;
}

/**
 * Throws {@linkcode LocalPathError} unless the entry at `path` is still the
 * regular file `expected`: the check right before a call that takes a name
 * (a rename), so a link swapped in meanwhile is never moved into place.
 */
export function checkName(path: string, expected: FileId): void {
  let named: Deno.FileInfo;
  try {
    named = Deno.lstatSync(path);
  } catch (error) {
    throw new LocalPathError(path, reason(error), error);
  }
  refuseKind(path, named, false);
  if (!sameFileId(fileIdOf(named), expected)) {
    throw new LocalPathError(path, "it was replaced while hsync used it");
  }
}

/**
 * Sets the permission bits of the file open as `file` (named `path`). Deno's
 * handles have no `fchmod`, so a second descriptor is opened with node:fs
 * (read-only and non-blocking: a FIFO swapped in cannot hang us) and used
 * only once its `fstat` shows the very inode of `file`; whatever now sits at
 * the name, only that inode's mode changes.
 */
export function chmodOpened(
  file: Deno.FsFile,
  path: string,
  mode: number,
): void {
  let fd: number;
  try {
    fd = openSync(
      path,
      constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW,
    );
  } catch (error) {
    throw new LocalPathError(path, reason(error), error);
  }
  try {
    const st = fstatSync(fd);
    if (!sameFileId({ dev: st.dev, ino: st.ino }, fileIdOf(file.statSync()))) {
      throw new LocalPathError(path, "it was replaced while hsync used it");
    }
    fchmodSync(fd, mode);
  } catch (error) {
    if (error instanceof LocalPathError) throw error;
    throw new LocalPathError(path, reason(error), error);
  } finally {
    closeSync(fd);
  }
}

/** Permission bits a server may not set unless the user asks: setuid, setgid, sticky, and write for others. */
export const UNSAFE_MODE_BITS = 0o7002;

/** The permission bits of a server's `mode` to apply locally: without {@linkcode UNSAFE_MODE_BITS} unless `special`. */
export function modeToApply(mode: number, special = false): number {
  return mode & (special ? 0o7777 : 0o7777 & ~UNSAFE_MODE_BITS);
}

function refuseKind(path: string, info: Deno.FileInfo, dir: boolean): void {
  if (info.isSymlink) throw new LocalPathError(path, "it is a symbolic link");
  if (dir && !info.isDirectory) {
    throw new LocalPathError(path, "it exists and is not a directory");
  }
  if (!dir && !info.isFile) {
    throw new LocalPathError(path, "it exists and is not a regular file");
  }
}

/** Whether `path` is a directory now (following links); false when it cannot be read. */
export function isDirectory(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}
