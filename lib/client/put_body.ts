/** The body of one PUT of a push: a range of a local file read whole, and sent whole or in pieces. */
import type { ByteRange } from "../shared/byte_range.ts";
import { openChecked } from "../shared/checked_open.ts";
import { reason } from "../shared/errors.ts";
import { LocalChanged, type SendJob } from "./push_context.ts";

/** Bytes per piece of a PUT body that is streamed (a slow link's sign of life). */
const PIECE_BYTES = 64 * 1024;

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
    await file.seek(span.start, Deno.SeekMode.Start);
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

/** `bytes` as a stream of pieces of at most {@linkcode PIECE_BYTES}; `onBytes` is told each piece handed on. */
export function piecesOf(
  bytes: Uint8Array,
  onBytes: (n: number) => void,
): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (at >= bytes.length) {
        controller.close();
        return;
      }
      const piece = bytes.subarray(at, at + PIECE_BYTES);
      at += piece.length;
      onBytes(piece.length);
      controller.enqueue(piece);
    },
  });
}
