/** Splits a big file into contiguous byte ranges that are fetched in parallel. */

/** A half-open byte range `[start, end)`. */
export interface ByteRange {
  start: number;
  end: number;
}

/** Options of {@linkcode planChunks}. */
export interface ChunkPlanOptions {
  /** Most ranges one file is split into (`Max_part_num`). */
  maxParts: number;
  /** Least bytes in a range (`Min_part_size`); a smaller file is one range. */
  minPartSize: number;
}

/**
 * Splits `[0, size)` into at most `maxParts` contiguous ranges of at least
 * `minPartSize` bytes (a file below `minPartSize` is one range), with sizes
 * differing by at most one byte. An empty file has no ranges.
 */
export function planChunks(
  size: number,
  options: ChunkPlanOptions,
): ByteRange[] {
  const { maxParts, minPartSize } = options;
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new RangeError(`Cannot plan ranges of size "${size}"`);
  }
  if (!Number.isSafeInteger(maxParts) || maxParts < 1) {
    throw new RangeError(`Invalid maximum part count "${maxParts}"`);
  }
  if (!Number.isSafeInteger(minPartSize) || minPartSize < 1) {
    throw new RangeError(`Invalid minimum part size "${minPartSize}"`);
  }
  if (size === 0) return [];
  const parts = Math.max(1, Math.min(maxParts, Math.floor(size / minPartSize)));
  const base = Math.floor(size / parts);
  const extra = size - base * parts;
  const ranges: ByteRange[] = [];
  let start = 0;
  for (let i = 0; i < parts; i++) {
    const end = start + base + (i < extra ? 1 : 0);
    ranges.push({ start, end });
    start = end;
  }
  return ranges;
}
