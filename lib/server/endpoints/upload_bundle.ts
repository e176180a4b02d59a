/**
 * `/v1/upload/bundle` (push): many small files in one request, each written
 * to a new part file beside its target, given its mode and time and renamed
 * into place; a file refused does not stop the others.
 */
import { closeSync, fchmodSync } from "node:fs";
import { decodeFrames, parseUploadHeader } from "../../shared/bundle_codec.ts";
import { HttpError } from "../../shared/errors.ts";
import {
  API,
  type UploadBundleHeader,
  type UploadBundleResult,
} from "../../shared/wire.ts";
import { waitForSlot } from "../admission.ts";
import type { Endpoint, ServerContext } from "../context.ts";
import { errorStatus } from "../error_status.ts";
import { json } from "../http.ts";
import { readRawBody } from "../request_body.ts";
import { checkRelative, statEntry } from "./_checked.ts";

/** `POST /v1/upload/bundle?root=R` with frames of files below `R`. */
export const uploadBundleEndpoint: Endpoint = {
  path: API.uploadBundle,
  methods: ["POST"],
  run: uploadBundle,
};

async function uploadBundle(ctx: ServerContext, request: Request, url: URL) {
  const root = url.searchParams.get("root");
  if (root === null || !root.startsWith("/")) {
    throw new HttpError(
      400,
      "bad_request",
      'Missing query parameter "root" (an absolute directory)',
    );
  }
  const body = await readRawBody(request, ctx.limits.bundleMaxBodyBytes);
  const release = await waitForSlot(ctx, ctx.uploadJobs, request, "upload");
  try {
    const results: UploadBundleResult[] = [];
    const frames = decodeFrames(
      new Blob([body]).stream(),
      ctx.limits.bundleMaxBodyBytes,
      parseUploadHeader,
    );
    try {
      for await (const { header, data } of frames) {
        if ("end" in header) break;
        results.push(await writeOne(ctx, root, header, data));
      }
    } catch (error) {
      if (error instanceof TypeError) {
        throw new HttpError(
          400,
          "bad_request",
          `Invalid upload bundle: ${error.message}`,
        );
      }
      throw error;
    }
    return json(results);
  } finally {
    release();
  }
}

/** Writes one file of the bundle; a refusal is its result, never a throw. */
async function writeOne(
  ctx: ServerContext,
  root: string,
  header: Exclude<UploadBundleHeader, { end: true }>,
  data: Uint8Array,
): Promise<UploadBundleResult> {
  const rel = header.path;
  try {
    checkRelative(rel, "upload");
    const target = ctx.writeJail.target(
      root === "/" ? `/${rel}` : `${root.replace(/\/+$/, "")}/${rel}`,
    );
    // A fresh file, not the part file: an upload of this path in ranges by
    // another push keeps its part; whichever commits last wins, never a mix.
    const { file, info, name: part } = await ctx.writeJail.createFresh(target);
    try {
      let off = 0;
      while (off < data.length) off += await file.write(data.subarray(off));
      await file.utime(new Date(), new Date(header.mtime));
    } catch (error) {
      ctx.writeJail.remove(target, part);
      throw error;
    } finally {
      file.close();
    }
    try {
      const keep = header.preserve ? 0o777 : 0o777 & ~ctx.uploads.umask;
      const fd = ctx.writeJail.openDescriptor(target, part, info);
      try {
        fchmodSync(fd, header.mode & keep);
      } finally {
        closeSync(fd);
      }
      ctx.writeJail.rename(target, part, target.name, info);
    } catch (error) {
      ctx.writeJail.remove(target, part);
      throw error;
    }
    const now = ctx.writeJail.lstat(target, target.name);
    if (now === undefined) {
      throw new HttpError(
        409,
        "changed",
        `Cannot write ${JSON.stringify(target.path)}: it changed, retry`,
      );
    }
    return { path: rel, ...statEntry(now, "file") };
  } catch (error) {
    const { status, body } = errorStatus(error);
    if (status === 500) throw error;
    return { path: rel, error: body.error, message: body.message };
  }
}
