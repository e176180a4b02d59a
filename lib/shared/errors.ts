/** Error classes shared by both programs, and the one place errors map to exit codes. */

/** An error with an HTTP status and a short code; the server turns it into a JSON error response. */
export class HttpError extends Error {
  /** HTTP status to answer with. */
  readonly status: number;
  /** Machine-readable code for the `error` field of the body. */
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = "HttpError";
    this.status = status;
    this.code = code;
  }
}

/** A bad command line (exit code 1). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** A bad configuration file or value (exit code 1). */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** Another hsync writes into the directory and the run was told not to wait (`--no-wait`), a local directory (a pull) or a remote one (a push): exit code 1, as a setup the user must change. */
export class DestinationBusy extends ConfigError {
  /** The locked directory. */
  readonly dir: string;
  /** The holder's process id, when the lock file names one. */
  readonly pid?: number;
  constructor(dir: string, pid: number | undefined) {
    super(
      `Another hsync is writing into ${JSON.stringify(dir)}${
        pid === undefined ? "" : ` (pid ${pid})`
      }; not waiting (--no-wait)`,
    );
    this.name = "DestinationBusy";
    this.dir = dir;
    this.pid = pid;
  }
}

/**
 * The run cannot go on with this server: it answered and refused (exit
 * code 3), or it could not be reached or is not an hsyncd (exit code 4).
 */
export class ConnectError extends Error {
  /** HTTP status when the server answered, undefined when it could not be reached. */
  readonly status?: number;
  /**
   * The server answered and said no (the path is missing, the key or the
   * path is refused, a redirect, more than `--max-entries`): running again
   * as is cannot help. By default true for a 3xx or 4xx `status`.
   */
  readonly refused: boolean;
  constructor(
    message: string,
    options?: { status?: number; cause?: unknown; refused?: boolean },
  ) {
    super(message, { cause: options?.cause });
    this.name = "ConnectError";
    this.status = options?.status;
    const status = options?.status ?? 0;
    this.refused = options?.refused ?? (status >= 300 && status < 500);
  }
}

/** The server answered something that does not fit the request (not worth another try). */
export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}

/** Some files failed while the rest completed (exit code 2). */
export class PartialFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PartialFailure";
  }
}

/** Exit codes of both programs (DESIGN.md §3, README "Exit codes"). */
export const EXIT = {
  ok: 0,
  /** A bad command line or configuration. */
  usage: 1,
  /** Some entries failed or were not transferred; the rest completed. */
  partial: 2,
  /** The server answered and refused, or the path is missing (a script should not simply retry). */
  refused: 3,
  /** The server could not be reached, or is not an hsyncd (a script may retry later). */
  unreachable: 4,
  /** Stopped by SIGINT or SIGTERM. */
  interrupted: 130,
  /** @deprecated The old single code for 3 and 4: use `refused` or `unreachable`. */
  connect: 3,
} as const;

/** Maps an error to the documented exit code. */
export function exitCodeFor(error: unknown): number {
  if (error instanceof UsageError || error instanceof ConfigError) {
    return EXIT.usage;
  }
  if (error instanceof PartialFailure) return EXIT.partial;
  if (error instanceof ConnectError) {
    return error.refused ? EXIT.refused : EXIT.unreachable;
  }
  // An answer that does not fit the protocol: not an hsyncd.
  if (error instanceof ProtocolError) return EXIT.unreachable;
  if (error instanceof HttpError) {
    return error.status >= 300 && error.status < 500
      ? EXIT.refused
      : EXIT.unreachable;
  }
  // fetch's own failure (connection refused, reset, TLS) and the idle timeout.
  if (
    error instanceof TypeError && /fetch|connect|tls|certificate/i.test(
      `${error.message} ${
        error.cause instanceof Error ? error.cause.message : ""
      }`,
    )
  ) return EXIT.unreachable;
  if (error instanceof Error && error.name === "TimeoutError") {
    return EXIT.unreachable;
  }
  return EXIT.usage;
}

/** True for errors a user can cause: they are reported in one line, without a stack trace. */
export function isExpected(error: unknown): boolean {
  return error instanceof UsageError || error instanceof ConfigError ||
    error instanceof ConnectError || error instanceof PartialFailure ||
    error instanceof HttpError || error instanceof Deno.errors.NotFound ||
    error instanceof Deno.errors.PermissionDenied ||
    error instanceof Deno.errors.NotCapable ||
    error instanceof Deno.errors.AlreadyExists;
}

/** One line describing an error, for the terminal. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

/** A local file or directory that cannot be used (a planted symlink, a file where a directory belongs...). */
export class LocalPathError extends Error {
  /** The local path at fault. */
  readonly path: string;
  /** Why, in a few lower-case words (`it is a symbolic link`). */
  readonly why: string;
  constructor(path: string, why: string, cause?: unknown) {
    super(`Cannot write ${JSON.stringify(path)}: ${why}`, { cause });
    this.name = "LocalPathError";
    this.path = path;
    this.why = why;
  }
}

/** A short lower-case reason for a file-system error: `permission denied`, `no space left on device`... */
export function reason(error: unknown): string {
  if (error instanceof LocalPathError) return error.why;
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.NotFound) return "no such file or directory";
  if (error instanceof Deno.errors.AlreadyExists) return "it already exists";
  if (error instanceof Deno.errors.NotADirectory) return "not a directory";
  if (error instanceof Deno.errors.IsADirectory) return "it is a directory";
  if (error instanceof Deno.errors.NotCapable) {
    return "not allowed by the permissions of this program";
  }
  const text = error instanceof Error ? error.message : String(error);
  // "No space left on device (os error 28): write '/x'" -> "no space left on device"
  const m = /^([^(:]+?)\s*\(os error \d+\)/.exec(text) ??
    // node's "ENOENT: no such file or directory, open '/x'" -> "no such file or directory"
    /^E[A-Z]+: ([^,]+)/.exec(text);
  const short = m ? m[1] : text;
  return short.charAt(0).toLowerCase() + short.slice(1);
}
