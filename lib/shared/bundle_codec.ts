/** Encodes and decodes the length-prefixed frames of `POST /v1/bundle` (see `BundleHeader` in wire.ts). */
import type { BundleHeader, UploadBundleHeader } from "./wire.ts";

/** Largest header accepted when decoding: a longer one means a corrupt or hostile stream. */
export const MAX_HEADER_BYTES = 64 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One frame: a header and the bytes that follow it (a bundle response's by default; an upload bundle's header is `UploadBundleHeader`). */
export interface BundleFrame<H = BundleHeader> {
  header: H;
  data: Uint8Array;
}

/** Encodes one frame; `data` must hold exactly the header's `size` bytes (none for error and end frames). */
export function encodeFrame<H extends object = BundleHeader>(
  header: H,
  data: Uint8Array = new Uint8Array(0),
): Uint8Array {
  return encodeFrames([{ header, data }]);
}

/**
 * Encodes frames one after another into a single buffer (the same bytes as
 * concatenating `encodeFrame` of each): a 4-byte big-endian header length,
 * the header as JSON, then the data.
 */
export function encodeFrames<H extends object = BundleHeader>(
  frames: readonly BundleFrame<H>[],
): Uint8Array {
  const headers = frames.map((f) => encoder.encode(JSON.stringify(f.header)));
  let size = 0;
  for (let i = 0; i < frames.length; i++) {
    size += 4 + headers[i].length + frames[i].data.length;
  }
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let at = 0;
  for (let i = 0; i < frames.length; i++) {
    view.setUint32(at, headers[i].length);
    out.set(headers[i], at + 4);
    at += 4 + headers[i].length;
    out.set(frames[i].data, at);
    at += frames[i].data.length;
  }
  return out;
}

/** Largest file data a decoder accepts in one frame, unless told otherwise. */
export const DEFAULT_MAX_FRAME_DATA = 64 * 1024 * 1024;

/**
 * Decodes a bundle stream frame by frame. Throws `TypeError` on a malformed
 * frame and on a stream that ends before the `{"end": true}` frame, so a
 * truncated response is never mistaken for a complete one.
 */
export async function* decodeFrames<
  H extends { end: true } | { path: string; size?: number } = BundleHeader,
>(
  stream: ReadableStream<Uint8Array>,
  maxData = DEFAULT_MAX_FRAME_DATA,
  parse: (text: string) => H = parseHeader as unknown as (text: string) => H,
): AsyncGenerator<BundleFrame<H>> {
  const reader = stream.getReader();
  let buffered: Uint8Array[] = [];
  let available = 0;
  let done = false;

  async function fill(n: number): Promise<boolean> {
    while (available < n && !done) {
      const r = await reader.read();
      if (r.done) {
        done = true;
        break;
      }
      buffered.push(r.value);
      available += r.value.length;
    }
    return available >= n;
  }

  function take(n: number): Uint8Array {
    const first = buffered[0];
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) buffered.shift();
      else buffered[0] = first.subarray(n);
      available -= n;
      return out;
    }
    const out = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const chunk = buffered[0];
      const k = Math.min(chunk.length, n - off);
      out.set(chunk.subarray(0, k), off);
      off += k;
      if (k === chunk.length) buffered.shift();
      else buffered[0] = chunk.subarray(k);
    }
    available -= n;
    return out;
  }

  try {
    while (true) {
      if (!await fill(4)) {
        throw new TypeError("Bundle stream ended before its end frame");
      }
      const lenBytes = take(4);
      const headerLen = new DataView(
        lenBytes.buffer,
        lenBytes.byteOffset,
        4,
      ).getUint32(0);
      if (headerLen === 0 || headerLen > MAX_HEADER_BYTES) {
        throw new TypeError(
          `Bundle frame header length ${headerLen} is invalid`,
        );
      }
      if (!await fill(headerLen)) {
        throw new TypeError("Bundle stream ended inside a frame header");
      }
      const header = parse(decoder.decode(take(headerLen)));
      if ("end" in header) {
        if (available > 0 || await fill(1)) {
          throw new TypeError("Bundle stream has data after its end frame");
        }
        return;
      }
      const size = "size" in header ? header.size ?? 0 : 0;
      if (size > maxData) {
        throw new TypeError(
          `Bundle frame for "${header.path}" is ${size} bytes, above the limit of ${maxData}`,
        );
      }
      if (!await fill(size)) {
        throw new TypeError(
          `Bundle stream ended inside the data of "${header.path}"`,
        );
      }
      yield { header, data: size === 0 ? new Uint8Array(0) : take(size) };
    }
  } finally {
    buffered = [];
    await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

/** The JSON object of a frame header; `TypeError` when it is not one. */
export function headerObject(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new TypeError("Bundle frame header is not JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError("Bundle frame header is not an object");
  }
  return value as Record<string, unknown>;
}

/** A bundle response's frame header. */
function parseHeader(text: string): BundleHeader {
  const h = headerObject(text);
  if (h.end === true) return { end: true };
  if (typeof h.path !== "string") {
    throw new TypeError("Bundle frame header has no path");
  }
  if (typeof h.error === "string") {
    return {
      path: h.path,
      error: h.error,
      message: typeof h.message === "string" ? h.message : h.error,
    };
  }
  const size = h.size, mtime = h.mtime, mode = h.mode;
  if (
    !Number.isSafeInteger(size) || (size as number) < 0 ||
    typeof mtime !== "number" || typeof mode !== "number" ||
    typeof h.etag !== "string"
  ) {
    throw new TypeError(`Bundle frame header for "${h.path}" is malformed`);
  }
  return {
    path: h.path,
    size: size as number,
    mtime,
    mode,
    etag: h.etag,
  };
}

/** An upload bundle's frame header (`POST /v1/upload/bundle`, client to server). */
export function parseUploadHeader(text: string): UploadBundleHeader {
  const h = headerObject(text);
  if (h.end === true) return { end: true };
  const { path, size, mtime, mode } = h;
  if (
    typeof path !== "string" || !Number.isSafeInteger(size) ||
    (size as number) < 0 || !Number.isSafeInteger(mtime) ||
    !Number.isSafeInteger(mode)
  ) {
    throw new TypeError(
      `Upload frame header${
        typeof path === "string" ? ` for ${JSON.stringify(path)}` : ""
      } is malformed`,
    );
  }
  return {
    path,
    size: size as number,
    mtime: mtime as number,
    mode: mode as number,
    preserve: h.preserve === true,
  };
}
