/** SHA-256 of local byte spans, read through a handle proven to be the expected file, for verifying, resuming and following on either side. */
import { createHash } from "node:crypto";
import type { ByteRange } from "./byte_range.ts";
import { type FileId, openChecked } from "./checked_open.ts";

/** Bytes read at a time while hashing. */
const READ_BYTES = 1024 * 1024;

/**
 * Lower-case hex SHA-256 of each span of the regular file `expected` at
 * `path` (a span past the end hashes what there is). The name is opened with
 * {@linkcode openChecked}: a link or another inode there throws
 * `LocalPathError` and nothing is read. `signal` stops between reads.
 */
export async function hashSpans(
  path: string,
  spans: readonly ByteRange[],
  options: {
    expected: FileId;
    signal?: AbortSignal;
    /** Told the bytes of each read (a progress display). */
    onRead?: (bytes: number) => void;
  },
): Promise<string[]> {
  using file = openChecked(path, { expected: options.expected });
  const buffer = new Uint8Array(
    Math.min(READ_BYTES, Math.max(1, ...spans.map((s) => s.end - s.start))),
  );
  const out: string[] = [];
  for (const { start, end } of spans) {
    const digest = createHash("sha256");
    file.seekSync(start, Deno.SeekMode.Start);
    let left = end - start;
    while (left > 0) {
      options.signal?.throwIfAborted();
      const n = await file.read(
        left < buffer.length ? buffer.subarray(0, left) : buffer,
      );
      if (n === null) break;
      digest.update(buffer.subarray(0, n));
      left -= n;
      options.onRead?.(n);
    }
    out.push(digest.digest("hex"));
  }
  return out;
}

/** Lower-case hex SHA-256 of bytes in memory. */
export function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/**
 * Spans of at most `spanBytes` covering `range`, in order (one empty span for
 * an empty range, so an empty file still gets one hash).
 */
export function spansOf(range: ByteRange, spanBytes: number): ByteRange[] {
  const spans: ByteRange[] = [];
  for (let a = range.start; a < range.end; a += spanBytes) {
    spans.push({ start: a, end: Math.min(range.end, a + spanBytes) });
  }
  return spans.length > 0 ? spans : [{ start: range.start, end: range.end }];
}
