/**
 * Byte ranges of a file in one shape, half-open `[start, end)`, everywhere:
 * splitting a file or what is missing of it into parts, and the HTTP `Range`
 * and `Content-Range` headers (whose inclusive ends are converted here and
 * nowhere else).
 */

/** A half-open byte range `[start, end)`. */
export interface ByteRange {
  start: number;
  end: number;
}

/** Options of {@linkcode planChunks} and {@linkcode planGaps}. */
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

/**
 * The ranges to fetch for the missing parts (`gaps`, sorted, disjoint) of a
 * file: one gap is split as {@linkcode planChunks} splits a file; several
 * are taken as they are, the largest halved while there are fewer than
 * `maxParts` and it is at least twice `minPartSize`.
 */
export function planGaps(
  gaps: readonly ByteRange[],
  options: ChunkPlanOptions,
): ByteRange[] {
  // Nothing to send (an empty file, or one the server holds whole).
  if (gaps.length === 0) return [];
  if (gaps.length === 1) {
    const { start: offset, end } = gaps[0];
    return planChunks(end - offset, options).map((r) => ({
      start: r.start + offset,
      end: r.end + offset,
    }));
  }
  const ranges = gaps.map(({ start, end }) => ({ start, end }));
  while (ranges.length < options.maxParts) {
    let big = 0;
    for (let i = 1; i < ranges.length; i++) {
      if (
        ranges[i].end - ranges[i].start > ranges[big].end - ranges[big].start
      ) big = i;
    }
    const r = ranges[big];
    const length = r.end - r.start;
    if (length < 2 * options.minPartSize) break;
    const mid = r.start + Math.floor(length / 2);
    ranges.splice(big, 1, { start: r.start, end: mid }, {
      start: mid,
      end: r.end,
    });
  }
  return ranges;
}

/** What a `Range` header asks of a file of a given size. */
export type RangeRequest =
  /** Absent, unparsable, multi-range, or a file of 0 bytes: answer with the whole file (200). */
  | { kind: "none" }
  /** One satisfiable range, clamped to the file (206). */
  | { kind: "range"; range: ByteRange }
  /** A well-formed range that selects no byte of the file (416). */
  | { kind: "unsatisfiable" };

const NONE: RangeRequest = { kind: "none" };
const UNSATISFIABLE: RangeRequest = { kind: "unsatisfiable" };
const SINGLE_RANGE = /^bytes[ \t]*=[ \t]*(\d*)[ \t]*-[ \t]*(\d*)$/i;

/**
 * Reads a `Range` header such as `bytes=0-99`, `bytes=100-` or `bytes=-500`
 * the way denoland/std's file server does: anything it cannot use as one range
 * (including several ranges) means the whole file. Never throws.
 */
export function parseRangeHeader(
  header: string | null,
  size: number,
): RangeRequest {
  if (header === null || !Number.isSafeInteger(size) || size <= 0) {
    return NONE;
  }
  if (header.length > 200) return NONE;
  const m = SINGLE_RANGE.exec(header.trim());
  if (m === null) return NONE;
  const [, first, last] = m;
  if (first === "" && last === "") return NONE;
  if (first === "") {
    // Suffix range: the last N bytes.
    const n = Number(last);
    if (n === 0) return UNSATISFIABLE;
    return {
      kind: "range",
      range: { start: Math.max(0, size - n), end: size },
    };
  }
  const start = Number(first);
  if (last !== "" && Number(last) < start) return NONE;
  if (start >= size) return UNSATISFIABLE;
  const end = last === "" ? size : Math.min(Number(last) + 1, size);
  return { kind: "range", range: { start, end } };
}

/** The `Range` header asking for `range`; an open end (`end` undefined) asks to the end of the file. */
export function rangeHeader(range: { start: number; end?: number }): string {
  return range.end === undefined
    ? `bytes=${range.start}-`
    : `bytes=${range.start}-${range.end - 1}`;
}

/** The `Content-Range` header of a 206 answer, or of a 416 (`bytes *\/SIZE`) without a range. */
export function contentRange(
  range: ByteRange | undefined,
  size: number,
): string {
  return range === undefined
    ? `bytes */${size}`
    : `bytes ${range.start}-${range.end - 1}/${size}`;
}

/** Reads a `Content-Range: bytes A-B/SIZE` header; undefined for anything else (including `*`). */
export function parseContentRange(
  value: string | null,
): { range: ByteRange; size: number } | undefined {
  if (value === null) return undefined;
  const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(value.trim());
  if (m === null) return undefined;
  const [start, last, size] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (start > last || last >= size) return undefined;
  return { range: { start, end: last + 1 }, size };
}
