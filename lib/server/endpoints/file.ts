/** `/v1/file`: a file's bytes, whole or one range, with its ETag (`If-Range`, 206, 416), read from a handle the jail proved. */
import { posix } from "node:path";
import {
  contentRange,
  parseRangeHeader,
  type RangeRequest,
} from "../../shared/byte_range.ts";
import { HttpError } from "../../shared/errors.ts";
import { etagFor, mtimeMs } from "../../shared/file_identity.ts";
import { API } from "../../shared/wire.ts";
import type { Endpoint, ServerContext } from "../context.ts";
import { errorResponse } from "../error_status.ts";
import { baseHeaders, optionalFlag, overHttp1, requirePath } from "../http.ts";
import type { OpenedFile } from "../jail/path_guard.ts";
import { requireFile } from "./_checked.ts";

/** `GET /v1/file?path=[&iffile=1]`: the file's bytes; `Range` for one span; with `iffile=1` a directory answers 204. */
export const fileEndpoint: Endpoint = {
  path: API.file,
  methods: ["GET", "HEAD"],
  run: file,
};

/**
 * Bytes a file body reads at a time. Each chunk costs a round through the
 * response pipeline (measured here: 1 GiB at 128 KiB took the server 1.3 s of
 * CPU, at 512 KiB 0.8 s), while each streaming body holds a few chunks (the
 * connection's write buffer alone takes up to about 400 KiB): few bodies
 * stream in large chunks, many in small ones. Serving 64 clients at once
 * (bench/memory.ts, 4 files of 8 MiB each and 506 connections), hsyncd
 * peaked at 163 MiB of PSS with 128 KiB, 147 MiB with 64 KiB (in 33 s
 * either way) and 138 MiB with 32 KiB (in 51 s).
 */
const FILE_CHUNK_LARGE = 512 * 1024;
const FILE_CHUNK = 64 * 1024;
/** File bodies streaming at once up to which each reads `FILE_CHUNK_LARGE`: one hsync pull (16 ranges or files). */
const LARGE_CHUNK_BODIES = 16;

async function file(ctx: ServerContext, request: Request, url: URL) {
  const checked = await ctx.guard.check(requirePath(url));
  // Asked with the stat, before it is known to be a file (a pull of one
  // file asks for its first range so): a directory is no error.
  if (optionalFlag(url, "iffile") && checked.type === "dir") {
    return new Response(null, {
      status: 204,
      headers: baseHeaders("application/octet-stream"),
    });
  }
  requireFile(checked);
  const head = request.method === "HEAD";
  // HEAD never opens the file: the checked lstat is enough for the headers.
  const opened = head ? undefined : await ctx.guard.openFile(checked);
  const info = opened?.info ?? checked.info;
  let handedOver = false;
  try {
    const size = info.size;
    const etag = etagFor(info);
    const headers = baseHeaders("application/octet-stream");
    headers.set("accept-ranges", "bytes");
    headers.set("etag", etag);
    headers.set("last-modified", new Date(mtimeMs(info)).toUTCString());

    const asked = request.headers.get("range");
    let range: RangeRequest = parseRangeHeader(asked, size);
    if (
      range.kind !== "none" &&
      !ifRangeHolds(request.headers.get("if-range"), etag, info)
    ) {
      range = { kind: "none" };
    }
    if (range.kind === "unsatisfiable") {
      headers.set("content-range", contentRange(undefined, size));
      const error = new HttpError(
        416,
        "bad_range",
        `Cannot serve ${JSON.stringify(asked)} of ${
          JSON.stringify(checked.path)
        }: the file has ${size} bytes`,
      );
      return errorResponse(error, headers);
    }
    headers.set(
      "content-disposition",
      contentDisposition(posix.basename(checked.path)),
    );
    const start = range.kind === "range" ? range.range.start : 0;
    const length = range.kind === "range"
      ? range.range.end - range.range.start
      : size;
    headers.set("content-length", String(length));
    let status = 200;
    if (range.kind === "range") {
      status = 206;
      headers.set("content-range", contentRange(range.range, size));
    }
    if (opened === undefined) return new Response(null, { status, headers });
    // Natively over HTTP/1.x when it reaches the end of the file or is
    // longer than one chunk: Deno then sends `content-length` bytes and no
    // more (see `nativeBody`). A short range is one read through the handle;
    // over HTTP/2 a body must end exactly where its header says.
    const native = length > 0 && overHttp1(request) &&
        (start + length === size || length > FILE_CHUNK_LARGE)
      ? await nativeBody(opened, start)
      : undefined;
    if (native !== undefined) {
      return new Response(native, { status, headers });
    }
    handedOver = true;
    return new Response(fileBody(ctx.fileBodies, opened, start, length), {
      status,
      headers,
    });
  } finally {
    if (!handedOver) await opened?.close();
  }
}

/** `If-Range`: a strong ETag must match exactly; a date must equal `Last-Modified`. */
function ifRangeHolds(
  value: string | null,
  etag: string,
  info: Deno.FileInfo,
): boolean {
  if (value === null) return true;
  const v = value.trim();
  if (v.startsWith('"') || v.startsWith("W/")) return v === etag;
  const date = Date.parse(v);
  if (Number.isNaN(date)) return false;
  return date === Math.floor(mtimeMs(info) / 1000) * 1000;
}

/** `attachment` with an ASCII fallback name and the exact UTF-8 name (RFC 6266, RFC 8187). */
function contentDisposition(name: string): string {
  // deno-lint-ignore no-control-regex
  const fallback = name.replace(/[\x00-\x1f\x7f-\uffff"\\%]/g, "_");
  const exact = encodeURIComponent(name).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return `attachment; filename="${fallback}"; filename*=UTF-8''${exact}`;
}

/**
 * The file from `start` on as a resource-backed stream, which Deno sends
 * without passing the bytes through JavaScript: less CPU than `fileBody`,
 * and no JavaScript buffers per chunk (serving 100 files of 10 MiB, 8 at a
 * time, peaked at 66 MiB instead of 145; to 200 slow clients, 43 MiB instead
 * of 144). It would read on to the end of the file, whatever that is by then;
 * `Deno.serve` writes exactly `content-length` bytes and stops reading there,
 * so a range in the middle of the file, or a file that grew, sends what its
 * header said and no more, and the connection goes on with the next answer
 * (tests/e2e_server_test.ts holds Deno to that); a file that shrank ends the
 * body early and the connection is closed, as with `fileBody`. Over HTTP/2
 * the stream fails instead (curl: PROTOCOL_ERROR), so only over HTTP/1.x.
 * `undefined` when the file cannot be had that way.
 */
async function nativeBody(
  opened: OpenedFile,
  start: number,
): Promise<ReadableStream<Uint8Array> | undefined> {
  const file = await opened.native();
  if (file === undefined) return undefined;
  try {
    if (start > 0) file.seekSync(start, Deno.SeekMode.Start);
    return file.readable;
  } catch {
    file.close();
    return undefined;
  }
}

/**
 * Exactly `length` bytes from `start`, never more even if the file grows; if
 * the file shrank the body ends early (the client sees a short body).
 */
function fileBody(
  bodies: { running: number },
  file: OpenedFile,
  start: number,
  length: number,
): ReadableStream<Uint8Array> {
  let position = start;
  let remaining = length;
  let counted = false;
  const end = async () => {
    if (counted) bodies.running--;
    counted = false;
    await file.close();
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!counted && remaining > 0) {
        counted = true;
        bodies.running++;
      }
      try {
        const chunk = bodies.running <= LARGE_CHUNK_BODIES
          ? FILE_CHUNK_LARGE
          : FILE_CHUNK;
        const buffer = new Uint8Array(Math.min(chunk, remaining));
        const n = remaining === 0 ? 0 : await file.read(buffer, position);
        if (n > 0) {
          position += n;
          remaining -= n;
          controller.enqueue(buffer.subarray(0, n));
        }
        if (n === 0 || remaining === 0) {
          await end();
          controller.close();
        }
      } catch (error) {
        await end();
        throw error;
      }
    },
    async cancel() {
      await end();
    },
  }, { highWaterMark: 0 });
}
