/**
 * A long synchronous loop made fair: it lets the event loop run once it has
 * gone a few milliseconds without, so the requests and answers around it
 * are not held until it ends.
 */
import { sleep } from "./sleep.ts";

/** Pauses a loop for one turn of the event loop once `everyMs` have passed since the last pause. */
export class Breather {
  readonly #everyMs: number;
  #last = performance.now();

  constructor(everyMs: number) {
    this.#everyMs = everyMs;
  }

  /** Resolves at once, or after one turn of the event loop when the loop has run `everyMs` without. */
  async breathe(): Promise<void> {
    if (performance.now() - this.#last < this.#everyMs) return;
    await sleep(0);
    this.#last = performance.now();
  }
}
