/** Parses the HTTP `Range` request header (one byte range) against a file size. */

/** What a `Range` header asks of a file of a given size. */
export type RangeRequest =
  /** Absent, unparsable, multi-range, or a file of 0 bytes: answer with the whole file (200). */
  | { kind: "none" }
  /** One satisfiable range, inclusive and clamped to the file (206). */
  | { kind: "range"; start: number; end: number }
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
export function parseRange(header: string | null, size: number): RangeRequest {
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
    return { kind: "range", start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(first);
  if (last !== "" && Number(last) < start) return NONE;
  if (start >= size) return UNSATISFIABLE;
  const end = last === "" ? size - 1 : Math.min(Number(last), size - 1);
  return { kind: "range", start, end };
}
