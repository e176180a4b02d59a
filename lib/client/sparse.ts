/**
 * `-S` on the pulling side: a file with holes is fetched by its extents
 * (the holes are never asked for and stay holes in a part file sized with
 * `truncate`), and long zero runs inside any body are skipped instead of
 * written, so they stay holes too.
 */
import type { ByteRange } from "../shared/byte_range.ts";
import { ProtocolError } from "../shared/errors.ts";
import { RangeSet } from "../shared/range_set.ts";
import type { Extents } from "../shared/wire.ts";
import { MIN_HOLE_BYTES } from "../shared/wire.ts";
import { zeroRuns } from "../shared/zero_runs.ts";
import {
  bodyFailure,
  type ReceiveOptions,
  type UsableBody,
} from "./receive_body.ts";
import type { Exchange } from "./remote.ts";

/** Bytes of a body looked at for zero runs at a time (a multiple of the hole block). */
const SCAN_BYTES = 1024 * 1024;

/** The holes of a file of `size` bytes whose data is `extents.data`: everything else. */
export function holesOf(extents: Extents): RangeSet {
  const holes = new RangeSet();
  let at = 0;
  for (const [start, end] of extents.data) {
    if (start > at) holes.add({ start: at, end: start });
    at = end;
  }
  if (at < extents.size) holes.add({ start: at, end: extents.size });
  return holes;
}

/**
 * Streams a checked body into bytes `range` of `file`, as `receiveBody`
 * does, except that runs of zero blocks of at least `MIN_HOLE_BYTES` are
 * not written: only for a part file sized with `truncate` whose bytes in
 * `range` were never written (they read as zeros already). Returns the
 * position reached; `written` and `onProgress` follow it.
 */
export async function receiveSkippingZeros(
  ex: Exchange,
  file: Deno.FsFile,
  range: ByteRange,
  usable: UsableBody,
  options: ReceiveOptions,
): Promise<number> {
  const reader = usable.body.getReader();
  const buffer = new Uint8Array(SCAN_BYTES);
  let held = 0;
  let pos = range.start;
  const writeOut = async (all: boolean) => {
    // Whole scans only until the end, so runs are found across reads.
    const count = all ? held : held - (held % SCAN_BYTES);
    if (count === 0) return;
    const bytes = buffer.subarray(0, count);
    let from = 0;
    const put = async (to: number) => {
      if (to <= from) return;
      await file.seek(pos + from, Deno.SeekMode.Start);
      let off = from;
      while (off < to) off += await file.write(bytes.subarray(off, to));
    };
    for (const [start, end] of zeroRuns(bytes, pos, MIN_HOLE_BYTES)) {
      await put(start - pos);
      from = end - pos;
    }
    await put(count);
    buffer.copyWithin(0, count, held);
    held -= count;
    options.written?.add({ start: pos, end: pos + count });
    pos += count;
    options.onProgress?.(pos);
  };
  let error: unknown;
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      ex.kick();
      if (pos + held + value.length > range.end) {
        throw new ProtocolError(
          `Server sent too many bytes for "${options.label}"`,
        );
      }
      let off = 0;
      while (off < value.length) {
        const n = Math.min(value.length - off, SCAN_BYTES - held);
        buffer.set(value.subarray(off, off + n), held);
        held += n;
        off += n;
        if (held === SCAN_BYTES) await writeOut(false);
      }
    }
  } catch (e) {
    error = e;
    await reader.cancel(e).catch(() => {});
  } finally {
    reader.releaseLock();
  }
  try {
    // What arrived before a break is good data: it is kept.
    await writeOut(true);
  } catch (e) {
    error ??= e;
  }
  if (error !== undefined) throw bodyFailure(ex, options.path, error);
  return pos;
}
