/** The body of one PUT of a push: a range of a local file read whole. */
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import type { ByteRange } from "../shared/byte_range.ts";
import { reason } from "../shared/errors.ts";
import { LocalChanged, type SendJob } from "./push_context.ts";

/**
 * The bytes `span` of `job`'s file read into `bytes` (as long as the span),
 * through a descriptor proven to be `job.id` (the name's `lstat` before the
 * open and the descriptor's `fstat`: the same device and inode, a regular
 * file); a file shorter than the span throws
 * {@linkcode LocalChanged}, as does one that cannot be read or was replaced.
 * Positional reads on this thread: reading 1 GiB in 2 MiB ranges took
 * 0.20-0.28 s of system time so, 0.31-0.32 s through a Deno handle's seek and
 * reads (each a round trip to a thread of its own).
 */
export function readSpan(
  job: SendJob,
  span: ByteRange,
  bytes: Uint8Array<ArrayBuffer>,
): Uint8Array<ArrayBuffer> {
  const cannot = (why: string) =>
    new LocalChanged(`Cannot read ${JSON.stringify(job.local)}: ${why}`);
  // Deno resolves a final link itself (O_NOFOLLOW cannot stop it): the
  // name is looked at first, and only the planned regular file is opened.
  let named: Deno.FileInfo;
  try {
    named = Deno.lstatSync(job.local);
  } catch (error) {
    throw cannot(reason(error));
  }
  if (!named.isFile || named.dev !== job.id.dev || named.ino !== job.id.ino) {
    throw cannot("it was replaced while hsync used it");
  }
  let fd: number;
  try {
    // Never blocking on a FIFO swapped in meanwhile.
    fd = openSync(
      job.local,
      constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK,
    );
  } catch (error) {
    throw cannot(reason(error));
  }
  try {
    let info;
    try {
      info = fstatSync(fd);
    } catch (error) {
      throw cannot(reason(error));
    }
    if (
      !info.isFile() || info.dev !== job.id.dev || info.ino !== job.id.ino
    ) throw cannot("it was replaced while hsync used it");
    let done = 0;
    while (done < bytes.length) {
      let n: number;
      try {
        n = readSync(fd, bytes, done, bytes.length - done, span.start + done);
      } catch (error) {
        throw cannot(reason(error));
      }
      if (n === 0) {
        throw new LocalChanged(`"${job.label}" shrank while it was sent`);
      }
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return bytes;
}
