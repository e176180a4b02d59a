/** What `hsync --sync` tells the user while it follows: the first pull's progress, one line per event worth telling, a periodic activity line, and the last line. */
import type { FollowEvent, FollowSummary } from "./follow_events.ts";
import { printable } from "./printable.ts";
import {
  createReporter,
  formatBytes,
  formatSummary,
  type Reporter,
  type ReporterOptions,
} from "./progress.ts";

/** Milliseconds between two "appended" activity lines while following. */
const ACTIVITY_EVERY_MS = 10_000;

/** Events told even with `--quiet`: the user must know when the server is gone or a file failed. */
const LOUD = new Set<FollowEvent["type"]>([
  "reconnecting",
  "reconnected",
  "waiting",
  "warning",
  "failure",
]);

/** One line for the user per follower event worth telling (undefined for the others). */
export function describeFollowEvent(
  event: FollowEvent,
  host: string,
): string | undefined {
  switch (event.type) {
    case "following": {
      const what = event.fromNow
        ? "only data written from now on"
        : event.resumed
        ? "continuing where the last run stopped"
        : `${event.files} file(s)`;
      return `following into ${
        JSON.stringify(event.local)
      } (${what}); Ctrl-C stops`;
    }
    case "fetched": {
      const size = formatBytes(event.bytes);
      switch (event.reason) {
        case "new":
          return `new file ${event.path} (${size})`;
        case "missing":
          return `fetched ${event.path} (${size})`;
        case "rewritten":
          return `${event.path} was rewritten on the server: fetched it again whole (${size})`;
        case "replaced":
          return `${event.path} was replaced on the server (rotated?): fetched it again whole (${size})`;
        case "truncated":
          return `${event.path} got shorter on the server: fetched it again whole (${size})`;
      }
      return undefined;
    }
    case "dir":
      return `new directory ${event.path}`;
    case "reconnecting":
      return `cannot reach ${host}: ${event.message}; retry ${event.attempt} of ${event.max} in ${
        (event.delayMs / 1000).toFixed(1)
      } s`;
    case "reconnected":
      return `reconnected to ${host}`;
    case "waiting":
      return event.message;
    case "warning":
      return `warning: ${
        event.path === undefined ? "" : `${event.path}: `
      }${event.message}`;
    case "failure":
      return `failed: ${event.path}: ${event.message} (tried again on its next change)`;
    default:
      return undefined;
  }
}

/** The last line of a follower run. */
export function formatFollowSummary(s: FollowSummary): string {
  return `hsync: stopped following after ${s.seconds.toFixed(1)} s: ${
    formatBytes(s.appendedBytes)
  } appended, ${s.fetchedFiles} file(s) fetched whole (${
    formatBytes(s.fetchedBytes)
  })`;
}

/** Options of {@linkcode createFollowReporter}. */
export interface FollowReporterOptions {
  /** Output (stderr in hsync); lib/ never writes to the terminal itself. */
  write: (text: string) => void;
  /** Draw a live bar for the first pull (true) or print plain lines (false). */
  isTerminal: boolean;
  /** Only what the user must know (reconnects, warnings, failures, files fetched again). */
  quiet: boolean;
  /** Also one line per append. */
  debug: boolean;
  /** `host:port` of the server, for messages. */
  host: string;
  /** Width of the terminal for the first pull's bar (see `ReporterOptions`). */
  columns?: ReporterOptions["columns"];
}

/** Receives follower events; `stop()` ends the bar and the activity timer. */
export interface FollowReporter {
  /** Tells one event (or counts it for the activity line). */
  onEvent(event: FollowEvent): void;
  /** Ends the first pull's bar and the activity timer (calling it twice is harmless). */
  stop(): void;
}

/** Creates the reporter of one follower run. */
export async function createFollowReporter(
  options: FollowReporterOptions,
): Promise<FollowReporter> {
  const { write, quiet, debug, host } = options;
  const say = (line: string) => write(`hsync: ${printable(line)}\n`);
  let pulling: Reporter | undefined = await createReporter({
    quiet,
    isTerminal: options.isTerminal,
    columns: options.columns,
    write,
  });
  let appended = 0;
  const touched = new Set<string>();
  const activity = setInterval(() => {
    if (appended === 0) return;
    if (!quiet) {
      say(
        `+${
          formatBytes(appended)
        } appended to ${touched.size} file(s) in the last ${
          ACTIVITY_EVERY_MS / 1000
        } s`,
      );
    }
    appended = 0;
    touched.clear();
  }, ACTIVITY_EVERY_MS);
  return {
    onEvent(event) {
      switch (event.type) {
        case "pull":
          pulling?.onEvent(event.event);
          return;
        case "pulled":
          pulling?.stop();
          pulling = undefined;
          // Each failure was printed as it happened.
          if (event.summary.failed > 0) {
            say(
              `${event.summary.failed} failed in the first pull (tried again while following)`,
            );
          }
          if (!quiet) write(`${formatSummary(event.summary)}\n`);
          return;
        case "appended":
          appended += event.bytes;
          touched.add(event.path);
          if (debug) {
            say(`+${event.bytes} bytes to ${event.path} (now ${event.size})`);
          }
          return;
      }
      const line = describeFollowEvent(event, host);
      if (line === undefined) return;
      const refetched = event.type === "fetched" && event.reason !== "new" &&
        event.reason !== "missing";
      if (quiet && !LOUD.has(event.type) && !refetched) return;
      say(line);
    },
    stop() {
      pulling?.stop();
      clearInterval(activity);
    },
  };
}
