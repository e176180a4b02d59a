/** What a follower reports while it runs, and what it did. */
import type { FetchReason } from "./follow_file.ts";
import type { PullEvent, PullSummary } from "./transfer.ts";

/** What the follower reports while it runs. */
export type FollowEvent =
  /** Progress of the first pull (the normal engine). */
  | { type: "pull"; event: PullEvent }
  /** The first pull finished. */
  | { type: "pulled"; summary: PullSummary }
  /** Following starts (after the first pull or the resumed check). */
  | {
    type: "following";
    local: string;
    files: number;
    resumed: boolean;
    fromNow: boolean;
  }
  /** New bytes were appended to a local file. */
  | { type: "appended"; path: string; bytes: number; size: number }
  /** A file was fetched whole. */
  | { type: "fetched"; path: string; bytes: number; reason: FetchReason }
  /** A directory appeared. */
  | { type: "dir"; path: string }
  /** The server could not be reached; the next attempt is in `delayMs`. */
  | {
    type: "reconnecting";
    attempt: number;
    max: number;
    delayMs: number;
    message: string;
  }
  /** The server answers again after `reconnecting`. */
  | { type: "reconnected" }
  /** The followed path is gone from the server; the follower waits for it to come back. */
  | { type: "waiting"; message: string }
  /** Something the user should know that is not a failure. */
  | { type: "warning"; path?: string; message: string }
  /** One file could not be synchronised (it is tried again on its next change). */
  | { type: "failure"; path: string; message: string };

/** What a follower did, returned when it is stopped. */
export interface FollowSummary {
  /** Bytes appended to local files (first pull excluded). */
  appendedBytes: number;
  /** Files fetched whole while following (first pull excluded). */
  fetchedFiles: number;
  fetchedBytes: number;
  seconds: number;
}
