/**
 * The modification time of an open descriptor set to a whole millisecond,
 * exactly as it reads back (node's `futimes` takes floating seconds), for
 * any side that writes files through node descriptors.
 */
import { fstatSync, futimesSync } from "node:fs";
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
  const whole = Math.trunc(ms);
  for (const extra of FIRST_EXTRA_AND_MORE) {
    futimesSync(fd, new Date(), whole / 1000 + extra);
    const ns = fstatSync(fd, { bigint: true }).mtimeNs;
    if (ns / 1_000_000n === BigInt(whole)) return;
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
