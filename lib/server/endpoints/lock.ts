/** `/v1/lock` (push): the lease of a destination, so two pushes into one directory never write it at once. */
import { HttpError } from "../../shared/errors.ts";
import { API, type LockLease } from "../../shared/wire.ts";
import type { Endpoint, ServerContext } from "../context.ts";
import { badQuery, json, requirePath } from "../http.ts";
import { splitWritePath } from "../jail/write_support.ts";

/** `POST /v1/lock?path=DIR[&token=T][&release=1]` (see `LockLease` in shared/wire.ts). */
export const lockEndpoint: Endpoint = {
  path: API.lock,
  methods: ["POST"],
  run: lock,
};

function lock(ctx: ServerContext, _request: Request, url: URL) {
  const requested = requirePath(url);
  const token = url.searchParams.get("token") ?? undefined;
  const release = url.searchParams.get("release");
  if (release !== null && release !== "1") {
    throw badQuery("release", release, "1");
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
  } else lease = ctx.pushLocks.release(key, shown, token);
  return Promise.resolve(json(lease));
}
