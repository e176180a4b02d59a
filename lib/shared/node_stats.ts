/**
 * node's `Stats` as Deno's `FileInfo`: the sides read files through node
 * descriptors (`O_NOFOLLOW`, `O_NONBLOCK`, `fchmod`, `futimes`, none of which
 * Deno's handles offer) and describe them as Deno does.
 */
import type { Stats } from "node:fs";

/** The `Deno.FileInfo` of a node `fstat`, so identity tags come out the same as from `Deno.lstat`. */
export function toFileInfo(st: Stats): Deno.FileInfo {
  return {
    isFile: st.isFile(),
    isDirectory: st.isDirectory(),
    isSymlink: st.isSymbolicLink(),
    size: st.size,
    // From the milliseconds, rounded down as Deno rounds them: node's own
    // Dates are a millisecond later before 1970 (-18489599999 for a time
    // Deno reads as -18489600000), and the ETag would differ from a listing's.
    mtime: dateOf(st.mtimeMs),
    atime: dateOf(st.atimeMs),
    birthtime: dateOf(st.birthtimeMs),
    ctime: dateOf(st.ctimeMs),
    dev: st.dev,
    ino: st.ino,
    mode: st.mode,
    nlink: st.nlink,
    uid: st.uid,
    gid: st.gid,
    rdev: st.rdev,
    blksize: st.blksize,
    blocks: st.blocks,
    isBlockDevice: st.isBlockDevice(),
    isCharDevice: st.isCharacterDevice(),
    isFifo: st.isFIFO(),
    isSocket: st.isSocket(),
  };
}

/** A node `Stats` time in milliseconds as a Date (none when unknown). */
function dateOf(ms: number): Date | null {
  return Number.isFinite(ms) ? new Date(Math.floor(ms)) : null;
}
