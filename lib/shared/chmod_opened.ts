/**
 * The permission bits of a file open as a Deno handle, set through a second,
 * node descriptor proven to be the same inode (Deno's handles have no
 * `fchmod`); apart from lib/shared/checked_open.ts, which loads no node
 * module.
 */
import { closeSync, constants, fchmodSync, fstatSync, openSync } from "node:fs";
import { fileIdOf, sameFileId } from "./checked_open.ts";
import { LocalPathError, reason } from "./errors.ts";

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
  // Most files are created with the mode they are to have (0666 less the
  // umask): nothing to change, no second open (10,000 small files pulled
  // without -P took 0.4 s longer when each was opened again).
  const own = file.statSync();
  if (((own.mode ?? -1) & 0o7777) === mode) return;
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
    if (!sameFileId({ dev: st.dev, ino: st.ino }, fileIdOf(own))) {
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
