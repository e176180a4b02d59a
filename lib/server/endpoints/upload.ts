/**
 * `/v1/upload` (push): `GET` answers what the server holds of an upload,
 * `PUT` writes one byte range of it (streamed to the part file, flushed,
 * then recorded). Both only below `Writable_path`, through the write jail.
 */
import { parseContentRange } from "../../shared/byte_range.ts";
import { HttpError } from "../../shared/errors.ts";
import { API, HEADER, type UploadStatus } from "../../shared/wire.ts";
import { waitForSlot } from "../admission.ts";
import type { Endpoint, ServerContext } from "../context.ts";
import {
  badQuery,
  json,
  optionalFlag,
  optionalInteger,
  optionalTime,
  requirePath,
} from "../http.ts";
import { withParents } from "./_checked.ts";
import { signedDigestOf, streamBody } from "../request_body.ts";

/**
 * `GET /v1/upload?path=P` (status) and
 * `PUT /v1/upload?path=P&size=S&source=ID[&restart=1][&parents=1][&commit=1&mtime=T&mode=M[&preserve=1]]`
 * (one range; with `commit=1`, the range that completes the upload commits it).
 */
export const uploadEndpoint: Endpoint = {
  path: API.upload,
  methods: ["GET", "PUT"],
  run: upload,
};

async function upload(ctx: ServerContext, request: Request, url: URL) {
  const path = requirePath(url);
  // A PUT with parents=1 makes a missing directory first.
  const target = withParents(
    ctx.writeJail,
    request.method === "PUT" && optionalFlag(url, "parents"),
    path,
    () => ctx.writeJail.target(path),
  );
  if (request.method === "GET") {
    const status = await ctx.uploads.status(target);
    if (status === undefined) {
      throw new HttpError(
        404,
        "not_found",
        `Nothing is held of an upload of ${JSON.stringify(target.path)}`,
      );
    }
    return json(status);
  }
  const size = requiredCount(url, "size");
  const source = url.searchParams.get("source") ?? "";
  if (source === "" || source.length > 256) {
    throw new HttpError(
      400,
      "bad_request",
      'Missing or invalid query parameter "source"',
    );
  }
  const commit = commitOf(url);
  const cr = parseContentRange(request.headers.get("content-range"));
  if (cr === undefined || cr.size !== size) {
    throw new HttpError(
      400,
      "bad_request",
      `Cannot write to ${
        JSON.stringify(target.path)
      }: expected Content-Range: bytes A-B/${size}`,
    );
  }
  const length = cr.range.end - cr.range.start;
  if (request.body === null || length > ctx.limits.bundleMaxBodyBytes) {
    throw new HttpError(
      request.body === null ? 400 : 413,
      request.body === null ? "bad_request" : "too_large",
      `Cannot write to ${
        JSON.stringify(target.path)
      }: a range is at most ${ctx.limits.bundleMaxBodyBytes} bytes per request, with exactly its bytes as the body`,
    );
  }
  // Written as it arrives (a signed one checked against its digest at its
  // end). Its slot is taken first: Deno 2.9.6 spends CPU on a request body
  // left unread for as long as it waits (256 MiB sent to a body not read
  // for 10 s: 30 s of CPU), and there is a slot for each of 32 ranges a
  // client sends at once.
  const session = request.headers.get(HEADER.uploadSession) ?? undefined;
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) !== length) {
    throw new HttpError(
      400,
      "bad_request",
      `Cannot write to ${
        JSON.stringify(target.path)
      }: the body has ${declared} bytes, its Content-Range ${length}`,
    );
  }
  const release = await waitForSlot(ctx, ctx.uploadJobs, request, "upload");
  try {
    const claim = { size, source, session };
    let status: UploadStatus;
    try {
      status = await ctx.uploads.write(
        target,
        { ...claim, restart: url.searchParams.get("restart") === "1" },
        cr.range,
        (sink) =>
          streamBody(request, {
            length,
            sink,
            digest: signedDigestOf(request),
          }),
      );
    } catch (error) {
      // Its client went away (killed, cut off): its next run may go on at once.
      ctx.uploads.release(target, session);
      throw error;
    }
    // The range that completes an upload asked to commit commits it.
    if (commit !== undefined && ctx.uploads.complete(target, claim)) {
      const committed = await ctx.uploads.commit(target, {
        ...claim,
        ...commit,
      });
      return json({ ...status, committed } satisfies UploadStatus);
    }
    return json(status);
  } finally {
    release();
  }
}

/**
 * `commit=1&mtime=T&mode=M[&preserve=1]`: the file's time and mode, for the
 * commit of the upload once a range completes it (undefined: no commit).
 */
function commitOf(
  url: URL,
): { mtime: number; mode: number; preserve: boolean } | undefined {
  if (!optionalFlag(url, "commit")) return undefined;
  const mtime = optionalTime(url, "mtime");
  if (mtime === undefined) {
    throw badQuery(
      "mtime",
      null,
      "a whole number of milliseconds, with commit=1",
    );
  }
  const mode = optionalInteger(url, "mode");
  if (mode === undefined || mode > 0o7777) {
    throw badQuery(
      "mode",
      url.searchParams.get("mode"),
      "permission bits, with commit=1",
    );
  }
  return { mtime, mode, preserve: optionalFlag(url, "preserve") };
}

/** A whole number query parameter that must be there. */
function requiredCount(url: URL, name: string): number {
  const n = optionalInteger(url, name);
  if (n === undefined) throw badQuery(name, null, "a whole number of bytes");
  return n;
}
