/** `hsync --sync`: the command-line side of following a remote file or tree (messages on stderr, signals, state file, exit code). */
import { createHash } from "node:crypto";
import { join, resolve } from "node:path";
import { type PullCommand, transferOptions } from "./client_args.ts";
import type { ClientSettings } from "../shared/config.ts";
import { EXIT } from "../shared/errors.ts";
import { follow, type FollowEvent, type FollowSummary } from "./follow.ts";
import {
  createReporter,
  formatBytes,
  formatSummary,
  type Reporter,
} from "./progress.ts";
import type { Transport } from "./transport.ts";
import { printable } from "./printable.ts";

/** Seconds between two "appended" activity lines while following. */
const ACTIVITY_EVERY_MS = 10_000;

const encoder = new TextEncoder();

function writeErr(text: string): void {
  Deno.stderr.writeSync(encoder.encode(text));
}

/**
 * The state file of one follower, under `$HSYNC_DIR/follow/`, named after
 * what it follows (server, remote path, local destination).
 */
export function followStatePath(
  hsyncDir: string,
  baseUrl: string,
  remotePath: string,
  localPath: string,
): string {
  const local = resolve(localPath) + (localPath.endsWith("/") ? "/" : "");
  const key = createHash("sha256").update(
    `${baseUrl}\n${remotePath}\n${local}`,
  ).digest("hex").slice(0, 24);
  return join(hsyncDir, "follow", `${key}.json`);
}

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

/** Runs `--sync` until SIGINT/SIGTERM (exit 0) or until the server stays unreachable (throws `ConnectError`, exit 3). */
export async function runFollow(
  cmd: PullCommand,
  settings: ClientSettings,
  baseUrl: string,
  transport: Transport,
  hsyncDir?: string,
): Promise<number> {
  const host = new URL(baseUrl).host;
  const controller = new AbortController();
  const onSignal = () => {
    if (controller.signal.aborted) return;
    writeErr("\nhsync: stopping: finishing the write in progress\n");
    controller.abort();
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);

  const say = (line: string) => writeErr(`hsync: ${printable(line)}\n`);
  let reporter: Reporter | undefined = await createReporter({
    quiet: cmd.quiet,
    isTerminal: Deno.stderr.isTerminal(),
    write: writeErr,
  });
  let appended = 0;
  const touched = new Set<string>();
  const activity = setInterval(() => {
    if (appended === 0) return;
    if (!cmd.quiet) {
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

  // Told even with --quiet: the user must know when a file was fetched again or the server is gone.
  const loud = new Set([
    "reconnecting",
    "reconnected",
    "waiting",
    "warning",
    "failure",
  ]);
  const onEvent = (event: FollowEvent) => {
    switch (event.type) {
      case "pull":
        reporter?.onEvent(event.event);
        return;
      case "pulled":
        reporter?.stop();
        reporter = undefined;
        for (const f of event.summary.failures) {
          say(`failed: ${f.path}: ${f.message} (tried again while following)`);
        }
        writeErr(`${formatSummary(event.summary)}\n`);
        return;
      case "appended":
        appended += event.bytes;
        touched.add(event.path);
        if (cmd.debug) {
          say(`+${event.bytes} bytes to ${event.path} (now ${event.size})`);
        }
        return;
    }
    const line = describeFollowEvent(event, host);
    if (line === undefined) return;
    const refetched = event.type === "fetched" && event.reason !== "new" &&
      event.reason !== "missing";
    if (cmd.quiet && !loud.has(event.type) && !refetched) return;
    say(line);
  };

  try {
    const summary = await follow({
      baseUrl,
      ...transferOptions(cmd),
      settings,
      fromNow: cmd.fromNow,
      stateFile: hsyncDir === undefined
        ? undefined
        : followStatePath(hsyncDir, baseUrl, cmd.remotePath, cmd.localPath),
      signal: controller.signal,
      onEvent,
      client: transport.client,
      sign: transport.sign,
    });
    writeErr(`${formatFollowSummary(summary)}\n`);
    return EXIT.ok;
  } finally {
    reporter?.stop();
    clearInterval(activity);
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}
