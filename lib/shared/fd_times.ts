/**
 * The modification time of an open descriptor (or of a symbolic link
 * itself) set to a whole millisecond, exactly as it reads back (node's
 * `futimes` and `lutimes` take floating seconds), for any side that writes
 * files through node descriptors, or links.
 */
import { fstatSync, futimesSync, lstatSync, lutimesSync } from "node:fs";
import { mtimeMs } from "./file_identity.ts";

/**
 * Half a microsecond above first: seconds as a double are within 2.4e-7 of
 * the millisecond at today's times, so the first lands in it at once.
 */
const FIRST_EXTRA_AND_MORE = [5e-7, 0, 5e-6, 5e-5];

/**
 * {@linkcode setMtimeMs}'s first try alone, unchecked: for a caller that
 * reads the time back anyway (and calls `setMtimeMs` when it missed). The
 * check is an `fstat`, 12 of the 90 us a file of an upload bundle took.
 */
export function setMtimeMsOnce(fd: number, ms: number): void {
  futimesSync(fd, new Date(), Math.trunc(ms) / 1000 + FIRST_EXTRA_AND_MORE[0]);
}

/**
 * Sets the modification time of the open descriptor `fd` to `ms` exactly
 * as a whole millisecond reads back. node's `futimes` passes the time as
 * floating seconds, which loses up to a few hundred nanoseconds: set as
 * is, 1796578193.554 s came back as .553999900 and the file looked a
 * millisecond older than the one it was copied from (a rerun sent it
 * again). A little is added until the nanoseconds read back are within
 * that millisecond.
 */
export function setMtimeMs(fd: number, ms: number): void {
  settleMs(
    ms,
    (seconds) => futimesSync(fd, new Date(), seconds),
    () => fstatSync(fd, { bigint: true }).mtimeNs,
  );
}

/**
 * Sets the modification time of the symbolic link at `path` itself (as
 * `rsync -a` keeps it) to `ms`, as {@linkcode setMtimeMs} does for a file:
 * node's `lutimes` never follows the link and passes the path as given
 * (Deno's `utime` follows it). The link is one its caller just made.
 */
export function setLinkMtimeMs(path: string, ms: number): void {
  settleMs(
    ms,
    (seconds) => lutimesSync(path, new Date(), seconds),
    () => lstatSync(path, { bigint: true }).mtimeNs,
  );
}

/** Sets a time with `set` (floating seconds) until `read` (nanoseconds) reads back the whole millisecond of `ms`. */
function settleMs(
  ms: number,
  set: (seconds: number) => void,
  read: () => bigint,
): void {
  const whole = Math.trunc(ms);
  for (const extra of FIRST_EXTRA_AND_MORE) {
    set(whole / 1000 + extra);
    if (read() / 1_000_000n === BigInt(whole)) return;
  }
}

/**
 * `now`, the entry at a name just given (by a rename) to the file open as
 * `fd`, whose time {@linkcode setMtimeMsOnce} set: when that first try
 * missed the millisecond, the time is set exactly and `look()` looks again.
 */
export function withMtimeMs(
  fd: number,
  ms: number,
  now: Deno.FileInfo | undefined,
  look: () => Deno.FileInfo | undefined,
): Deno.FileInfo | undefined {
  if (now === undefined || mtimeMs(now) === Math.trunc(ms)) return now;
  setMtimeMs(fd, ms);
  return look();
}
