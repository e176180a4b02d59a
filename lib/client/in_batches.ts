/** Many small requests of one kind (directories made or finished on the server) sent a few at a time: one round trip for a batch, not one each. */

/** Requests of one kind in flight at most when many are sent at once (directories made or finished). */
export const DIR_BATCH = 32;

/** Runs `work` on every item, at most {@linkcode DIR_BATCH} at a time. */
export async function inBatches<T>(
  items: readonly T[],
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]);
  };
  await Promise.all(
    Array.from({ length: Math.min(DIR_BATCH, items.length) }, worker),
  );
}
