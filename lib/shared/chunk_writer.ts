/**
 * Writing one chunk (a byte range of a file) from a stream into a part file
 * at its offset, knowing at every moment how much of it reached the file,
 * whichever side sends the stream (a response body, or a request body).
 */
import type { ByteRange } from "./byte_range.ts";
import { LocalPathError, ProtocolError, reason } from "./errors.ts";
import { RangeSet } from "./range_set.ts";

/** How often a running chunk reports how far it got (milliseconds). */
export const PROGRESS_MS = 200;

/**
 * The ranges of a part file that reached the kernel: the finished ones, and
 * the chunks being written now, read from their handles' positions when
 * asked ({@linkcode WrittenRanges.probe}).
 */
export class WrittenRanges extends RangeSet {
  readonly #writers = new Set<{ start: number; file: Deno.FsFile }>();

  /** Counts the chunk written from `start` through `file` until the returned function is called. */
  track(start: number, file: Deno.FsFile): () => void {
    const writer = { start, file };
    this.#writers.add(writer);
    return () => this.#writers.delete(writer);
  }

  /**
   * Adds how far each running chunk got: its handle's position, which the
   * kernel moves once a write has put its bytes in the file (read while a
   * write is under way, it is that write's start or its end). A synchronous
   * seek: an asynchronous one is a trip to Deno's blocking threads, and
   * took a pull of 20 x 10 MiB 30 ms of its main thread.
   */
  probe(): void {
    for (const w of [...this.#writers]) {
      try {
        const pos = w.file.seekSync(0, Deno.SeekMode.Current);
        this.add({ start: w.start, end: pos });
      } catch {
        // That chunk just finished and closed its file: it recorded its own end.
      }
    }
  }
}

/** Options of {@linkcode writeChunk}. */
export interface ChunkOptions {
  /**
   * The stream comes straight from `fetch` or a request and cannot be longer
   * than the range (its Content-Length was checked against it): it is piped
   * to the file in one go. Otherwise it is written chunk by chunk, and one
   * byte more than the range fails the chunk with a `ProtocolError`.
   */
  bounded?: boolean;
  /** Flush the file's data (fdatasync) once the stream ends or breaks. */
  sync?: boolean;
  /** Told how far the file holds the chunk (a position), every {@linkcode PROGRESS_MS} while it arrives and once at the end. */
  onProgress?: (pos: number) => void;
  /** How often `onProgress` is told while the chunk arrives (default {@linkcode PROGRESS_MS}). */
  progressMs?: number;
  /** Where the chunk is counted while it runs (and its bytes once it ends). */
  written?: WrittenRanges;
}

/** What {@linkcode writeChunk} did. */
export interface ChunkResult {
  /** The first byte not written: `range.end` when the chunk is complete, more when the stream was longer. */
  pos: number;
  /** Why the stream stopped early (it broke, was aborted, was longer than the range, or the disk refused); undefined when it ended. */
  error?: unknown;
}

/**
 * Streams `body` into `file` (named `path`) at `range.start`; the file
 * position tells exactly what reached the disk, even after an error, so a
 * retry resumes from the last byte written. The part grows only with bytes
 * that arrive. Throws `LocalPathError` when the file cannot be positioned or
 * flushed; a broken stream is returned, not thrown.
 */
export async function writeChunk(
  file: Deno.FsFile,
  path: string,
  body: ReadableStream<Uint8Array>,
  range: ByteRange,
  options: ChunkOptions = {},
): Promise<ChunkResult> {
  const { start, end } = range;
  try {
    file.seekSync(start, Deno.SeekMode.Start);
  } catch (error) {
    throw new LocalPathError(path, reason(error), error);
  }
  const untrack = options.written?.track(start, file);
  let reported = start;
  const report = (pos: number) => {
    if (pos <= reported) return;
    options.written?.add({ start, end: pos });
    reported = pos;
    options.onProgress?.(pos);
  };
  const timer = options.onProgress === undefined ? undefined : setInterval(
    () => {
      try {
        report(file.seekSync(0, Deno.SeekMode.Current));
      } catch {
        // The chunk is ending: its end is reported below.
      }
    },
    options.progressMs ?? PROGRESS_MS,
  );
  let error: unknown;
  try {
    if (options.bounded) {
      // pipeTo a positioned file handle is the fast path for a body from
      // fetch (Deno copies it in Rust: about 1.4x a counting stream here,
      // flat memory). A body made in JavaScript must not take it: Deno
      // 2.9.6's FsFile.writable holds up to 64 KiB of such chunks until
      // the stream is closed, which preventClose never does.
      await body.pipeTo(file.writable, {
        preventClose: true,
        preventAbort: true,
      });
    } else await copyAtMost(body, file, end - start);
  } catch (e) {
    error = e;
  } finally {
    clearInterval(timer);
  }
  let pos: number;
  try {
    pos = file.seekSync(0, Deno.SeekMode.Current);
    if (options.sync) await file.syncData();
  } catch (e) {
    throw new LocalPathError(path, reason(e), e);
  } finally {
    untrack?.();
  }
  // Past the end is the caller's to refuse: nothing of it is counted.
  if (pos <= end) report(pos);
  return { pos, error };
}

/**
 * Writes `body` to `file` chunk by chunk; a chunk that would take it past
 * `limit` bytes is not written and fails it with a `ProtocolError` (so
 * nothing past a range is ever written). The stream is cancelled on failure.
 */
async function copyAtMost(
  body: ReadableStream<Uint8Array>,
  file: Deno.FsFile,
  limit: number,
): Promise<void> {
  const reader = body.getReader();
  let seen = 0;
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) return;
      seen += value.byteLength;
      if (seen > limit) {
        throw new ProtocolError(`Body is longer than the ${limit} bytes asked`);
      }
      let off = 0;
      while (off < value.length) off += await file.write(value.subarray(off));
    }
  } catch (error) {
    await reader.cancel(error).catch(() => {});
    throw error;
  } finally {
    reader.releaseLock();
  }
}
