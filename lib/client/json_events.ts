/**
 * `--json`: the events of a pull, a push or `--sync` as one JSON object per
 * line for scripts (field names in snake_case, documented in README "In
 * scripts"). Progress and byte counts in flight are not told: only what
 * happened to each entry, warnings, and the summary that ends every run.
 */
import type { FollowEvent, FollowSummary } from "./follow_events.ts";
import type { PullEvent, PullSummary } from "./transfer.ts";
import { notTransferred } from "./progress.ts";

/** One line of `--json` output (its `type` says which fields it has). */
export type JsonEvent = { type: string } & Record<string, unknown>;

/**
 * The object for one pull or push event, or undefined for events a script
 * need not see (progress, totals). An entry the sending side left out is a
 * `file` with status `not_transferred` (it makes the exit code 2); entries
 * the server's rules withhold are only counted, in the summary.
 */
export function pullEventJson(event: PullEvent): JsonEvent | undefined {
  switch (event.type) {
    case "done":
      return file(event.path, event.bytes, "transferred");
    case "skip":
      return file(event.path, event.bytes, "skipped", "identical");
    case "failure":
      return file(event.path, 0, "failed", event.message);
    case "omitted":
      return event.path === undefined
        ? undefined
        : file(event.path, 0, "not_transferred", event.message);
    case "deleted":
      return file(event.path, 0, "deleted");
    case "warning":
      return warning(event.message, event.path);
    case "plan":
      return {
        type: "plan",
        action: event.action,
        path: event.path,
        bytes: event.bytes,
      };
    default:
      return undefined;
  }
}

/**
 * The object for one `--sync` event: the first pull's events as for a pull,
 * then `append` (bytes added at `offset`), `file` with status `new`,
 * `refetch` (a file fetched again whole, and why), and the connection's
 * state; undefined for the others.
 */
export function followEventJson(event: FollowEvent): JsonEvent | undefined {
  switch (event.type) {
    case "pull":
      return pullEventJson(event.event);
    case "pulled":
      return { type: "pulled", ...totals(event.summary) };
    case "following":
      return {
        type: "following",
        local: event.local,
        files: event.files,
        resumed: event.resumed,
        from_now: event.fromNow,
      };
    case "appended":
      return {
        type: "append",
        path: event.path,
        offset: event.size - event.bytes,
        bytes: event.bytes,
      };
    case "fetched":
      return event.reason === "new" ? file(event.path, event.bytes, "new") : {
        type: "refetch",
        path: event.path,
        bytes: event.bytes,
        reason: event.reason,
      };
    case "dir":
      return { type: "dir", path: event.path };
    case "reconnecting":
      return {
        type: "reconnecting",
        attempt: event.attempt,
        max: event.max,
        delay_ms: Math.round(event.delayMs),
        message: event.message,
      };
    case "reconnected":
      return { type: "reconnected" };
    case "waiting":
      return warning(event.message);
    case "warning":
      return warning(event.message, event.path);
    case "failure":
      return file(event.path, 0, "failed", event.message);
  }
}

/** The last line of a pull or a push: its totals, how long it took and its exit code. */
export function summaryJson(
  summary: PullSummary,
  exitCode: number,
  elapsedMs: number,
): JsonEvent {
  return {
    type: "summary",
    ...totals(summary),
    elapsed_ms: Math.round(elapsedMs),
    exit_code: exitCode,
  };
}

/** The last line of a `--sync` run that was stopped. */
export function followSummaryJson(
  summary: FollowSummary,
  exitCode: number,
  elapsedMs: number,
): JsonEvent {
  return {
    type: "summary",
    appended_bytes: summary.appendedBytes,
    fetched_files: summary.fetchedFiles,
    fetched_bytes: summary.fetchedBytes,
    elapsed_ms: Math.round(elapsedMs),
    exit_code: exitCode,
  };
}

/** The last line of a run an error stopped: what the terminal line says, in `error`. */
export function errorSummaryJson(
  message: string,
  exitCode: number,
  elapsedMs: number,
): JsonEvent {
  return {
    type: "summary",
    elapsed_ms: Math.round(elapsedMs),
    exit_code: exitCode,
    error: message,
  };
}

/** The counts of the summary line, by the same names. */
function totals(summary: PullSummary): Record<string, number> {
  return {
    files: summary.files,
    bytes: summary.bytes,
    skipped: summary.skipped,
    failed: summary.failed,
    not_transferred: notTransferred(summary),
    deleted: summary.deleted ?? 0,
    resumed_bytes: summary.resumed ?? 0,
  };
}

function file(
  path: string,
  bytes: number,
  status: string,
  reason?: string,
): JsonEvent {
  return reason === undefined
    ? { type: "file", path, bytes, status }
    : { type: "file", path, bytes, status, reason };
}

function warning(message: string, path?: string): JsonEvent {
  return path === undefined
    ? { type: "warning", message }
    : { type: "warning", message, path };
}
