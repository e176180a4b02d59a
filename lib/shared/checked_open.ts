/**
 * Opening a local file by name and proving the handle is the entry at that
 * name (device, inode, type), for any side that writes files it does not
 * fully control: Deno resolves every component of an opened path itself, so
 * `O_NOFOLLOW` cannot stop a final symlink and the check must come after the
 * open, before any byte is written. (Runtime calls only: a push loads
 * this before its first request, ahead of node's modules.)
 */
import { LocalPathError, reason } from "./errors.ts";

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
    return file;
  } catch (error) {
    file.close();
    throw error;
  }
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
    return file;
  } catch (error) {
    file.close();
    throw error;
  }
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

function refuseKind(path: string, info: Deno.FileInfo, dir: boolean): void {
  if (info.isSymlink) throw new LocalPathError(path, "it is a symbolic link");
  if (dir && !info.isDirectory) {
    throw new LocalPathError(path, "it exists and is not a directory");
  }
  if (!dir && !info.isFile) {
    throw new LocalPathError(path, "it exists and is not a regular file");
  }
}
