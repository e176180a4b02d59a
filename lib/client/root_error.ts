/** The one-line error of a run whose remote root (the path it pulls, follows or lists) cannot be used. */
import { ConnectError, HttpError } from "../shared/errors.ts";
import { TimeoutError } from "./remote.ts";

/**
 * The one-line error of a run whose remote root cannot be used: 404, 401
 * and 403 said plainly, everything else as "Cannot VERB remote path P on
 * HOST: why". Always a `ConnectError` (exit code 3).
 */
export function remoteRootError(
  error: unknown,
  remotePath: string,
  host: string,
  verb: "read" | "follow",
): ConnectError {
  const p = JSON.stringify(remotePath);
  if (error instanceof HttpError) {
    const status = error.status;
    const why = status === 404
      ? `Remote path ${p} does not exist on ${host}`
      : status === 401
      ? `Not authenticated by ${host}: ${error.message}`
      : status === 403
      ? `Remote path ${p} is refused by ${host}: ${error.message}`
      : `Cannot ${verb} remote path ${p} on ${host}: ${error.message}`;
    return new ConnectError(why, { status, cause: error });
  }
  if (error instanceof ConnectError) return error;
  if (error instanceof TimeoutError) {
    return new ConnectError(error.message, { cause: error });
  }
  return new ConnectError(
    `Cannot ${verb} remote path ${p} on ${host}: ${
      error instanceof Error ? error.message : String(error)
    }`,
    { cause: error },
  );
}
