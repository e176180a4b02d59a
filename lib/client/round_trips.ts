/**
 * What the answers of one server tell of the round trip to it: the waits
 * of requests without a body (a body's own sending is no part of it),
 * told apart by whether an answer had come when they went.
 */

/** The round trips measured to one server. */
export class RoundTrips {
  /** The shortest wait of a request sent before any answer came (it opened its connection). */
  #openingMs: number | undefined;
  /** The shortest wait of a request sent after an answer had come. */
  #settledMs: number | undefined;
  #answered = false;
  readonly #firstAnswer = Promise.withResolvers<void>();

  /** Whether a request sent now would be one of the first (no answer came yet). */
  get opening(): boolean {
    return !this.#answered;
  }

  /** An answer came: `waitedMs` after its request went, for a request without a body sent when {@linkcode opening} said `opening`; undefined for one with a body. */
  answered(opening: boolean, waitedMs?: number): void {
    if (waitedMs !== undefined) {
      if (opening) this.#openingMs = least(this.#openingMs, waitedMs);
      else this.#settledMs = least(this.#settledMs, waitedMs);
    }
    this.#answered = true;
    this.#firstAnswer.resolve();
  }

  /** The shortest wait for the answer of a request without a body (ms), a first one's handshake included; undefined before one. */
  get shortestMs(): number | undefined {
    return least(this.#openingMs, this.#settledMs);
  }

  /**
   * The round trip itself (ms), undefined before an answer to a request
   * without a body. A first answer's wait counts half, for it waited for
   * its connection's handshake too, until a request sent later tells the
   * round trip whole; the first answers' waits then only bound it (a later
   * wait may have been held by the client's own work).
   */
  get pathMs(): number | undefined {
    const opening = this.#openingMs;
    if (this.#settledMs === undefined) {
      return opening === undefined ? undefined : opening / 2;
    }
    return least(opening, this.#settledMs);
  }

  /** Settles when the first answer comes (never if none does). */
  get first(): Promise<void> {
    return this.#firstAnswer.promise;
  }
}

/** The smaller of two waits, either unknown. */
function least(
  a: number | undefined,
  b: number | undefined,
): number | undefined {
  return a === undefined ? b : b === undefined ? a : Math.min(a, b);
}
