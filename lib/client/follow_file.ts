/**
 * Catching one followed file up with the server: appending what it has past
 * the local end once the last local bytes are proven to match, or fetching
 * it whole into its part file when they do not.
 */
import { parseContentRange } from "../shared/byte_range.ts";
import {
  createChecked,
  fileIdOf,
  openChecked,
} from "../shared/checked_open.ts";
import { HttpError, LocalPathError, reason } from "../shared/errors.ts";
import { parseEtag } from "../shared/file_identity.ts";
import { createPart, partPathFor, placePart } from "../shared/part_file.ts";
import { hashSpans } from "../shared/span_hash.ts";
import type { HashResult } from "../shared/wire.ts";
import { receiveBody, usableBody } from "./receive_body.ts";
import { modeToApply } from "./placement.ts";
import type { Exchange, Remote } from "./remote.ts";
import { ProtocolError, ShortBody } from "./retry.ts";

/** Bytes at the end of a local file compared (by SHA-256) with the same span on the server before anything is appended. */
export const TAIL_BYTES = 64 * 1024;

/** Why a file was fetched whole. */
export type FetchReason =
  /** It appeared on the server. */
  | "new"
  /** It is on the server but not (or no longer) here. */
  | "missing"
  /** Its last local bytes no longer match the server's: rewritten in place. */
  | "rewritten"
  /** Another file now has its name (rotated, or replaced by a rename). */
  | "replaced"
  /** It got shorter on the server. */
  | "truncated";

/** The remote file went away (deletions are not propagated). */
export class Gone extends Error {}

/** One followed file, as a round sees it. */
export interface FollowedFile {
  /** Path relative to the followed root (for messages). */
  rel: string;
  /** Absolute path on the server. */
  remote: string;
  /** Local path. */
  target: string;
  /** The local file (`lstat`, a regular file), undefined when there is none. */
  local?: Deno.FileInfo;
  /** Remote offset of local byte 0: 0, except for `--from-now` files. */
  base: number;
  /** Device and inode of the remote file last seen under this name. */
  id?: string;
}

/** What the server said of a file caught up: its ETag and the inode part of it. */
export interface Seen {
  /** The ETag of the answer (null without one). */
  etag: string | null;
  /** Device and inode from the ETag (undefined when it is not hsyncd's). */
  id?: string;
}

/**
 * Appends what the server has past the local end. The hash of the last
 * local bytes (at most {@linkcode TAIL_BYTES}) and the range from the local
 * end are asked at once; the range's bytes are written only once the hash
 * matched, so the local file never holds a byte the server does not.
 * Returns why the file must be fetched whole instead, or what the server
 * said of it; `onAppended` is told the bytes written (and the new local
 * size) before a short body is thrown. The local file is read and written
 * only through handles proven to be the regular file `f.local`: a link
 * planted at its name is never followed. Throws {@linkcode Gone} when the
 * file is gone from the server.
 */
export async function appendNew(
  remote: Remote,
  f: FollowedFile,
  signal: AbortSignal,
  onAppended: (bytes: number, size: number) => void,
): Promise<{ refetch: FetchReason } | Seen> {
  const { rel, local, base } = f;
  const localSize = local?.size ?? 0;
  const offset = base + localSize;
  const k = Math.min(TAIL_BYTES, localSize);
  const round = new AbortController();
  const onAbort = () => round.abort(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  const hashP = k > 0
    ? tailHash(remote, f.remote, offset - k, k, round.signal)
    : Promise.resolve(undefined);
  // Never left unhandled: the range may fail first.
  hashP.catch(() => {});
  let ex: Exchange | undefined;
  try {
    ex = await remote.file(f.remote, {
      range: { start: offset },
      signal: round.signal,
    });
    const tail = await hashP;
    if (tail === "gone") throw new Gone();
    const res = ex.response;
    const etag = res.headers.get("etag");
    const now = parseEtag(etag);
    const hashed = typeof tail === "object" ? parseEtag(tail.etag) : undefined;
    // Another inode under the same name: rotated or replaced.
    const id = now?.id ?? hashed?.id;
    if (f.id !== undefined && id !== undefined && id !== f.id) {
      return { refetch: "replaced" };
    }
    if (tail === "short") return { refetch: "truncated" };
    if (tail !== undefined) {
      const [mine] = await hashSpans(f.target, [{
        start: localSize - k,
        end: localSize,
      }], { expected: fileIdOf(local!) });
      if (mine !== tail.sha256) {
        return { refetch: base > 0 ? "replaced" : "rewritten" };
      }
      if (now !== undefined && hashed !== undefined && hashed.id !== now.id) {
        // The hash and the range saw two different files: ask again.
        throw new ShortBody(`"${rel}" was replaced while being read`);
      }
    }
    if (res.status === 416) {
      const m = /^bytes \*\/(\d+)$/.exec(
        res.headers.get("content-range") ?? "",
      );
      const size = m === null ? NaN : Number(m[1]);
      if (!Number.isSafeInteger(size)) {
        throw new ProtocolError(
          `Unsatisfiable range for "${rel}" without a valid Content-Range`,
        );
      }
      if (size < offset) return { refetch: "truncated" };
      return { etag, id };
    }
    if (res.status === 200) {
      // Only an empty file ignores a range: it was truncated to nothing.
      if (offset > 0) return { refetch: "truncated" };
      throw new ProtocolError(`Unexpected 200 for a range of "${rel}"`);
    }
    if (res.status !== 206) {
      throw new ProtocolError(
        `Unexpected status ${res.status} for a range of "${rel}"`,
      );
    }
    const cr = parseContentRange(res.headers.get("content-range"));
    if (cr === undefined || cr.range.start !== offset) {
      throw new ProtocolError(
        `Range response for "${rel}" does not start at byte ${offset}`,
      );
    }
    const end = cr.range.end;
    const range = { start: offset - base, end: end - base };
    const usable = usableBody(ex, range, rel);
    const file = openLocal(f.target, local);
    let written: number;
    try {
      written = await receiveBody(ex, file, range, usable, {
        label: rel,
        path: f.target,
        sync: true,
      }) - range.start;
      if (
        base === 0 && now !== undefined && now.size === end &&
        written === end - offset
      ) {
        await file.utime(new Date(), new Date(now.mtime)).catch(() => {});
      }
    } finally {
      file.close();
    }
    onAppended(written, offset + written - base);
    if (offset + written < end) {
      throw new ShortBody(
        `Body for "${rel}" ended at byte ${offset + written} of ${end}`,
      );
    }
    return { etag, id };
  } catch (error) {
    if (error instanceof HttpError && error.status === 404) throw new Gone();
    throw error;
  } finally {
    signal.removeEventListener("abort", onAbort);
    round.abort();
    if (ex !== undefined) {
      ex.done();
      await ex.response.body?.cancel().catch(() => {});
    }
  }
}

/**
 * Fetches the whole file into its `.hsync-part`, then places it (mtime from
 * its ETag, mode with `mode`) under its name. Returns the bytes written and
 * what the server said of it; undefined when it is gone from the server.
 */
export async function fetchWhole(
  remote: Remote,
  f: FollowedFile,
  signal: AbortSignal,
  options: { preserve?: boolean; specialModes?: boolean } = {},
): Promise<(Seen & { bytes: number }) | undefined> {
  const { rel, target } = f;
  const part = partPathFor(target);
  let file: Deno.FsFile;
  try {
    // A leftover part or a planted link goes; O_EXCL refuses one planted
    // meanwhile, and the handle (not the name) takes every byte.
    file = createPart(part);
  } catch (error) {
    if (error instanceof LocalPathError) throw error;
    throw new LocalPathError(part, reason(error), error);
  }
  const id = fileIdOf(file.statSync());
  let placed = false;
  let ex: Exchange | undefined;
  try {
    try {
      ex = await remote.file(f.remote, { signal });
    } catch (error) {
      if (error instanceof HttpError && error.status === 404) return undefined;
      throw error;
    }
    const res = ex.response;
    if (res.status !== 200) {
      throw new ProtocolError(`Unexpected status ${res.status} for "${rel}"`);
    }
    const length = Number(res.headers.get("content-length"));
    if (!Number.isSafeInteger(length)) {
      throw new ProtocolError(`Response for "${rel}" has no Content-Length`);
    }
    const etag = res.headers.get("etag");
    const parts = parseEtag(etag);
    const range = { start: 0, end: length };
    const written = await receiveBody(
      ex,
      file,
      range,
      usableBody(ex, range, rel),
      { label: rel, path: part, sync: true },
    );
    if (written < length) {
      throw new ShortBody(
        `Body for "${rel}" ended at byte ${written} of ${length}`,
      );
    }
    let mode: number | undefined;
    if (options.preserve) {
      const st = await remote.stat(f.remote, signal).catch(() => undefined);
      if (st !== undefined) mode = modeToApply(st.mode, options.specialModes);
    }
    try {
      await placePart(part, id, target, {
        mtime: parts !== undefined && parts.size === length
          ? parts.mtime
          : undefined,
        mode,
      });
      placed = true;
    } catch (error) {
      if (error instanceof LocalPathError) throw error;
      throw new LocalPathError(target, reason(error), error);
    }
    return { bytes: written, etag, id: parts?.id };
  } finally {
    file.close();
    if (ex !== undefined) {
      ex.done();
      await ex.response.body?.cancel().catch(() => {});
    }
    if (!placed) await Deno.remove(part).catch(() => {});
  }
}

/** `GET /v1/hash` of a span: the result, "short" when the file is now shorter, "gone" when it is gone. */
async function tailHash(
  remote: Remote,
  path: string,
  offset: number,
  length: number,
  signal: AbortSignal,
): Promise<HashResult | "short" | "gone"> {
  try {
    return await remote.hash(path, { offset, length, signal });
  } catch (error) {
    if (error instanceof HttpError) {
      if (error.status === 416) return "short";
      if (error.status === 404) return "gone";
    }
    throw error;
  }
}

/**
 * Opens the local file of an append: the regular file `local` when it
 * existed (never a link planted since), else a new one (`O_EXCL`).
 */
function openLocal(
  target: string,
  local: Deno.FileInfo | undefined,
): Deno.FsFile {
  if (local !== undefined) {
    return openChecked(target, { write: true, expected: fileIdOf(local) });
  }
  try {
    return createChecked(target);
  } catch (error) {
    if (error instanceof LocalPathError) throw error;
    throw new LocalPathError(target, reason(error), error);
  }
}
