/** `-S` on a push: where a local file's holes are, so that only its data is sent and the commit names the rest. */
import { openChecked } from "../shared/checked_open.ts";
import { reason } from "../shared/errors.ts";
import { RangeSet } from "../shared/range_set.ts";
import { HOLE_BLOCK_BYTES } from "../shared/wire.ts";
import { dataExtents } from "../shared/zero_runs.ts";
import { LocalChanged, type SendJob } from "./push_context.ts";

/**
 * The zero runs of `job`'s file, found by reading it through a handle
 * proven to be `job.id` (a failure is a {@linkcode LocalChanged}). At least
 * its last block stays data: the upload then starts with a PUT, as every
 * upload of a non-empty file does.
 */
export async function holesOf(
  job: SendJob,
  signal: AbortSignal,
): Promise<RangeSet> {
  let data: Array<[number, number]>;
  try {
    using file = openChecked(job.local, { expected: job.id });
    data = await dataExtents(file, job.size);
  } catch (error) {
    if (signal.aborted) throw error;
    throw new LocalChanged(
      `Cannot read ${JSON.stringify(job.local)}: ${reason(error)}`,
    );
  }
  if (data.length === 0 && job.size > 0) {
    const tail = job.size % HOLE_BLOCK_BYTES || HOLE_BLOCK_BYTES;
    data = [[Math.max(0, job.size - tail), job.size]];
  }
  const holes = new RangeSet([{ start: 0, end: job.size }]);
  for (const [start, end] of data) holes.remove({ start, end });
  return holes;
}
