/**
 * One byte range of an upload written into its part file as its body
 * arrives: each piece at its offset, positionally and on the serving thread
 * (a write into the page cache costs less than handing it to a worker
 * thread and waiting for it), counting the range's first bytes that reached
 * the file whatever stops it.
 */
import { writeSync } from "node:fs";
import type { ByteRange } from "../shared/byte_range.ts";

/** Hands over a range's bytes in order, never more than its length (lib/server/request_body.ts's `streamBody`). */
export type Pour = (sink: (piece: Uint8Array) => void) => Promise<void>;

/** What {@linkcode pourRange} did: the range's first bytes it wrote, and what stopped it short (undefined: nothing did). */
export interface Poured {
  written: number;
  error?: unknown;
}

/**
 * Writes what `pour` hands over into `fd` at `range`'s offsets. A failed
 * write is turned into the error to answer by `writeFailure` (a full disk is
 * a 507); `pour`'s own failure is returned as it is.
 */
export async function pourRange(
  fd: number,
  range: ByteRange,
  pour: Pour,
  writeFailure: (error: unknown) => unknown,
): Promise<Poured> {
  const length = range.end - range.start;
  let written = 0;
  try {
    await pour((piece) => {
      let done = 0;
      try {
        while (done < piece.length) {
          done += writeSync(
            fd,
            piece,
            done,
            piece.length - done,
            range.start + written + done,
          );
        }
      } catch (error) {
        throw writeFailure(error);
      } finally {
        written += done;
      }
    });
  } catch (error) {
    return { written, error };
  }
  return written === length ? { written } : {
    written,
    error: new Error("A range's body ended short of its length"),
  };
}
