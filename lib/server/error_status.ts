/**
 * The one map from a throw to what hsyncd answers: an `HttpError` says its
 * own status; a file-system failure means 404 or 403 (the jail words it
 * with the requested path, everything else with this map's words); anything
 * else is a 500 that tells the client nothing.
 */
import { HttpError } from "../shared/errors.ts";
import type { ErrorBody } from "../shared/wire.ts";

/** Response header naming the limit behind a 503 `busy`. */
export const LIMIT_HEADER = "x-hsync-limit";

/** 503 `busy`: a limit refused the request; `limit` names it (sent in {@linkcode LIMIT_HEADER}). */
export class BusyError extends HttpError {
  /** The name of the limit (a field of `ServerLimits`). */
  readonly limit: string;
  constructor(limit: string, message: string) {
    super(503, "busy", message);
    this.limit = limit;
  }
}

/** What a file-system failure means to a client. */
export interface FsFailureStatus {
  /** Missing (or not a directory on the way), a symlink loop, or not permitted. */
  kind: "missing" | "loop" | "denied";
  status: 403 | 404;
  /** The `error` code of the answer. */
  code: "not_found" | "permission_denied";
  /** Why, in a few lower-case words (`no such file or directory`). */
  reason: string;
}

/**
 * What a file-system failure (a `Deno.errors` class, or a node error's
 * `code`) means to a client: missing (404) or not permitted (403);
 * undefined when it is nothing a client caused.
 */
export function fsFailureStatus(error: unknown): FsFailureStatus | undefined {
  const code = (error as { code?: string } | null)?.code;
  if (
    error instanceof Deno.errors.NotFound ||
    error instanceof Deno.errors.NotADirectory || code === "ENOENT" ||
    code === "ENOTDIR"
  ) {
    return {
      kind: "missing",
      status: 404,
      code: "not_found",
      reason: "no such file or directory",
    };
  }
  if (error instanceof Deno.errors.FilesystemLoop || code === "ELOOP") {
    return {
      kind: "loop",
      status: 404,
      code: "not_found",
      reason: "too many levels of symbolic links",
    };
  }
  if (
    error instanceof Deno.errors.PermissionDenied ||
    error instanceof Deno.errors.NotCapable || code === "EACCES" ||
    code === "EPERM"
  ) {
    return {
      kind: "denied",
      status: 403,
      code: "permission_denied",
      reason: "permission denied",
    };
  }
  return undefined;
}

/** The status and the `ErrorBody` an error is answered with; unexpected errors are 500 `internal`. */
export function errorStatus(error: unknown): {
  status: number;
  body: ErrorBody;
} {
  if (error instanceof HttpError) {
    return {
      status: error.status,
      body: { error: error.code, message: error.message },
    };
  }
  const fs = fsFailureStatus(error);
  if (fs !== undefined) {
    return {
      status: fs.status,
      body: {
        error: fs.code,
        message: fs.reason.charAt(0).toUpperCase() + fs.reason.slice(1),
      },
    };
  }
  return {
    status: 500,
    body: { error: "internal", message: "Internal server error" },
  };
}
