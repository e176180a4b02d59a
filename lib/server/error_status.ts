/**
 * The one map from a throw to what hsyncd answers: an `HttpError` says its
 * own status; a file-system failure means 404 or 403 (the jail words it
 * with the requested path, everything else with this map's words); anything
 * else is a 500 that tells the client nothing. Every answer to a throw,
 * and every bundle error frame, is made here.
 */
import { HttpError } from "../shared/errors.ts";
import { type ErrorBody, HEADER } from "../shared/wire.ts";
import { json } from "./http.ts";

/** Response header naming the limit behind a 503 `busy`. */
export const LIMIT_HEADER = HEADER.limit;

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
  /** Missing (or not a directory on the way), a symlink loop, not permitted, or no space left (writes). */
  kind: "missing" | "loop" | "denied" | "full";
  status: 403 | 404 | 507;
  /** The `error` code of the answer. */
  code: "not_found" | "permission_denied" | "disk_full";
  /** Why, in a few lower-case words (`no such file or directory`). */
  reason: string;
}

/** Status, code and reason of each kind of file-system failure. */
const FS_MEANINGS = {
  missing: [404, "not_found", "no such file or directory"],
  loop: [404, "not_found", "too many levels of symbolic links"],
  denied: [403, "permission_denied", "permission denied"],
  full: [507, "disk_full", "no space left on the server's disk"],
} as const;

/** Which kind of file-system failure `error` (or the error it wraps, its `cause`) is, by `Deno.errors` class or node error code. */
function fsFailureKind(error: unknown): FsFailureStatus["kind"] | undefined {
  const cause = (error as { cause?: unknown } | null)?.cause;
  if (cause !== undefined && cause !== error) {
    const inner = fsFailureKind(cause);
    if (inner !== undefined) return inner;
  }
  const code = (error as { code?: unknown } | null)?.code;
  const { errors } = Deno;
  if (
    error instanceof errors.NotFound || error instanceof errors.NotADirectory ||
    code === "ENOENT" || code === "ENOTDIR"
  ) return "missing";
  if (error instanceof errors.FilesystemLoop || code === "ELOOP") return "loop";
  if (
    error instanceof errors.PermissionDenied ||
    error instanceof errors.NotCapable || code === "EACCES" ||
    code === "EPERM" || code === "EROFS"
  ) return "denied";
  if (
    code === "ENOSPC" || code === "EDQUOT" ||
    (error instanceof Error && /No space left|Disk quota/i.test(error.message))
  ) return "full";
  return undefined;
}

/**
 * What a file-system failure (a `Deno.errors` class, or a node error's
 * `code`) means to a client: missing (404), not permitted (403) or no
 * space left (507);
 * undefined when it is nothing a client caused.
 */
export function fsFailureStatus(error: unknown): FsFailureStatus | undefined {
  const kind = fsFailureKind(error);
  if (kind === undefined) return undefined;
  const [status, code, reason] = FS_MEANINGS[kind];
  return { kind, status, code, reason };
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

/**
 * The answer to an error: its JSON body and status, `Retry-After` on a 503,
 * and the limit's name on a 503 `busy` from a limit. `headers` are kept
 * (an `Allow`, a `Content-Range`).
 */
export function errorResponse(error: unknown, headers?: Headers): Response {
  const { status, body } = errorStatus(error);
  const response = json(body, status, headers);
  if (status === 503) response.headers.set("retry-after", "1");
  if (error instanceof BusyError) {
    response.headers.set(LIMIT_HEADER, error.limit);
  }
  return response;
}
