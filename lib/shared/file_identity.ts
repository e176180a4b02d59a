/** Identity tags (strong ETags) and times of served entries, derived from their file-system metadata. */

/** Modification time in whole milliseconds since the epoch (0 when the platform does not report it). */
export function mtimeMs(info: Deno.FileInfo): number {
  return info.mtime === null ? 0 : Math.floor(info.mtime.getTime());
}

/**
 * A strong, quoted ETag for an entry: device, inode, size, mtime and ctime.
 * Replacing a file changes its inode; rewriting or appending changes its size
 * or times; ctime also catches a rewrite whose mtime was set back by a tool.
 */
export function etagFor(info: Deno.FileInfo): string {
  const ctime = info.ctime === null ? 0 : Math.floor(info.ctime.getTime());
  return `"${
    identityTag(info.dev, info.ino ?? 0, info.size, mtimeMs(info), ctime)
  }"`;
}

/**
 * The inside of {@linkcode etagFor}'s tag from its numbers
 * (`dev-ino-size-mtime-ctime` in hex), for a caller that holds them already.
 */
export function identityTag(
  dev: number,
  ino: number,
  size: number,
  mtimeMs: number,
  ctimeMs: number,
): string {
  // Spelled out rather than mapped and joined: asked once per listed and
  // bundled file.
  return `${dev.toString(16)}-${ino.toString(16)}-${size.toString(16)}-${
    mtimeMs.toString(16)
  }-${ctimeMs.toString(16)}`;
}

/** Permission bits of an entry (`mode & 0o7777`, 0 when unknown). */
export function modeBits(info: Deno.FileInfo): number {
  return (info.mode ?? 0) & 0o7777;
}

/** What the server's ETag tells about a file (hsyncd's tags are `"dev-ino-size-mtime-ctime"` in hex, as {@linkcode etagFor} writes them). */
export interface EtagParts {
  /** Device and inode: the same for the same file, whatever is written to it. */
  id: string;
  size: number;
  mtime: number;
}

/** Parses an hsyncd ETag; undefined for any other form (then only sizes and tail hashes are used). */
export function parseEtag(
  etag: string | null | undefined,
): EtagParts | undefined {
  if (typeof etag !== "string") return undefined;
  // Times before 1970 are negative: "-" then their hex digits.
  const m =
    /^"([0-9a-f]+)-([0-9a-f]+)-([0-9a-f]+)-(-?[0-9a-f]+)-(-?[0-9a-f]+)"$/
      .exec(etag);
  if (m === null) return undefined;
  const size = parseInt(m[3], 16);
  const mtime = parseInt(m[4], 16);
  if (!Number.isSafeInteger(size) || !Number.isSafeInteger(mtime)) {
    return undefined;
  }
  return { id: `${m[1]}-${m[2]}`, size, mtime };
}
