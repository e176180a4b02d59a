/** `/v1/hash`: the SHA-256 of a span of a file, one job per slot, results remembered by (etag, offset, length). */
import { createHash } from "node:crypto";
import { HttpError } from "../../shared/errors.ts";
import { etagFor } from "../../shared/file_identity.ts";
import { API, type HashResult } from "../../shared/wire.ts";
import { clientGone } from "../admission.ts";
import type { Endpoint, ServerContext } from "../context.ts";
import { json, optionalInteger, requirePath } from "../http.ts";
import type { OpenedFile } from "../jail/path_guard.ts";
import { requireFile } from "./_checked.ts";
import { fileJob } from "./_file_jobs.ts";

/** `GET /v1/hash?path=[&offset=&length=]`: the SHA-256 of a span (the whole file by default). */
export const hashEndpoint: Endpoint = {
  path: API.hash,
  methods: ["GET", "HEAD"],
  run: hash,
};

/** Bytes read at a time while hashing. */
const HASH_CHUNK = 1024 * 1024;

/** The span to hash: within the file (else 416), and at most `max` bytes (else 400 `too_large`). */
function hashSpan(
  path: string,
  size: number,
  offset: number | undefined,
  length: number | undefined,
  max: number,
): { offset: number; length: number } {
  const o = offset ?? 0;
  const l = length ?? Math.max(0, size - o);
  if (o + l > size) {
    throw new HttpError(
      416,
      "bad_range",
      `Cannot hash bytes ${o} to ${o + l} of ${
        JSON.stringify(path)
      }: the file has ${size} bytes`,
    );
  }
  if (l > max) {
    throw new HttpError(
      400,
      "too_large",
      `Cannot hash ${l} bytes of ${
        JSON.stringify(path)
      } in one request: at most ${max} (hashMaxBytes), ask for spans with offset and length`,
    );
  }
  return { offset: o, length: l };
}

async function hash(ctx: ServerContext, request: Request, url: URL) {
  const checked = await ctx.guard.check(requirePath(url));
  requireFile(checked);
  const offset = optionalInteger(url, "offset");
  const length = optionalInteger(url, "length");
  const max = ctx.limits.hashMaxBytes;
  const first = hashSpan(checked.path, checked.info.size, offset, length, max);
  const cached = ctx.hashCache.get(
    cacheKey(etagFor(checked.info), first.offset, first.length),
  );
  if (cached !== undefined) return json(cached);

  return await fileJob(ctx, request, checked, "hash", async (opened) => {
    const etag = etagFor(opened.info);
    const span = hashSpan(checked.path, opened.info.size, offset, length, max);
    const key = cacheKey(etag, span.offset, span.length);
    const again = ctx.hashCache.get(key);
    if (again !== undefined) return json(again);
    const sha256 = await sha256Of(opened, span, request.signal, checked.path);
    const result: HashResult = { sha256, ...span, etag };
    // A file modified while being hashed is answered (the etag says what was seen) but not cached.
    if (etagFor(await opened.stat()) === etag) ctx.hashCache.set(key, result);
    return json(result);
  });
}

function cacheKey(etag: string, offset: number, length: number): string {
  return `${etag} ${offset} ${length}`;
}

async function sha256Of(
  file: OpenedFile,
  span: { offset: number; length: number },
  signal: AbortSignal,
  path: string,
): Promise<string> {
  const digest = createHash("sha256");
  const buffer = new Uint8Array(Math.min(HASH_CHUNK, Math.max(span.length, 1)));
  let position = span.offset;
  let remaining = span.length;
  while (remaining > 0) {
    if (signal.aborted) throw clientGone();
    const view = remaining < buffer.length
      ? buffer.subarray(0, remaining)
      : buffer;
    const n = await file.read(view, position);
    if (n === 0) {
      throw new HttpError(
        409,
        "changed",
        `Cannot hash ${JSON.stringify(path)}: it shrank while being hashed`,
      );
    }
    digest.update(view.subarray(0, n));
    position += n;
    remaining -= n;
  }
  return digest.digest("hex");
}
