/** The v1 HTTP contract between hsyncd and hsync: paths, payloads and framing, shared so the two cannot drift. */

/** The API version served by `/v1/health` and spoken by the client. */
export const API_VERSION = 1;

/**
 * Header on every answer of hsyncd, holding {@linkcode API_VERSION}: how
 * hsync tells hsyncd from another HTTP server on the same address.
 */
export const API_HEADER = "x-hsync-api";

/** Endpoint paths of the v1 interface (a public contract, DESIGN.md §5). */
export const API = {
  health: "/v1/health",
  stat: "/v1/stat",
  list: "/v1/list",
  file: "/v1/file",
  hash: "/v1/hash",
  bundle: "/v1/bundle",
  watch: "/v1/watch",
  /** Push: `GET` answers what the server holds of an upload, `PUT` writes one byte range of it. */
  upload: "/v1/upload",
  /** Push: verifies a complete upload and gives it its final name. */
  commit: "/v1/upload/commit",
  /** Push: many small files in one request (bundle frames, client to server). */
  uploadBundle: "/v1/upload/bundle",
  /** Push: creates a directory (and its missing parents), or sets a directory's time and mode. */
  mkdir: "/v1/mkdir",
  /** Where a sparse file's data is (`-S`): the rest reads as zeros. */
  extents: "/v1/extents",
  /** Push (`-l`): creates a symbolic link. */
  symlink: "/v1/symlink",
  /** Push (`-H`): gives a file the server already has one more name. */
  link: "/v1/link",
  /** Remote globs: the entries an absolute glob names, expanded through the jail. */
  glob: "/v1/glob",
  /** Push `--delete`: removes a file, a link or an empty directory. */
  delete: "/v1/delete",
  /** Push: the lease of a destination, one push at a time writing into it. */
  lock: "/v1/lock",
} as const;

/**
 * Kinds of entry the server serves: nothing else ever leaves it. A
 * `symlink` is listed only to a listing that asks for links (`links=1`);
 * otherwise a link is followed and listed as what it leads to.
 */
export type EntryType = "file" | "dir" | "symlink";

/** Body of `GET /v1/health`. */
export interface Health {
  name: "hsyncd";
  version: string;
  api: number;
  /** The server's host name. */
  host: string;
}

/** Body of `GET /v1/stat?path=P`: one entry. */
export interface StatEntry {
  type: EntryType;
  /** Size in bytes (0 for directories). */
  size: number;
  /** Modification time in whole milliseconds since the epoch. */
  mtime: number;
  /** Permission bits (`mode & 0o7777`). */
  mode: number;
  /** Identity tag (a strong ETag, quotes included) that changes when the file is replaced or rewritten. */
  etag: string;
  /**
   * A file with fewer bytes allocated on disk than its size (it has holes):
   * `GET /v1/extents` says where its data is. Told by `GET /v1/stat` and
   * by listings.
   */
  sparse?: boolean;
}

/**
 * One line of the NDJSON stream of `GET /v1/list?path=P`.
 * `path` is relative to `P`, `/`-separated, never empty, never starting with `/`.
 * A directory's line comes before the lines of anything inside it.
 */
export interface ListEntry extends StatEntry {
  path: string;
  /**
   * A `symlink`'s text, as `readlink` gives it. Listed only when the link
   * leads (through any further links) to an entry inside the served paths
   * that the rules allow; otherwise the link is an omission (`link`).
   */
  target?: string;
  /**
   * A file with more than one name, in a listing that asks for hard links
   * (`hardlinks=1`): every name of one file (one device and inode) has the
   * same tag, opaque to the client.
   */
  inode?: string;
}

/**
 * Why a listing left an entry out:
 * - `unreadable`: a directory (or entry) the server cannot read;
 * - `special`: not a regular file, directory or symbolic link (FIFO, socket, device);
 * - `link`: a symbolic link that leads outside the served paths, to a
 *   refused entry, nowhere (dangling) or round in a loop: its name is
 *   given, never where it leads;
 * - `name`: a name that is not valid UTF-8 (the runtime cannot open it);
 * - `withheld`: refused by the server's rules (`Forbidden_dir`,
 *   `Forbidden_file`): counted, never named.
 */
export type OmitReason =
  | "unreadable"
  | "special"
  | "link"
  | "name"
  | "withheld";

/**
 * A line of `GET /v1/list` for an entry the server did not list. It comes
 * where the entry's own line would have come (so a listing resumed after it
 * does not repeat it). `path` is relative to the listed directory, absent
 * for `withheld`; a `name` omission's path carries U+FFFD where the name's
 * bytes are not UTF-8.
 */
export interface ListOmission {
  omitted: OmitReason;
  path?: string;
  /** One sentence for a human (never the target of a link). */
  message: string;
}

/** One line of `GET /v1/list`: an entry, or an entry left out and why. */
export type ListLine = ListEntry | ListOmission;

/** Whether a listing line is an omission. */
export function isOmission(line: ListLine): line is ListOmission {
  return (line as ListOmission).omitted !== undefined;
}

/**
 * Body of `GET /v1/extents?path=P`: where a file's data is, half-open
 * `[start, end)`, sorted; every byte outside them is zero. Zero runs
 * shorter than {@linkcode MIN_HOLE_BYTES} count as data. `etag` is the
 * file's identity when it was read (a file fetched by these extents is
 * fetched with `If-Match` on it, as any range is).
 */
export interface Extents {
  size: number;
  etag: string;
  data: Array<[number, number]>;
}

/** Shortest zero run that is a hole (`-S`): 4 KiB blocks, runs of at least 32 KiB, aligned to 4 KiB. */
export const MIN_HOLE_BYTES = 32 * 1024;
/** Block size holes are aligned to. */
export const HOLE_BLOCK_BYTES = 4096;

/** Body of every error response. */
export interface ErrorBody {
  /** A short machine-readable code, e.g. `not_found`, `forbidden`, `bad_range`. */
  error: string;
  /** One sentence for a human. */
  message: string;
}

/** Body of `GET /v1/hash?path=P[&offset=O&length=L]`. */
export interface HashResult {
  /** Lower-case hex SHA-256 of the bytes hashed. */
  sha256: string;
  offset: number;
  length: number;
  /** Identity of the file that was hashed. */
  etag: string;
}

/** Request body of `POST /v1/bundle` (JSON). */
export interface BundleRequest {
  /** Absolute directory on the server the paths are relative to. */
  root: string;
  /** Paths relative to `root`, `/`-separated, as given by `list`. */
  paths: string[];
}

/**
 * Header of one frame in the `POST /v1/bundle` response body.
 *
 * Framing: each frame is a 4-byte big-endian unsigned header length `H`,
 * then `H` bytes of UTF-8 JSON (`BundleHeader`), then exactly `size` bytes of
 * file data (none when `error` is set). The last frame is `{"end": true}`.
 * A stream that ends without that frame is truncated and must not be trusted.
 */
export type BundleHeader =
  | { path: string; size: number; mtime: number; mode: number; etag: string }
  | { path: string; error: string; message: string }
  | { end: true };

/** Body of `GET /v1/watch?path=P&cursor=C`. */
export interface WatchResult {
  /** Cursor to send with the next poll. */
  cursor: string;
  /** Paths relative to `P` that changed since the cursor (empty after a timeout). */
  changed: string[];
  /** True when the server cannot say what changed (cursor too old): the client must rescan. */
  rescan: boolean;
}

/**
 * What identifies the local file an upload comes from (its device, inode,
 * size and modification time, as the client sees them): an upload resumed
 * with another identity starts over.
 */
export type SourceId = string;

/** Body of `GET /v1/upload?path=P`: what the server holds of an upload in progress. */
export interface UploadStatus {
  /** The size the upload was started with. */
  size: number;
  /** The identity of the source it was started with. */
  source: SourceId;
  /** Byte ranges on the server's disk (flushed), half-open `[start, end)`, sorted. */
  held: Array<[number, number]>;
  /**
   * In the answer to a PUT with `commit=1&mtime=T&mode=M[&preserve=1]` whose
   * range completed the upload: the commit's result (as
   * `POST /v1/upload/commit` answers), the file now under its final name.
   */
  committed?: CommitResult;
}

/**
 * Query of `PUT /v1/upload?path=P&size=S&source=ID[&restart=1]`, with
 * `Content-Range: bytes A-B/S` and exactly those bytes as the body. `restart`
 * drops what the server held (the source changed); `parents` makes a
 * missing directory of `P` first; `commit` with `mtime` and `mode` (and
 * `preserve`, as a commit's) commits the upload when this range completes
 * it. The answer is the `UploadStatus` after the range was written (with
 * `committed` when it was committed).
 */
export interface UploadQuery {
  path: string;
  size: number;
  source: SourceId;
  restart?: boolean;
  parents?: boolean;
  commit?: boolean;
  mtime?: number;
  mode?: number;
  preserve?: boolean;
}

/** Request body of `POST /v1/upload/commit?path=P` (JSON). */
export interface CommitRequest {
  size: number;
  source: SourceId;
  /** Modification time to set, whole milliseconds since the epoch. */
  mtime: number;
  /** Permission bits to set (masked by the server: no special bits, at most its umask unless `preserve`). */
  mode: number;
  /** Keep `mode` as it is (`-P`), special bits still stripped. */
  preserve?: boolean;
  /** With `--verify`: the SHA-256 the committed file must have; it is refused (and dropped) otherwise. */
  sha256?: string;
  /**
   * `-S`: ranges the client never sends because they are zeros. They count
   * as held; the file is extended to `size` and they stay holes.
   */
  holes?: Array<[number, number]>;
}

/**
 * One directory of a `POST /v1/mkdir` whose body is a JSON array of them
 * (no `path` in the query; the end of a push): every one is made with its
 * missing parents first, then each is given `mtime` and `mode` (making a
 * directory changes its parent's time, setting one changes nothing else).
 * With `narrow`, `mode` only takes bits away from the directory's own (a
 * directory the push made keeps no bit the server's umask took from it).
 */
export interface DirRequest {
  /** Absolute, as `path` in the query of the one-directory form. */
  path: string;
  mtime?: number;
  mode?: number;
  narrow?: boolean;
}

/** Most directories in one `POST /v1/mkdir` array. */
export const MKDIR_MAX_DIRS = 1000;

/** One directory's outcome in the answer to a `POST /v1/mkdir` array, in order. */
export type DirResult =
  | ({ path: string } & StatEntry)
  | { path: string; error: string; message: string };

/**
 * Request body of `POST /v1/symlink?path=P` (JSON, `-l`): creates the
 * symbolic link `P` (replacing a file or link there, never a directory)
 * with this text. The server refuses (403 `unsafe_link`) a target that is
 * absolute or leads outside the `Writable_path` it is created in.
 */
export interface SymlinkRequest {
  target: string;
  /** The link's own modification time (whole ms since the epoch, {@linkcode linkTimeSettable}); without it, the server's now. */
  mtime?: number;
}

/**
 * Whether a link can be given its own time `ms` (whole ms since the epoch):
 * node's `lutimes`, which both sides set it with, takes a time before 1970
 * as now. A link with such a time is made with the time it gets, and its
 * time is not compared (it would differ on every run).
 */
export function linkTimeSettable(ms: number): boolean {
  return ms >= 0;
}

/**
 * Request body of `POST /v1/link?path=P` (JSON, `-H`): gives the regular
 * file at `existing` (absolute, below the same `Writable_path`, pushed in
 * this run) the name `P` too (replacing a file or link there).
 */
export interface LinkRequest {
  existing: string;
}

/** Body of a successful commit: the file as it now is on the server. */
export interface CommitResult extends StatEntry {
  /** SHA-256 of the committed file, when it was asked to verify. */
  sha256?: string;
}

/**
 * Header of one frame of a `POST /v1/upload/bundle?root=R` request body:
 * the same framing as a bundle response (4-byte length, JSON header, then
 * exactly `size` bytes), `path` relative to `R`; the last frame is
 * `{"end": true}`. The answer is a JSON array of `UploadBundleResult`, one
 * per file, in order. With `parents=1` in the query, a file's missing
 * directories are made first (as `POST /v1/mkdir` makes them).
 */
export type UploadBundleHeader =
  | {
    path: string;
    size: number;
    mtime: number;
    mode: number;
    preserve?: boolean;
  }
  | { end: true };

/** One file's outcome in a `POST /v1/upload/bundle` answer. */
export type UploadBundleResult =
  | ({ path: string } & StatEntry)
  | { path: string; error: string; message: string };

/** Clock difference between client and server a signature's timestamp may have (hsyncd's default; lib/shared/auth.ts). */
export const DEFAULT_SKEW_MS = 5 * 60 * 1000;

/** Header carrying the hex SHA-256 of a signed request's body (`bodyDigest` in auth.ts), so the server checks the signature before reading the body. */
export const BODY_DIGEST_HEADER = "x-hsync-content-sha256";

/** Request headers used by both sides. */
export const HEADER = {
  /** Signature header of key authentication (issue 4). */
  auth: "authorization",
  /** Names the hsync run a push request belongs to (random, one per run): two runs never write one file at once. */
  uploadSession: "x-hsync-upload-session",
  /**
   * On a push's requests beside the session (its lease's token): this run
   * of the push (32 hex digits, random), whose requests hsyncd counts as
   * they complete for the `after=N` of its last ones.
   */
  pushRun: "x-hsync-push-run",
  /** On a 503 `busy`: the limit that refused the request (the client waits for it, `Retry-After` at a time). */
  limit: "x-hsync-limit",
} as const;

/**
 * One line of the NDJSON answer of `GET /v1/glob?pattern=G` (`G` absolute,
 * `/`-separated): an entry whose absolute path matches `G`, as `stat` would
 * describe it (links followed, as a listing without `links=1`). Components
 * of `G` are matched one directory level each with `*`, `?`, `[...]` (a
 * leading `.` only by a pattern that starts with `.`, as a shell does); a
 * `**` component matches any number of levels (none included). Entries the
 * jail refuses are absent, as they are from a listing; the lines are sorted
 * by path. A pattern without any of `*?[` names one entry (404 when it is
 * not there). At most `maxEntries` lines (`--max-entries`): 413
 * `too_many_matches` beyond.
 */
export interface GlobMatch extends StatEntry {
  /** The absolute path on the server. */
  path: string;
}

/** Whether `text` holds a glob character (`*`, `?` or `[`): a path with none names one entry ({@linkcode GlobMatch}). */
export function hasGlob(text: string): boolean {
  return /[*?[]/.test(text);
}

/**
 * Answer of `POST /v1/delete?path=P` (push `--delete`, below
 * `Writable_path`, signed when the server has keys, as every write): `P`,
 * a file, a symbolic link (removed, never followed) or an empty directory,
 * is gone. 404 when it is not there, 409 `not_empty` for a directory that
 * still holds entries (the client deletes deepest first).
 */
export interface DeleteResult {
  path: string;
  type: EntryType;
}

/**
 * Answer of `POST /v1/lock?path=DIR[&token=T][&release=1]` (push): the lease
 * of the destination `DIR` (absolute, below `Writable_path`, resolved as the
 * jail resolves writes; it need not exist yet), held by one push at a time.
 * Without `token` it is taken; with it renewed (or taken again when it
 * lapsed and nobody else took it); with `release=1` ended (`expires_ms` 0).
 * 409 `locked` while another token holds `DIR`, a directory inside it or
 * one it is inside. A lease not renewed within `expires_ms` lapses: a
 * killed client never blocks a destination for long.
 *
 * With `name=NAME` (one path component), the lease is of `DIR/NAME` when
 * `DIR` is a directory, and the answer says which (`path`): a push of one
 * file asks its lease with the destination's stat, not after it.
 *
 * `release=1&after=N&run=R` releases it only once `N` requests of run `R`
 * of the push (those carrying its token as `x-hsync-upload-session` and `R`
 * as `x-hsync-push-run`) have completed, none answered 400 or more; it waits
 * for them (renewing the lease meanwhile) up to the lease's length, else
 * answers 409 `incomplete` and keeps the lease. The array form of
 * `POST /v1/mkdir` takes the same `after=N` (its token and run from its own
 * headers). A push sends them with its last bundles still in flight.
 */
export interface LockLease {
  /** Names the holder: sent with every renewal and the release. */
  token: string;
  /** Milliseconds from now until the lease lapses unless renewed. */
  expires_ms: number;
  /** The server takes `after=N` (above): absent from an older hsyncd, which would not wait. */
  after?: boolean;
  /**
   * Asked with `name=NAME`: the path leased, `DIR/NAME` when `DIR` is a
   * directory (where one file named NAME pushed to `DIR` goes), else `DIR`
   * (normalized). Absent from an older hsyncd, which leased `DIR`.
   */
  path?: string;
  /**
   * Asked with `stat=1` when the lease is taken: the entry at the path once
   * leased, as `GET /v1/stat` gives it (null: nothing there). Absent when
   * the server cannot say (the client asks `/v1/stat` then).
   */
  entry?: StatEntry | null;
  /**
   * Asked with `stat=1` too, when the path is not a directory: what the
   * server holds of an upload to it, as `GET /v1/upload` gives it (null:
   * nothing), saving a push of one file that round trip. Absent when the
   * server cannot say.
   */
  upload?: UploadStatus | null;
}
