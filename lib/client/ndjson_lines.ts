/**
 * The server's NDJSON answers (listing, glob) read line by line: a byte
 * stream split into lines in memory bounded by the longest line, and each
 * line checked field by field before it is trusted.
 */
import { ProtocolError } from "../shared/errors.ts";
import type { GlobMatch, ListEntry, ListLine } from "../shared/wire.ts";

/** Longest NDJSON line accepted: a longer one means a corrupt or hostile stream. */
export const MAX_LINE_CHARS = 1024 * 1024;

/**
 * Splits a byte stream into lines (without the `\n`; a final line without
 * one is yielded too). Memory is bounded by the longest line, itself capped
 * at {@linkcode MAX_LINE_CHARS}. `onChunk` is called per chunk received.
 */
export async function* splitLines(
  stream: ReadableStream<Uint8Array>,
  onChunk?: () => void,
): AsyncGenerator<string> {
  let rest = "";
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      onChunk?.();
      let text = rest === "" ? value : rest + value;
      let start = 0;
      let nl: number;
      while ((nl = text.indexOf("\n", start)) !== -1) {
        yield text.slice(start, nl);
        start = nl + 1;
      }
      text = start === 0 ? text : text.slice(start);
      if (text.length > MAX_LINE_CHARS) {
        throw new ProtocolError(
          `Stream has a line longer than ${MAX_LINE_CHARS} characters`,
        );
      }
      rest = text;
    }
    if (rest !== "") yield rest;
  } finally {
    await reader.cancel().catch(() => {});
  }
}

/** A listing line: an omission or an entry, checked field by field (a `symlink` only when `links` was asked). */
export function parseListLine(
  line: string,
  host: string,
  links: boolean,
): ListLine {
  let e: Record<string, unknown> | null;
  try {
    e = JSON.parse(line);
  } catch {
    throw new ProtocolError(`Listing from ${host} has a line that is not JSON`);
  }
  if (typeof e === "object" && e !== null && "omitted" in e) {
    if (
      typeof e.omitted !== "string" || typeof e.message !== "string" ||
      (e.path !== undefined && typeof e.path !== "string") ||
      (e.path === undefined && e.omitted !== "withheld")
    ) {
      throw new ProtocolError(`Listing from ${host} has a malformed omission`);
    }
    return e as unknown as ListLine;
  }
  if (
    typeof e !== "object" || e === null || typeof e.path !== "string" ||
    (e.type !== "file" && e.type !== "dir" &&
      !(links && e.type === "symlink" && typeof e.target === "string")) ||
    !Number.isSafeInteger(e.size) || (e.size as number) < 0 ||
    typeof e.mtime !== "number" || !Number.isFinite(e.mtime) ||
    typeof e.mode !== "number" || typeof e.etag !== "string" ||
    (e.inode !== undefined && typeof e.inode !== "string") ||
    (e.sparse !== undefined && typeof e.sparse !== "boolean")
  ) {
    throw new ProtocolError(`Listing from ${host} has a malformed entry`);
  }
  return e as unknown as ListEntry;
}

/** A line of a glob answer: an absolute path and its kind. */
export function parseGlobLine(line: string, host: string): GlobMatch {
  let m: Partial<GlobMatch> | null;
  try {
    m = JSON.parse(line);
  } catch {
    m = null;
  }
  if (
    typeof m?.path !== "string" || !m.path.startsWith("/") ||
    m.path.includes("\0") || (m.type !== "file" && m.type !== "dir")
  ) {
    throw new ProtocolError(`Glob answer from ${host} has a malformed line`);
  }
  return m as GlobMatch;
}
