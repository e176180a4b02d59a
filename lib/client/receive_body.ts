/**
 * A ranged response body written into a local file: checked to fit its
 * range first, streamed in, and its failure told as what it means (the
 * abort, a retryable network or protocol error, or a local failure).
 */
import type { ByteRange } from "../shared/byte_range.ts";
import { writeChunk, type WrittenRanges } from "../shared/chunk_writer.ts";
import { LocalPathError, reason } from "../shared/errors.ts";
import type { Exchange } from "./remote.ts";
import { ProtocolError } from "./retry.ts";

/** A response body checked to fit a range, ready for {@linkcode receiveBody}. */
export interface UsableBody {
  /** The response's body stream. */
  body: ReadableStream<Uint8Array>;
  /** Its Content-Length matched the range: the HTTP layer passes no more bytes than that. */
  bounded: boolean;
}

/**
 * The body of a file response that is to fill `range`: a response without
 * a body, or announcing another length than the range, is a
 * `ProtocolError` naming `label`. Called before the local file is opened.
 */
export function usableBody(
  ex: Exchange,
  range: ByteRange,
  label: string,
): UsableBody {
  const res = ex.response;
  if (res.body === null) {
    throw new ProtocolError(`Range response for "${label}" has no body`);
  }
  const length = res.headers.get("content-length");
  const expected = range.end - range.start;
  if (length !== null && Number(length) !== expected) {
    throw new ProtocolError(
      `Range response for "${label}" announces ${length} bytes for ${expected}`,
    );
  }
  // A body through --bwlimit is made in JavaScript: it must not take the
  // native fast path of writeChunk (see there).
  return { body: res.body, bounded: length !== null && !ex.throttled };
}

/** Options of {@linkcode receiveBody}. */
export interface ReceiveOptions {
  /** The file's name in messages (its path relative to the root). */
  label: string;
  /** The local file written, for errors. */
  path: string;
  /** Flush the file's data before returning. */
  sync?: boolean;
  /** Where the bytes are counted while they arrive. */
  written?: WrittenRanges;
  /** Told how far the file holds the body (a local position) as it grows. */
  onProgress?: (pos: number) => void;
  /** How often `onProgress` is told (ms; default the chunk writer's). */
  progressMs?: number;
}

/**
 * Streams a checked body into local bytes `range` of `file` and returns the
 * position reached: `range.end` when the body was complete, less when it
 * ended early. A body longer than the range is a `ProtocolError`; a broken
 * one throws its network error (retryable) or the abort reason, a local
 * failure `LocalPathError`. The request's idle timer is kicked as bytes
 * arrive. The caller opened `file` and closes it.
 */
export async function receiveBody(
  ex: Exchange,
  file: Deno.FsFile,
  range: ByteRange,
  usable: UsableBody,
  options: ReceiveOptions,
): Promise<number> {
  const { pos, error } = await writeChunk(
    file,
    options.path,
    usable.body,
    range,
    {
      // With Content-Length the HTTP layer never passes more bytes than
      // that; without it, the writer refuses to write past the range.
      bounded: usable.bounded,
      sync: options.sync,
      written: options.written,
      progressMs: options.progressMs,
      onProgress: (pos) => {
        ex.kick();
        options.onProgress?.(pos);
      },
    },
  );
  if (pos > range.end) {
    throw new ProtocolError(
      `Server sent too many bytes for "${options.label}"`,
    );
  }
  if (error !== undefined) throw bodyFailure(ex, options.path, error);
  return pos;
}

/**
 * What a body that failed while it was written throws: the abort reason
 * when the request was stopped, a network or protocol error as it is
 * (retryable or not, the caller decides), any other a `LocalPathError`
 * naming the local file.
 */
export function bodyFailure(
  ex: Exchange,
  path: string,
  error: unknown,
): unknown {
  if (ex.signal.aborted) return ex.signal.reason;
  if (error instanceof TypeError || error instanceof ProtocolError) {
    return error;
  }
  return new LocalPathError(path, reason(error), error);
}
