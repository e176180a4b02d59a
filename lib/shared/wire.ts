/** The v1 HTTP contract between hsyncd and hsync: paths, payloads and framing, shared so the two cannot drift. */

/** The API version served by `/v1/health` and spoken by the client. */
export const API_VERSION = 1;

/** Endpoint paths of the v1 interface (a public contract, DESIGN.md §5). */
export const API = {
  health: "/v1/health",
  stat: "/v1/stat",
  list: "/v1/list",
  file: "/v1/file",
  hash: "/v1/hash",
  bundle: "/v1/bundle",
  watch: "/v1/watch",
} as const;

/** Kinds of entry the server serves: nothing else ever leaves it. */
export type EntryType = "file" | "dir";

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
}

/**
 * One line of the NDJSON stream of `GET /v1/list?path=P`.
 * `path` is relative to `P`, `/`-separated, never empty, never starting with `/`.
 * A directory's line comes before the lines of anything inside it.
 */
export interface ListEntry extends StatEntry {
  path: string;
}

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

/** Request headers used by both sides. */
export const HEADER = {
  /** Signature header of key authentication (issue 4). */
  auth: "authorization",
} as const;
