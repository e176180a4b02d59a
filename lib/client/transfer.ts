/** The vocabulary the pieces of one pull share: a file job, the events a pull reports, and the context every piece is given. */
import type { ClientSettings } from "../shared/config.ts";
import type { TokenBucket } from "./bandwidth.ts";
import type { RemoteIdentity } from "../shared/journal.ts";
import type { Remote } from "./remote.ts";
import type { Backoff } from "./retry.ts";
import type { Scheduler } from "./scheduler.ts";

/** What hashing is for, as the progress bar names it: `checking` (`--checksum`, before sending) or `verifying` (`--verify`, after). */
export type HashPhase = "checking" | "verifying";

/** What the engine reports while it runs (fed to a progress reporter). */
export type PullEvent =
  /** Files and bytes planned for transfer so far (skipped files excluded); `final` once the listing is complete. */
  | { type: "total"; files: number; bytes: number; final: boolean }
  /**
   * Bytes written to disk since the last event (negative when a changed file
   * starts over or bytes failed verification); `resumed` marks bytes found on
   * disk from an interrupted earlier pull, `holes` a file's holes with `-S`
   * (neither sent nor written, done all the same): neither is a transfer rate.
   */
  | { type: "progress"; bytes: number; resumed?: boolean; holes?: boolean }
  /**
   * Hashing that moves no data: `checking` (`--checksum` comparing a file
   * with the server's copy) or `verifying` (`--verify` comparing what
   * arrived); `total` adds bytes to hash, `bytes` were hashed since.
   */
  | {
    type: "hashing";
    phase: HashPhase;
    bytes: number;
    total?: number;
  }
  /** A file was completed and renamed into place. */
  | { type: "done"; path: string; bytes: number }
  /** A file was identical and left alone. */
  | { type: "skip"; path: string; bytes: number }
  /** Something the user should know that is not a failure. */
  | { type: "warning"; path?: string; message: string }
  /** A file failed; the rest goes on. */
  | { type: "failure"; path: string; message: string }
  /**
   * An entry the user asked for that is not transferred and is not a
   * failure of the transfer: left out by the sending side (unreadable,
   * special, a link that leads outside, a name the runtime cannot open,
   * withheld by the server's rules: then without `path`) or refused by the
   * receiving side (an unsafe link). Counted; the run exits 2.
   */
  | { type: "omitted"; path?: string; message: string }
  /**
   * `--dry-run`: what the run would do with one entry (nothing is written):
   * transfer it (`bytes` to send), skip it as identical, or delete it.
   */
  | {
    type: "plan";
    action: "transfer" | "skip" | "delete";
    path: string;
    bytes: number;
  }
  /** `--delete`: an entry the source does not have was deleted. */
  | { type: "deleted"; path: string };

/** What a pull did. */
export interface PullSummary {
  /** Files completed (written and renamed into place). */
  files: number;
  /** Bytes of the completed files. */
  bytes: number;
  seconds: number;
  skipped: number;
  failed: number;
  failures: Array<{ path: string; message: string }>;
  /** Entries not transferred that are not failures (see the `omitted` event): named ones, in order. */
  omissions?: Array<{ path: string; message: string }>;
  /** Entries the server's rules withheld (never named). */
  withheld?: number;
  /** `--delete`: entries deleted because the source does not have them. */
  deleted?: number;
  /** Bytes found on disk from interrupted earlier pulls (not fetched again). */
  resumed?: number;
}

/** A summary of a run that has done nothing yet. */
export function emptySummary(): PullSummary {
  return {
    files: 0,
    bytes: 0,
    seconds: 0,
    skipped: 0,
    failed: 0,
    failures: [],
    resumed: 0,
  };
}

/** One remote file to fetch, and where it goes. */
export interface FileJob {
  /** Path relative to the pulled root (for messages and filters). */
  rel: string;
  /** Absolute path on the server. */
  remote: string;
  /** Final local path. */
  target: string;
  size: number;
  mtime: number;
  mode: number;
  etag: string;
}

/** The remote identity a job's journal is made for. */
export function identityOf(job: FileJob): RemoteIdentity {
  return { size: job.size, mtime: job.mtime, etag: job.etag };
}

/** The remote file changed under us (200 to a ranged request, 416, other size, other ETag): start it over. */
export class FileChanged extends Error {
  constructor(path: string) {
    super(`File "${path}" changed on the server`);
    this.name = "FileChanged";
  }
}

/** What every piece of one pull is given: the server, the limits, the stop signal, and where its outcomes go. */
export interface PullContext {
  readonly remote: Remote;
  readonly settings: ClientSettings;
  readonly limits: Scheduler;
  /** The caller's signal, or a stop of the whole run. */
  readonly signal: AbortSignal;
  readonly backoff: Backoff;
  /** Targets being written now: a second entry for one of them is refused. */
  readonly targets: Set<string>;
  /**
   * The permission bits to give a file or directory this run creates: the
   * server's, without the unsafe bits unless asked, masked by the local
   * umask unless `preserve`.
   */
  modeOf(entry: { mode: number }): number;
  /**
   * Loads what setting a mode takes (node's fs, lib/shared/part_file.ts's
   * `readyToSetModes`) once a listed file or directory is to get another
   * mode than the one it is made with (or any, with `preserve`: a file
   * left alone may get its mode); undefined when there is nothing to wait
   * for. The planner asks it of every entry before anything is done for it.
   */
  readyForMode(
    entry: { mode: number; type: string },
  ): Promise<void> | undefined;
  emit(event: PullEvent): void;
  /** A file was placed: counted and told. */
  placed(job: FileJob): void;
  /** A file was identical and left alone: counted and told. */
  skipped(job: FileJob): void;
  /** A file (or the listing) failed: counted and told; the rest goes on. */
  fail(path: string, message: string): void;
}

/** What a pull and a push take alike beyond their endpoints: selection, mirroring and what a faithful copy keeps. */
export interface TreeOptions {
  settings: ClientSettings;
  /** Files sent or fetched in ranges at once (`-n`; see `Scheduler`). */
  parallelFiles: number;
  /** scp's rule for directories too: an existing destination directory gets a copied directory inside it. */
  scpPlacement?: boolean;
  /** Globs on the path relative to the tree (a pattern without `/` matches the name at any depth). */
  include?: string[];
  /** Globs on the relative path; an excluded directory excludes everything below it. */
  exclude?: string[];
  /** `--include-regex`/`--exclude-regex`: regular expressions searched in the relative path. */
  includeRegex?: string[];
  excludeRegex?: string[];
  /** `--files-from` (read by the caller): only these relative paths. */
  filesFrom?: string[];
  /**
   * `--delete`: after a transfer with no failure and nothing left out, delete
   * what the destination has below its root and the source does not (never
   * what the filters leave out, never through a link), as `deleted` events.
   */
  deleteExtra?: boolean;
  /** With `deleteExtra`: more than this many deletions means none (a failure, exit 2). */
  maxDelete?: number;
  /** `--dry-run`: list and compare, emit a `plan` event per entry, write nothing. */
  dryRun?: boolean;
  /** `-l`: symbolic links are copied as links (a listing with `links=1`); without it they are followed. */
  links?: boolean;
  /** `-H`: names of one file stay names of one file. */
  hardLinks?: boolean;
  /** `-S`: long zero runs are neither sent nor written (they stay holes). */
  sparse?: boolean;
  /** With `links`: links whose target is absolute or leaves the copy are created too (else each is an omission). */
  unsafeLinks?: boolean;
  /** `--bwlimit`: the one bucket every body of the run passes through. */
  bandwidth?: TokenBucket;
}
