/** `/v1/lock` (push): the lease of a destination, so two pushes into one directory never write it at once. */
import { posix } from "node:path";
import { HttpError } from "../../shared/errors.ts";
import {
  API,
  type LockLease,
  type StatEntry,
  type UploadStatus,
} from "../../shared/wire.ts";
import type { Endpoint, ServerContext } from "../context.ts";
import { badQuery, json, optionalCount, requirePath } from "../http.ts";
import { splitWritePath } from "../jail/write_support.ts";
import { statOf } from "./meta.ts";

/** `POST /v1/lock?path=DIR[&name=NAME][&token=T][&release=1[&after=N&run=R]][&stat=1]` (see `LockLease` in shared/wire.ts). */
export const lockEndpoint: Endpoint = {
  path: API.lock,
  methods: ["POST"],
  run: lock,
};

async function lock(ctx: ServerContext, request: Request, url: URL) {
  const name = url.searchParams.get("name");
  const requested = await inside(ctx, requirePath(url), name);
  const token = url.searchParams.get("token") ?? undefined;
  const release = url.searchParams.get("release");
  if (release !== null && release !== "1") {
    throw badQuery("release", release, "1");
  }
  const withStat = url.searchParams.get("stat");
  if (withStat !== null && (withStat !== "1" || release !== null)) {
    throw badQuery("stat", withStat, "1, when the lease is taken or renewed");
  }
  const after = optionalCount(url, "after");
  const run = url.searchParams.get("run");
  if ((after !== undefined || run !== null) && release === null) {
    throw badQuery(
      after !== undefined ? "after" : "run",
      String(after ?? run),
      "with release=1 only",
    );
  }
  if ((after === undefined) !== (run === null)) {
    throw new HttpError(
      400,
      "bad_request",
      'Query parameters "after" and "run" go together',
    );
  }
  // Keyed by the kernel's path: two names of one directory (a link) are one lease.
  const key = ctx.writeJail.resolve(requested);
  const shown = splitWritePath(requested).path;
  let lease: LockLease;
  if (release === null) lease = ctx.pushLocks.take(key, shown, token);
  else if (token === undefined) {
    throw new HttpError(
      400,
      "bad_request",
      'Missing query parameter "token": only the holder releases a lease',
    );
  } else {
    if (after !== undefined && run !== null) {
      await ctx.pushLocks.untilSettled(token, run, after, {
        signal: request.signal,
        maxMs: ctx.limits.pushLeaseMs,
        renew: key,
        what: `release the lock of ${JSON.stringify(shown)}`,
      });
    }
    lease = ctx.pushLocks.release(key, shown, token);
  }
  if (name !== null) lease = { ...lease, path: shown };
  if (withStat !== null) {
    const entry = await leasedEntry(ctx, requested);
    if (entry !== undefined) lease = { ...lease, entry };
    if (entry !== undefined && entry?.type !== "dir") {
      const upload = await leasedUpload(ctx, requested);
      if (upload !== undefined) lease = { ...lease, upload };
    }
  }
  return json(lease);
}

/**
 * The path a lease with `name` is of: `path/NAME` when `path` is a
 * directory (as `GET /v1/stat` sees it), else `path`, as a push of one file
 * named NAME places it: its lease asked with the stat, not a round trip
 * after it. 400 for a name that is not one path component.
 */
async function inside(
  ctx: ServerContext,
  path: string,
  name: string | null,
): Promise<string> {
  if (name === null) return path;
  if (
    name === "" || name === "." || name === ".." || name.includes("/") ||
    name.includes("\0")
  ) throw badQuery("name", name, "one path component");
  const entry = await leasedEntry(ctx, path);
  return entry?.type === "dir" ? posix.join(path, name) : path;
}

/**
 * What `GET /v1/upload` would answer for the path just leased (null:
 * nothing held), undefined when it would refuse.
 */
async function leasedUpload(
  ctx: ServerContext,
  path: string,
): Promise<UploadStatus | null | undefined> {
  try {
    return await ctx.uploads.status(ctx.writeJail.target(path)) ?? null;
  } catch {
    return undefined;
  }
}

/**
 * What `GET /v1/stat` would answer for the path just leased, saving a push
 * that round trip: null when nothing is there, undefined for any other
 * refusal (the client asks `/v1/stat` itself and is told why).
 */
async function leasedEntry(
  ctx: ServerContext,
  path: string,
): Promise<StatEntry | null | undefined> {
  try {
    return await statOf(ctx, path);
  } catch (error) {
    if (error instanceof HttpError && error.status === 404) return null;
    return undefined;
  }
}
