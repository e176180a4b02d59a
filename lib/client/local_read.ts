/**
 * A small local file read whole (for a bundle of a push) through a node
 * descriptor, proven by its own `fstat` to be the regular file the walk
 * found (same device and inode) before its bytes are used. Deno resolves
 * every component of an opened path itself, so `O_NOFOLLOW` does not stop a
 * symbolic link swapped in at the name: the `fstat` does (it shows the
 * link's target, another inode).
 * `O_NONBLOCK` keeps a FIFO swapped in from hanging the open. A Deno handle
 * would cost more: its `statSync` costs Deno six `readlink`s of the path
 * under a permission set (11 us against 7).
 */
import {
  closeSync,
  constants,
  fstatSync,
  openSync,
  readSync,
  type Stats,
} from "node:fs";
import type { FileId } from "../shared/checked_open.ts";
import { reason } from "../shared/errors.ts";
import { readFully } from "../shared/fd_read.ts";
import { toFileInfo } from "../shared/node_stats.ts";

/** What reading a small file gave. */
export type SmallRead =
  /** Its bytes, and its `fstat` after they were read (size, times, mode of those very bytes). */
  | { kind: "read"; info: Deno.FileInfo; data: Uint8Array }
  /** It grew past the size asked for: its `fstat` now, nothing read. */
  | { kind: "big"; info: Deno.FileInfo }
  /** It changed during each of three reads: nothing to send as it is. */
  | { kind: "changing" };

const READ_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK;

/** What the walk's `lstat` told of a file: its inode, size and times (ms). */
export interface Walked {
  id: FileId;
  size: number;
  mtime: number;
  changedMs: number;
}

/** {@linkcode Walked} from an `lstat`. */
export function walkedOf(info: Deno.FileInfo): Walked {
  return {
    id: { dev: info.dev, ino: info.ino ?? -1 },
    size: info.size,
    mtime: info.mtime === null ? 0 : Math.floor(info.mtime.getTime()),
    changedMs: info.ctime?.getTime() ?? 0,
  };
}

/**
 * Reads the regular file at `path`, which must be the inode the walk found
 * (`walked`), when it holds at most `maxBytes`. A file written meanwhile is
 * taken as it is after the read (its size, time and mode from the same
 * descriptor), and read again when it changed during the read. Throws an
 * `Error` naming the path and the cause when it cannot be opened or is not
 * that file any more.
 *
 * A file as the walk found it costs one `fstat`, after its bytes are read:
 * it proves the descriptor is the walked inode, and its size and times the
 * same as the walk's `lstat` (taken before the open) prove nothing wrote to
 * it since. Another file swapped in is read (at most the walked size,
 * without blocking) before it is refused, never sent; node's `fstat` costs
 * about 10 us of JavaScript, a tenth of a small file's push.
 */
export function readSmallLocal(
  path: string,
  walked: Walked,
  maxBytes: number,
): SmallRead {
  const failure = (why: string) => new CannotRead(path, why);
  let fd: number;
  try {
    fd = openSync(path, READ_FLAGS);
  } catch (error) {
    throw failure(reason(error));
  }
  const expected = walked.id;
  const check = (info: Stats) => {
    if (
      !info.isFile() || info.dev !== expected.dev || info.ino !== expected.ino
    ) throw failure("it was replaced while hsync used it");
    return info;
  };
  try {
    let before: Stats;
    if (walked.size <= maxBytes) {
      const data = new Uint8Array(walked.size);
      let whole = false;
      try {
        whole = readFully(fd, data) && atEnd(fd, data.length);
      } catch {
        // Not a file that reads (the fstat tells), or an error read again below.
      }
      before = check(fstatSync(fd));
      if (
        whole && before.size === walked.size &&
        Math.floor(before.mtimeMs) === walked.mtime &&
        Math.floor(before.ctimeMs) === walked.changedMs
      ) return { kind: "read", info: toFileInfo(before), data };
    } else {
      before = check(fstatSync(fd));
    }
    for (let attempt = 0; attempt < 3; attempt++) {
      if (attempt > 0) before = fstatSync(fd);
      if (before.size > maxBytes) {
        return { kind: "big", info: toFileInfo(before) };
      }
      const data = new Uint8Array(before.size);
      const whole = readFully(fd, data);
      const after = fstatSync(fd);
      if (whole && atEnd(fd, data.length) && same(before, after)) {
        return { kind: "read", info: toFileInfo(after), data };
      }
    }
    return { kind: "changing" };
  } catch (error) {
    throw error instanceof CannotRead ? error : failure(reason(error));
  } finally {
    closeSync(fd);
  }
}

/** A small file that cannot be read: the path and the cause. */
class CannotRead extends Error {
  constructor(path: string, why: string) {
    super(`Cannot read ${JSON.stringify(path)}: ${why}`);
    this.name = "CannotRead";
  }
}

/** True when the file has no byte at `offset`. */
function atEnd(fd: number, offset: number): boolean {
  return readSync(fd, new Uint8Array(1), 0, 1, offset) === 0;
}

function same(a: Stats, b: Stats): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs;
}
