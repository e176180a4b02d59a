/**
 * `/v1/mkdir` (push): a directory and its missing parents below
 * `Writable_path`, or its time and mode set at the end of a push; or many
 * directories at once (a JSON array), made first and then given their
 * times, in one round trip at the end of a push.
 */
import { HttpError } from "../../shared/errors.ts";
import {
  API,
  type DirRequest,
  type DirResult,
  HEADER,
  MKDIR_MAX_DIRS,
} from "../../shared/wire.ts";
import { waitForSlot } from "../admission.ts";
import type { Endpoint, ServerContext } from "../context.ts";
import {
  badQuery,
  json,
  optionalCount,
  optionalInteger,
  optionalTime,
  requirePath,
} from "../http.ts";
import { Breather } from "../../shared/breather.ts";
import { readJsonBody } from "../request_body.ts";
import { refusalOf, statEntry } from "./_checked.ts";

/** Longest JSON array of directories: room for {@linkcode MKDIR_MAX_DIRS} long paths. */
const MAX_DIRS_BODY_BYTES = 8 * 1024 * 1024;

/** `POST /v1/mkdir?path=P[&mode=M][&mtime=T]`, or `POST /v1/mkdir[?after=N]` with a JSON array of `DirRequest`. */
export const mkdirEndpoint: Endpoint = {
  path: API.mkdir,
  methods: ["POST"],
  run: mkdir,
};

async function mkdir(ctx: ServerContext, request: Request, url: URL) {
  if (!url.searchParams.has("path") && request.body !== null) {
    return await mkdirMany(ctx, request, optionalCount(url, "after"));
  }
  const path = requirePath(url);
  const mode = optionalInteger(url, "mode");
  const mtime = optionalTime(url, "mtime");
  if (mode !== undefined && mode > 0o7777) {
    throw badQuery("mode", String(mode), "permission bits");
  }
  const release = await waitForSlot(ctx, ctx.uploadJobs, request, "mkdir");
  try {
    const real = ctx.writeJail.makeDirs(path);
    const info = ctx.writeJail.setDirMeta(path, real, mtime, mode);
    return json(statEntry(info, "dir"));
  } finally {
    release();
  }
}

/**
 * The array form: every directory made, then each given its time and mode;
 * one result each, in order (a refusal is that directory's result). With
 * `after`, once that many requests of the push's run have completed (its
 * files written: their directories' times would move after): 409
 * `incomplete` and nothing done when they do not (see `LockLease`).
 */
async function mkdirMany(
  ctx: ServerContext,
  request: Request,
  after: number | undefined,
) {
  const dirs = parseDirs(await readJsonBody(request, MAX_DIRS_BODY_BYTES));
  if (after !== undefined) {
    const token = request.headers.get(HEADER.uploadSession);
    const run = request.headers.get(HEADER.pushRun);
    if (token === null || run === null) {
      throw new HttpError(
        400,
        "bad_request",
        `Query parameter "after" needs the headers ${HEADER.uploadSession} and ${HEADER.pushRun}`,
      );
    }
    await ctx.pushLocks.untilSettled(token, run, after, {
      signal: request.signal,
      maxMs: ctx.limits.pushLeaseMs,
      what: `set the times of ${dirs.length} directories`,
    });
  }
  const release = await waitForSlot(ctx, ctx.uploadJobs, request, "mkdir");
  try {
    using breather = new Breather(ctx.limits.turnMs);
    // All are made before any time is set: making one changes its parent's.
    const made: Array<string | DirResult> = [];
    for (const d of dirs) {
      await breather.breathe();
      try {
        made.push(ctx.writeJail.makeDirs(d.path));
      } catch (error) {
        made.push(refusalOf(d.path, error));
      }
    }
    const results: DirResult[] = [];
    for (const [i, d] of dirs.entries()) {
      await breather.breathe();
      const real = made[i];
      if (typeof real !== "string") {
        results.push(real);
        continue;
      }
      try {
        const info = ctx.writeJail.setDirMeta(
          d.path,
          real,
          d.mtime,
          d.mode,
          d.narrow,
        );
        results.push({ path: d.path, ...statEntry(info, "dir") });
      } catch (error) {
        results.push(refusalOf(d.path, error));
      }
    }
    return json(results);
  } finally {
    release();
  }
}

/** The request's array, each entry's fields checked; 400 naming the first wrong one. */
function parseDirs(body: unknown): DirRequest[] {
  const bad = (why: string) =>
    new HttpError(400, "bad_request", `Invalid mkdir request: ${why}`);
  if (!Array.isArray(body)) throw bad("expected a JSON array of directories");
  if (body.length > MKDIR_MAX_DIRS) {
    throw bad(`${body.length} directories, at most ${MKDIR_MAX_DIRS} at once`);
  }
  return body.map((item, i) => {
    if (typeof item !== "object" || item === null || Array.isArray(item)) {
      throw bad(`entry ${i} is not an object`);
    }
    const d = item as Record<string, unknown>;
    if (typeof d.path !== "string" || !d.path.startsWith("/")) {
      throw bad(`entry ${i}: path must be an absolute path`);
    }
    const out: DirRequest = { path: d.path };
    if (d.mtime !== undefined) {
      if (!Number.isSafeInteger(d.mtime)) {
        throw bad(`entry ${i}: mtime must be a whole number of milliseconds`);
      }
      out.mtime = d.mtime as number;
    }
    if (d.mode !== undefined) {
      const mode = d.mode as number;
      if (!Number.isSafeInteger(mode) || mode < 0 || mode > 0o7777) {
        throw bad(`entry ${i}: mode must be permission bits`);
      }
      out.mode = mode;
    }
    if (d.narrow !== undefined) {
      if (typeof d.narrow !== "boolean") {
        throw bad(`entry ${i}: narrow must be true or false`);
      }
      out.narrow = d.narrow;
    }
    return out;
  });
}
