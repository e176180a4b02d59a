/** Where a file's data is and where its holes may be (`-S`): runs of zero blocks long enough to leave unwritten and unsent. */
import { HOLE_BLOCK_BYTES, MIN_HOLE_BYTES } from "./wire.ts";

/** Bytes read at a time when a file is scanned. */
const SCAN_BYTES = 1024 * 1024;

/** Whether `bytes` are all zero. */
export function isZero(bytes: Uint8Array): boolean {
  let i = 0;
  if (bytes.byteOffset % 4 === 0) {
    const words = new Int32Array(
      bytes.buffer,
      bytes.byteOffset,
      bytes.length >>> 2,
    );
    for (let w = 0; w < words.length; w++) if (words[w] !== 0) return false;
    i = words.length * 4;
  }
  for (; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/**
 * Runs of zero blocks in `bytes`, which sit at `offset` in their file:
 * half-open `[start, end)` file offsets, each made of whole
 * {@linkcode HOLE_BLOCK_BYTES} blocks aligned in the file and at least
 * `minBytes` long. A run may end at `offset + bytes.length` where that is
 * the end of the file (a partial last block counts when it is zero).
 */
export function zeroRuns(
  bytes: Uint8Array,
  offset: number,
  minBytes = MIN_HOLE_BYTES,
): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  const end = offset + bytes.length;
  let block = Math.ceil(offset / HOLE_BLOCK_BYTES) * HOLE_BLOCK_BYTES;
  let runStart = -1;
  const close = (at: number) => {
    if (runStart >= 0 && at - runStart >= minBytes) runs.push([runStart, at]);
    runStart = -1;
  };
  while (block < end) {
    const blockEnd = Math.min(block + HOLE_BLOCK_BYTES, end);
    const zero = isZero(bytes.subarray(block - offset, blockEnd - offset));
    if (zero && runStart < 0) runStart = block;
    if (!zero) close(block);
    block = blockEnd;
  }
  close(end);
  return runs;
}

/**
 * The data extents of the open `file` of `size` bytes, half-open and
 * sorted: everything outside them reads as zero, in runs of at least
 * `minBytes` of aligned blocks (shorter zero runs are data). Reads the
 * file once, {@linkcode SCAN_BYTES} at a time (holes read fast: the
 * kernel has nothing to fetch from disk). A file that ends early is read
 * as far as it goes.
 */
export async function dataExtents(
  file: Pick<Deno.FsFile, "read" | "seek">,
  size: number,
  minBytes = MIN_HOLE_BYTES,
): Promise<Array<[number, number]>> {
  const holes: Array<[number, number]> = [];
  const buffer = new Uint8Array(SCAN_BYTES);
  await file.seek(0, Deno.SeekMode.Start);
  let at = 0;
  // A run of zeros may cross reads: the open one is carried over.
  let carry: [number, number] | undefined;
  while (at < size) {
    const want = Math.min(SCAN_BYTES, size - at);
    let got = 0;
    while (got < want) {
      const n = await file.read(buffer.subarray(got, want));
      if (n === null) break;
      got += n;
    }
    if (got === 0) break;
    // Whole blocks only, except at the end of the file.
    const last = at + got >= size;
    const usable = last ? got : got - (got % HOLE_BLOCK_BYTES);
    const read = buffer.subarray(0, usable);
    // Most of a sparse file reads as whole zero buffers: one look each.
    const runs: Array<[number, number]> = isZero(read)
      ? [[at, at + usable]]
      : zeroRuns(read, at, 1);
    for (const run of runs) {
      if (carry !== undefined && carry[1] === run[0]) carry[1] = run[1];
      else {
        if (carry !== undefined && carry[1] - carry[0] >= minBytes) {
          holes.push(carry);
        }
        carry = [run[0], run[1]];
      }
    }
    at += usable;
    if (usable < got) await file.seek(at, Deno.SeekMode.Start);
    if (got < want) break;
  }
  if (carry !== undefined && carry[1] - carry[0] >= minBytes) holes.push(carry);
  const data: Array<[number, number]> = [];
  let from = 0;
  for (const [s, e] of holes) {
    if (s > from) data.push([from, s]);
    from = e;
  }
  if (from < size) data.push([from, size]);
  return data;
}
