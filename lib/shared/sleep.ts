/** The one abortable wait of hsync (retries, lock waits, the bandwidth limit). */

/**
 * Waits `ms` (none when it is not positive), or rejects with the signal's
 * reason as soon as it aborts. Deno's timers are node's: a negative or NaN
 * delay would print a warning on stderr.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  const delay = ms > 0 ? ms : 0;
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, delay);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
