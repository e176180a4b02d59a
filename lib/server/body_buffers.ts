/**
 * Buffers for large request bodies (upload ranges and bundles, up to 8 MiB),
 * kept for the next body once their endpoint has written them out.
 *
 * A fresh buffer costs the first touch of each of its pages: receiving 1 GiB
 * in 8 MiB bodies took hsyncd 0.73-0.77 s of CPU into a new buffer each,
 * 0.46-0.65 s into kept ones (and 0.83-1.04 s as Deno's own 64 KiB chunks;
 * 3 interleaved rounds of curl uploads to a bare `Deno.serve`).
 *
 * A buffer is handed out once and comes back once: only a buffer this
 * module handed out and has not had back is taken back. An endpoint gives a
 * body back only when nothing reads it any more (its bytes written,
 * synchronously, or refused). Even a body given back too early could not
 * show another's bytes: the next body is read into its memory with a BYOB
 * read, which detaches the old `ArrayBuffer`, so the early one reads empty.
 */

/** Bodies shorter than this get a buffer of their own (left to the collector). */
export const POOLED_MIN_BYTES = 1024 * 1024;
/** Most bytes of buffers kept between bodies. */
const KEPT_MAX_BYTES = 32 * 1024 * 1024;
/** Kept buffers are let go after this long without a body (ms). */
const KEPT_IDLE_MS = 2_000;

/** Free buffers by size (a power of two, at least {@linkcode POOLED_MIN_BYTES}). */
const free = new Map<number, ArrayBuffer[]>();
let freeBytes = 0;
/** Buffers handed out and not given back: the only ones taken back. */
const out = new WeakSet<ArrayBuffer>();
let idleTimer: ReturnType<typeof setTimeout> | undefined;

/** The size of the buffer a body of `length` bytes gets. */
function sizeFor(length: number): number {
  let size = POOLED_MIN_BYTES;
  while (size < length) size *= 2;
  return size;
}

/**
 * A buffer for a body of `length` bytes (at least that long): a kept one
 * when there is one, else a new one. Give it back with
 * {@linkcode giveBodyBuffer} once the body is written, or drop it.
 */
export function takeBodyBuffer(length: number): ArrayBuffer {
  if (length < POOLED_MIN_BYTES) return new ArrayBuffer(length);
  const size = sizeFor(length);
  const kept = free.get(size)?.pop();
  if (kept !== undefined) freeBytes -= size;
  return kept ?? new ArrayBuffer(size);
}

/**
 * Marks `buffer` as handed out in a body (after reading into it: a BYOB
 * read hands back its memory as a new `ArrayBuffer`, this is the one that
 * may come back). Buffers smaller than {@linkcode POOLED_MIN_BYTES} are
 * never kept.
 */
export function lendBodyBuffer(buffer: ArrayBuffer): void {
  if (buffer.byteLength >= POOLED_MIN_BYTES) out.add(buffer);
}

/**
 * Takes back the buffers under `pieces` (a body read by request_body.ts),
 * for the next bodies. Its caller must not read the pieces afterwards. A
 * buffer not handed out, or already given back, is left alone.
 */
export function giveBodyBuffer(pieces: readonly Uint8Array[]): void {
  for (const piece of pieces) {
    const buffer = piece.buffer;
    if (!(buffer instanceof ArrayBuffer) || !out.has(buffer)) continue;
    out.delete(buffer);
    const size = buffer.byteLength;
    if (freeBytes + size > KEPT_MAX_BYTES || size !== sizeFor(size)) continue;
    let list = free.get(size);
    if (list === undefined) free.set(size, list = []);
    list.push(buffer);
    freeBytes += size;
  }
  if (freeBytes === 0) return;
  clearTimeout(idleTimer);
  const timer = setTimeout(() => {
    free.clear();
    freeBytes = 0;
  }, KEPT_IDLE_MS);
  Deno.unrefTimer(timer);
  idleTimer = timer;
}

/** Bytes of buffers kept now (tests). */
export function keptBodyBytes(): number {
  return freeBytes;
}
