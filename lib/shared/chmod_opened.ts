/**
 * The permission bits of a file open as a Deno handle, set through a second,
 * node descriptor proven to be the same inode (Deno's handles have no
 * `fchmod`). node's fs is loaded only by {@linkcode readyToChmod}, once a
 * run knows it will set a mode other than the one files are made with: a
 * pull that never does runs without it (loading it holds the client's one
 * thread 5-8 ms after node's crypto module, 16-28 ms before it).
 */
import { fileIdOf, sameFileId } from "./checked_open.ts";
import { LocalPathError, reason } from "./errors.ts";

let fs: typeof import("node:fs") | undefined;

/** Loads what {@linkcode chmodOpened} needs to change a mode (once; at once after). */
export async function readyToChmod(): Promise<void> {
  fs ??= await import("node:fs");
}

/** Whether {@linkcode readyToChmod} has run (a caller that may need it asks first). */
export function chmodReady(): boolean {
  return fs !== undefined;
}

/** Whether the permission bits of `own` (an `fstat`) are not `mode`: {@linkcode chmodOpened} would change them. */
export function modeDiffers(own: Deno.FileInfo, mode: number): boolean {
  return ((own.mode ?? -1) & 0o7777) !== mode;
}

/**
 * Sets the permission bits of the file open as `file` (named `path`). Deno's
 * handles have no `fchmod`, so a second descriptor is opened with node:fs
 * (read-only and non-blocking: a FIFO swapped in cannot hang us) and used
 * only once its `fstat` shows the very inode of `file`; whatever now sits at
 * the name, only that inode's mode changes. `own` is the handle's `fstat`
 * when the caller has it (each costs Deno seven `readlink`s of the path).
 * A mode to change before {@linkcode readyToChmod} is a mistake of the
 * caller's, thrown as such.
 */
export function chmodOpened(
  file: Deno.FsFile,
  path: string,
  mode: number,
  own: Deno.FileInfo = file.statSync(),
): void {
  // Most files are created with the mode they are to have (0666 less the
  // umask): nothing to change, no second open (10,000 small files pulled
  // without -P took 0.4 s longer when each was opened again).
  if (!modeDiffers(own, mode)) return;
  if (fs === undefined) {
    throw new Error(
      `chmodOpened(${JSON.stringify(path)}) before readyToChmod()`,
    );
  }
  const { closeSync, constants, fchmodSync, fstatSync, openSync } = fs;
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
