/** Many small requests of one kind (directories made or finished on the server) sent a few at a time: one round trip for a batch, not one each; and a list cut into runs. */
import { Limiter } from "../shared/limiter.ts";

/** Requests of one kind in flight at most when many are sent at once (directories made or finished). */
export const DIR_BATCH = 32;

/** Runs `work` on every item, at most {@linkcode DIR_BATCH} at a time. */
export async function inBatches<T>(
  items: readonly T[],
  work: (item: T) => Promise<void>,
): Promise<void> {
  const slots = new Limiter(DIR_BATCH);
  await Promise.all(items.map((item) => slots.run(() => work(item))));
}

/** `items` in consecutive runs of at most `size`. */
export function chunked<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) {
    out.push(items.slice(i, i + size));
  }
  return out;
}
