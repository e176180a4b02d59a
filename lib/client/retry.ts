/** What the client's transfers share about failing and trying again: the errors, the retry rule, the pause. */
import { ConnectError, HttpError } from "../shared/errors.ts";
export { ProtocolError } from "../shared/errors.ts";
import { TimeoutError } from "./remote.ts";

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

/** Waits `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** The message of an error, or the thing thrown as text. */
export function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
