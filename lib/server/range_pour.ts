/**
 * One byte range of an upload written into its part file as its body
 * arrives: each piece at its offset, positionally and on the serving thread
 * (a write into the page cache costs less than handing it to a worker
 * thread and waiting for it), counting the range's first bytes that reached
 * the file whatever stops it.
 */
import { writeSync } from "node:fs";
import type { ByteRange } from "../shared/byte_range.ts";

/** Hands over a range's bytes in order, each piece with its offset in the range (lib/server/request_body.ts's `streamBody`). */
export type Pour = (
  sink: (piece: Uint8Array, at: number) => void,
) => Promise<void>;

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
    await pour((piece, at) => {
      if (at !== written || at + piece.length > length) {
        throw new Error("Pieces of a range came out of order or past its end");
      }
      try {
        while (written < at + piece.length) {
          const from = written - at;
          written += writeSync(
            fd,
            piece,
            from,
            piece.length - from,
            range.start + written,
          );
        }
      } catch (error) {
        throw writeFailure(error);
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
