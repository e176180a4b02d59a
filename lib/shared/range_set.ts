/** A set of byte ranges of one file (what is on disk, what is missing), kept sorted and merged, in the one {@linkcode ByteRange} shape. */
import type { ByteRange } from "./byte_range.ts";

/** Byte ranges of a file, sorted, disjoint and merged: adding, cutting out, and what is left to fetch. */
export class RangeSet {
  #ranges: ByteRange[] = [];

  /** Builds a set from ranges in any order, overlapping or not. */
  constructor(ranges: Iterable<ByteRange> = []) {
    for (const r of ranges) this.add(r);
  }

  /** Adds a range; an empty or inverted one is ignored. */
  add(range: ByteRange): void {
    let { start, end } = range;
    if (!(end > start)) return;
    const out: ByteRange[] = [];
    let placed = false;
    for (const r of this.#ranges) {
      if (r.end < start) out.push(r);
      else if (r.start > end) {
        if (!placed) {
          out.push({ start, end });
          placed = true;
        }
        out.push(r);
      } else {
        start = Math.min(start, r.start);
        end = Math.max(end, r.end);
      }
    }
    if (!placed) out.push({ start, end });
    this.#ranges = out;
  }

  /** Cuts a range out (its bytes are no longer known to be on disk). */
  remove(range: ByteRange): void {
    const { start, end } = range;
    if (!(end > start)) return;
    const out: ByteRange[] = [];
    for (const r of this.#ranges) {
      if (r.end <= start || r.start >= end) out.push(r);
      else {
        if (r.start < start) out.push({ start: r.start, end: start });
        if (r.end > end) out.push({ start: end, end: r.end });
      }
    }
    this.#ranges = out;
  }

  /** Total bytes covered. */
  get covered(): number {
    let n = 0;
    for (const r of this.#ranges) n += r.end - r.start;
    return n;
  }

  /** The end of the last range (0 when empty). */
  get end(): number {
    return this.#ranges.length === 0
      ? 0
      : this.#ranges[this.#ranges.length - 1].end;
  }

  /** True when `[0, size)` is covered entirely. */
  isComplete(size: number): boolean {
    if (size === 0) return true;
    return this.#ranges.length === 1 && this.#ranges[0].start <= 0 &&
      this.#ranges[0].end >= size;
  }

  /** The ranges of `[0, size)` not covered, in order. */
  gaps(size: number): ByteRange[] {
    const out: ByteRange[] = [];
    let pos = 0;
    for (const r of this.#ranges) {
      if (r.start >= size) break;
      if (r.start > pos) out.push({ start: pos, end: r.start });
      pos = Math.max(pos, r.end);
    }
    if (pos < size) out.push({ start: pos, end: size });
    return out;
  }

  /** A copy of the ranges, in order. */
  toArray(): ByteRange[] {
    return this.#ranges.map(({ start, end }) => ({ start, end }));
  }
}
