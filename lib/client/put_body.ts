/** The body of one PUT of a push: a range of a local file read whole. */
import type { ByteRange } from "../shared/byte_range.ts";
import { openChecked } from "../shared/checked_open.ts";
import { reason } from "../shared/errors.ts";
import { LocalChanged, type SendJob } from "./push_context.ts";

/**
 * The bytes `span` of `job`'s file read into `bytes` (as long as the span),
 * through a handle proven to be `job.id`; a file shorter than the span
 * throws {@linkcode LocalChanged}.
 */
export async function readSpan(
  job: SendJob,
  span: ByteRange,
  bytes: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array<ArrayBuffer>> {
  try {
    using file = openChecked(job.local, { expected: job.id });
    file.seekSync(span.start, Deno.SeekMode.Start);
    let done = 0;
    while (done < bytes.length) {
      const n = await file.read(bytes.subarray(done));
      if (n === null) {
        throw new LocalChanged(`"${job.label}" shrank while it was sent`);
      }
      done += n;
    }
  } catch (error) {
    if (error instanceof LocalChanged) throw error;
    throw new LocalChanged(
      `Cannot read ${JSON.stringify(job.local)}: ${reason(error)}`,
    );
  }
  return bytes;
}
