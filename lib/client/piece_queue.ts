/** What is left to fetch of a file, handed out in pieces from the front (the file then grows mostly in order). */
import type { ByteRange } from "../shared/byte_range.ts";

/** The gaps of one file, taken piece by piece. */
export class PieceQueue {
  readonly #gaps: ByteRange[];
  #remaining = 0;

  /** A queue of `gaps` (sorted, disjoint). */
  constructor(gaps: readonly ByteRange[]) {
    this.#gaps = gaps.filter((g) => g.end > g.start).map((g) => ({ ...g }));
    for (const g of this.#gaps) this.#remaining += g.end - g.start;
  }

  /** Bytes not handed out yet. */
  get remaining(): number {
    return this.#remaining;
  }

  /** The next piece of at most `max` bytes (never across a gap's end), or undefined when nothing is left. */
  take(max: number): ByteRange | undefined {
    const gap = this.#gaps[0];
    if (gap === undefined) return undefined;
    const end = Math.min(gap.end, gap.start + Math.max(1, Math.floor(max)));
    const piece = { start: gap.start, end };
    gap.start = end;
    if (gap.start >= gap.end) this.#gaps.shift();
    this.#remaining -= end - piece.start;
    return piece;
  }
}
