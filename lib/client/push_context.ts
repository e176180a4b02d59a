/** The vocabulary the pieces of one push share: a file to send, the local identity that names its upload, and the context every piece is given. */
import type { PushOpening } from "./push_opening.ts";
import type { FileId } from "../shared/checked_open.ts";
import type { ClientSettings } from "../shared/config.ts";
import { ConnectError, HttpError, reason } from "../shared/errors.ts";
import { identityTag } from "../shared/file_identity.ts";
import type { SourceId } from "../shared/wire.ts";
import { walkedOf } from "./local_read.ts";
import type { Remote } from "./remote.ts";
import type { HeldUpload, PushRemote } from "./remote_push.ts";
import type { Backoff } from "./retry.ts";
import type { Scheduler } from "./scheduler.ts";
import type { PullEvent, TreeOptions } from "./transfer.ts";

/** One local regular file to send, and where it goes. */
export interface SendJob {
  /** The file in messages: its path from the pushed source's parent (`run42/a/b.bin`). */
  label: string;
  /** Absolute local path (never a symbolic link). */
  local: string;
  /** Absolute path on the server. */
  remote: string;
  /** The server directory a bundle of this file is relative to. */
  root: string;
  /** The path below `root` (the shared relative-path rule). */
  under: string;
  size: number;
  /** Modification time in whole milliseconds. */
  mtime: number;
  /** Permission bits. */
  mode: number;
  /** When its inode last changed (ctime, ms; 0 when unknown). */
  changedMs: number;
  /** The inode every read must come from. */
  id: FileId;
  /** `-S` and the file has holes (fewer blocks than bytes): only its data is sent. */
  sparse?: boolean;
  /**
   * What the server holds of its upload, known without asking (null:
   * nothing, as in a directory this push made); undefined: asked for. Used
   * by the first round only.
   */
  held?: HeldUpload | null;
}

/**
 * The identity of a local file as sent to the server (`dev-ino-size-mtime-ctime`
 * in hex): another inode, another size, or any write (mtime, and ctime for a
 * write whose mtime was set back) gives another one.
 */
export function sourceIdOf(info: Deno.FileInfo): SourceId {
  return sourceOf(walkedOf(info));
}

/** {@linkcode sourceIdOf} of the file as `job` describes it. */
export function sourceOf(
  job: Pick<SendJob, "id" | "size" | "mtime" | "changedMs">,
): SourceId {
  // Asked only of files sent in ranges: a bundled file is never named so.
  return identityTag(
    job.id.dev,
    Math.max(0, job.id.ino),
    job.size,
    job.mtime,
    job.changedMs,
  );
}

/** Fills `job`'s size, times, mode and identity from a fresh `lstat` of its file. */
export function describeLocal(
  job: Pick<
    SendJob,
    "size" | "mtime" | "mode" | "changedMs" | "id"
  >,
  info: Deno.FileInfo,
): void {
  const walked = walkedOf(info);
  job.size = walked.size;
  job.changedMs = walked.changedMs;
  job.mtime = walked.mtime;
  job.mode = (info.mode ?? 0o644) & 0o7777;
  job.id = walked.id;
}

/** The local file changed (or went away) while it was being sent: never committed as it is. */
export class LocalChanged extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LocalChanged";
  }
}

/**
 * The {@linkcode LocalChanged} behind an error, if any: fetch reports a
 * request body that failed as a `TypeError` (then a `ConnectError`) whose
 * cause chain holds the body's own error.
 */
export function localChangeIn(error: unknown): LocalChanged | undefined {
  for (let e = error, i = 0; e instanceof Error && i < 6; i++) {
    if (e instanceof LocalChanged) return e;
    e = e.cause;
  }
  return undefined;
}

/** Throws {@linkcode LocalChanged} when the local file is not the one being sent any more. */
export function checkUnchanged(job: SendJob): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(job.local);
  } catch {
    throw new LocalChanged(`"${job.label}" was removed while it was sent`);
  }
  const now = { ...job };
  describeLocal(now, info);
  if (!info.isFile || sourceOf(now) !== sourceOf(job)) {
    throw new LocalChanged(`"${job.label}" changed while it was sent`);
  }
}

/** Takes the file `changed` told of as it is now (told once per change), for a new round of sending it. */
export function takeAsItIsNow(
  ctx: PushContext,
  job: SendJob,
  changed: LocalChanged,
): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(job.local);
  } catch (error) {
    throw new Error(
      `Cannot read ${JSON.stringify(job.local)}: ${reason(error)}`,
    );
  }
  if (!info.isFile) {
    throw new Error(
      `Cannot read ${
        JSON.stringify(job.local)
      }: it is no longer a regular file`,
    );
  }
  const before = job.size;
  describeLocal(job, info);
  ctx.emit({
    type: "warning",
    path: job.label,
    message: `${changed.message}: starting over`,
  });
  ctx.addTotal(0, job.size - before);
}

/** What every piece of one push is given: the server, the limits, the stop signal, and where its outcomes go. */
export interface PushContext {
  readonly remote: Remote;
  readonly push: PushRemote;
  readonly settings: ClientSettings;
  readonly limits: Scheduler;
  /** The caller's signal, or a stop of the whole run. */
  readonly signal: AbortSignal;
  readonly backoff: Backoff;
  /** `-P`: the server keeps the permission bits as sent (special bits always stripped). */
  readonly preserve: boolean;
  /** `--verify`: every file is committed only when the server's SHA-256 is the local one. */
  readonly verify: boolean;
  /** `--dry-run`: compared and told as `plan` events; nothing is written. */
  readonly dryRun: boolean;
  emit(event: PullEvent): void;
  /** More (or, negative, fewer) files and bytes to send than planned: a file that changed size. */
  addTotal(files: number, bytes: number): void;
  /** A file is on the server under its final name: counted and told. */
  sent(job: SendJob): void;
  /** A file was identical and left alone: counted and told. */
  skipped(label: string, bytes: number): void;
  /** A file failed: counted and told; the rest goes on. */
  fail(label: string, message: string): void;
  /** An entry not sent that is not a failure of the transfer (a FIFO, an unreadable directory, an unsafe link): counted and told. */
  omit(label: string, message: string): void;
  /** A symbolic or hard link was made on the server: counted (no bytes) and told. */
  linked(label: string): void;
  /** Stops the whole run: the server refuses this client's writes (exit code 3). */
  stopRun(error: ConnectError): void;
}

/**
 * The run-stopping error of a refusal that concerns every write of this
 * client, or undefined for anything that concerns one file: 401 (the key is
 * not accepted), 403 `read_only` or `not_writable` (the server, or that
 * part of it, accepts no writes).
 */
export function writeRefusal(
  error: unknown,
  host: string,
): ConnectError | undefined {
  if (!(error instanceof HttpError)) return undefined;
  if (error.status === 401) {
    return new ConnectError(
      `Not authenticated by ${host} for writing: ${error.message}`,
      { status: 401, cause: error },
    );
  }
  if (
    error.status === 403 &&
    (error.code === "read_only" || error.code === "not_writable")
  ) {
    return new ConnectError(`Refused by ${host}: ${error.message}`, {
      status: 403,
      cause: error,
    });
  }
  return undefined;
}

/** The server's disk is full (507): trying again at once cannot help; the file fails and what the server holds stays. */
export function isDiskFull(error: unknown): boolean {
  return error instanceof HttpError && error.status === 507;
}

/** Options of `push` (lib/client/push.ts). */
export interface PushOptions extends TreeOptions {
  /** `http://127.0.0.1:10808`. */
  baseUrl: string;
  /** Local files and directories to send. */
  sources: string[];
  /**
   * Absolute path on the server. Ending in `/`, with several sources, or an
   * existing directory that gets a file: each source goes inside it under
   * its own name. Otherwise the source is copied to this path itself (a
   * directory created or merged into), unless `scpPlacement` puts a
   * directory inside an existing remote directory, as scp does.
   */
  remotePath: string;
  /** `-P`: the server keeps the permission bits (never setuid, setgid, sticky). */
  preserve?: boolean;
  /** Commit each file only when the server's SHA-256 of it is the local one. */
  verify?: boolean;
  /** Decide "identical, skip" by SHA-256 instead of size + mtime. */
  checksum?: boolean;
  /** Most entries accepted from a listing of the destination. */
  maxEntries?: number;
  onEvent?: (event: PullEvent) => void;
  /** Stops cleanly when aborted; what the server holds stays for a rerun. */
  signal?: AbortSignal;
  client?: Deno.HttpClient;
  /** CA_file's certificates (PEM), for the PUTs that do not go through fetch. */
  caCerts?: string[];
  /** Called on every request before it is sent. */
  sign?: (request: Request) => Promise<void> | void;
  /** First retry delay in milliseconds (default 250). */
  retryBaseMs?: number;
  /** Longest wait for a path another push is writing (milliseconds). */
  busyWaitMs?: number;
  /** Most bytes per PUT (tests make it small). */
  putMaxBytes?: number;
  /** How long ago a file must have last changed for its last PUT to commit it (milliseconds; default 2 s). */
  settledMs?: number;
  /** The session name of this run (default: random). */
  session?: string;
  /** Another push holding the destination stops this run (`DestinationBusy`) instead of making it wait. */
  noWait?: boolean;
  /** Called once when this run waits for another push's lease (`HOST:DIR`). */
  onLockWait?: (dest: string, pid: number | undefined) => void;
  /** Where the tokens of this run's leases are kept while it runs (`$HSYNC_DIR/leases`; lib/client/lease_record.ts); none when undefined. */
  leaseRecords?: string;
  /**
   * The first requests of this push, sent already (by the command line,
   * before it loaded the engine) for these very options; else the run sends
   * them.
   */
  opening?: PushOpening;
}
