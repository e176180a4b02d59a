/** What the client's transfers share about failing and trying again: the errors, the retry rule, the pause. */
import { ConnectError, HttpError } from "../shared/errors.ts";
export { ProtocolError } from "../shared/errors.ts";
import { TimeoutError } from "./remote.ts";

import { sleep } from "../shared/sleep.ts";

export { sleep };

/** A body ended before every byte it announced arrived (retried from the last byte on disk). */
export class ShortBody extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ShortBody";
  }
}

/**
 * Network trouble, timeouts, short bodies and busy servers (5xx, 408, 429,
 * and any of `alsoStatus`) are worth another try; refusals and local errors
 * are not.
 */
export function isRetryable(
  error: unknown,
  alsoStatus: readonly number[] = [],
): boolean {
  if (error instanceof HttpError) {
    return error.status >= 500 || error.status === 408 ||
      error.status === 429 || alsoStatus.includes(error.status);
  }
  return error instanceof TimeoutError || error instanceof ConnectError ||
    error instanceof ShortBody || error instanceof TypeError;
}

/** Longest pause between two attempts (milliseconds). */
const MAX_PAUSE_MS = 30_000;

/** The one rule for pausing between attempts: exponential, with jitter, up to a number of retries. */
export class Backoff {
  /** First pause in milliseconds (doubles per attempt). */
  readonly baseMs: number;
  /** Retries after the first attempt (`Max_timeout_retry`). */
  readonly maxRetries: number;

  /** A rule starting at `baseMs` and giving up after `maxRetries` retries. */
  constructor(baseMs: number, maxRetries: number) {
    this.baseMs = baseMs;
    this.maxRetries = maxRetries;
  }

  /** The pause after failed attempt number `attempt` (from 1): half to all of `baseMs * 2^(attempt-1)`, at most 30 s. */
  delayMs(attempt: number): number {
    const delay = Math.min(MAX_PAUSE_MS, this.baseMs * 2 ** (attempt - 1));
    return Math.round(delay / 2 + Math.random() * delay / 2);
  }

  /** Waits the pause after attempt `attempt`, or rejects as soon as `signal` aborts. */
  wait(attempt: number, signal: AbortSignal): Promise<void> {
    return sleep(this.delayMs(attempt), signal);
  }

  /** Runs `task`, again after each retryable error with a pause, up to {@linkcode Backoff.maxRetries} times. */
  async retry<T>(task: () => Promise<T>, signal: AbortSignal): Promise<T> {
    for (let attempt = 1;; attempt++) {
      try {
        return await task();
      } catch (error) {
        if (signal.aborted) throw error;
        if (!isRetryable(error) || attempt > this.maxRetries) throw error;
        await this.wait(attempt, signal);
      }
    }
  }
}
