/** The resume journal beside a `.hsync-part` file: remote identity, the byte ranges flushed to disk, and ranges written but not yet flushed. */
import {
  removeIfPresent,
  replaceFile,
  replaceFileKeepOpen,
} from "./atomic_file.ts";
import type { ByteRange } from "./byte_range.ts";
import { journalTempPathFor } from "./part_file.ts";
import { RangeSet } from "./range_set.ts";

/** What identifies the file a partial copy belongs to (its sender's size, mtime and ETag). */
export interface RemoteIdentity {
  size: number;
  mtime: number;
  etag: string;
}

/**
 * A journal. Ranges are sorted, disjoint and half-open. `done` was flushed
 * (fdatasync) before it was written here: it can be trusted as is.
 * `unflushed` was written to the part file but not flushed yet: it survives a
 * killed process but maybe not a crash of the machine, so a resume trusts it
 * only after its SHA-256 matches the sender's.
 */
export interface JournalData {
  remote: RemoteIdentity;
  done: ByteRange[];
  unflushed?: ByteRange[];
}

/** The journal as stored: ranges as `[start, end)` pairs (the format of every journal on disk). */
interface StoredJournal {
  version: 1;
  remote: RemoteIdentity;
  done: Array<[number, number]>;
  unflushed?: Array<[number, number]>;
}

/** Reads a journal; undefined when it is absent, unreadable or malformed (the caller starts over). */
export async function loadJournal(
  path: string,
): Promise<JournalData | undefined> {
  let text: string;
  try {
    // A planted link is not a journal: it could claim bytes that were never written.
    if (!(await Deno.lstat(path)).isFile) return undefined;
    text = await Deno.readTextFile(path);
  } catch {
    return undefined;
  }
  return decodeJournal(text);
}

/** A journal from its stored text; undefined when malformed (the caller starts over). */
export function decodeJournal(text: string): JournalData | undefined {
  try {
    const j = JSON.parse(text);
    const r = j?.remote;
    if (
      j?.version !== 1 || !Number.isSafeInteger(r?.size) ||
      typeof r?.mtime !== "number" || typeof r?.etag !== "string" ||
      !Array.isArray(j.done)
    ) return undefined;
    const done = readRanges(j.done, r.size);
    const unflushed = j.unflushed === undefined
      ? new RangeSet()
      : readRanges(j.unflushed, r.size);
    if (done === undefined || unflushed === undefined) return undefined;
    const data: JournalData = {
      remote: { size: r.size, mtime: r.mtime, etag: r.etag },
      done: done.toArray(),
    };
    for (const range of data.done) unflushed.remove(range);
    if (unflushed.covered > 0) data.unflushed = unflushed.toArray();
    return data;
  } catch {
    return undefined;
  }
}

/** Ranges within `[0, size)` from parsed JSON pairs; undefined when malformed. */
function readRanges(value: unknown, size: number): RangeSet | undefined {
  if (!Array.isArray(value)) return undefined;
  const set = new RangeSet();
  for (const pair of value) {
    if (
      !Array.isArray(pair) || pair.length !== 2 ||
      !Number.isSafeInteger(pair[0]) || !Number.isSafeInteger(pair[1]) ||
      pair[0] < 0 || pair[1] < pair[0] || pair[1] > size
    ) return undefined;
    set.add({ start: pair[0], end: pair[1] });
  }
  return set;
}

/**
 * Replaces a journal atomically (see `replaceFile`): a crash at any point
 * leaves either the old or the new journal, never a torn one; a failed save
 * leaves the old one and no temporary file. With `sync: false` the fsync is
 * skipped: a killed process still leaves a whole journal, a crashed machine
 * maybe an older or none (for journals that claim nothing more than the last
 * synced one).
 */
export async function saveJournal(
  path: string,
  data: JournalData,
  options: { sync?: boolean } = {},
): Promise<void> {
  await replaceFile(path, encodeJournal(data), {
    temp: journalTempPathFor(path),
    sync: options.sync,
  });
}

/**
 * Replaces a journal as {@linkcode saveJournal} does and returns the new
 * journal still open for writing. Later saves of the same length overwrite
 * it in place through this handle: the handle follows the inode, so a link
 * planted at the journal's name afterwards is never written through.
 */
export async function replaceJournal(
  path: string,
  data: JournalData,
  options: { sync?: boolean } = {},
): Promise<Deno.FsFile> {
  return await replaceFileKeepOpen(path, encodeJournal(data), {
    temp: journalTempPathFor(path),
    sync: options.sync,
  });
}

/** Journals are padded with spaces to a multiple of this, so a later save of the same length can overwrite one page in place. */
export const JOURNAL_PAGE_BYTES = 4096;

/** The bytes of a journal: JSON (ranges as pairs) padded with spaces to a multiple of {@linkcode JOURNAL_PAGE_BYTES}. */
export function encodeJournal(data: JournalData): Uint8Array<ArrayBuffer> {
  const pairs = (ranges: ByteRange[]) =>
    ranges.map(({ start, end }): [number, number] => [start, end]);
  const stored: StoredJournal = {
    version: 1,
    remote: {
      size: data.remote.size,
      mtime: data.remote.mtime,
      etag: data.remote.etag,
    },
    done: pairs(data.done),
  };
  if (data.unflushed !== undefined) stored.unflushed = pairs(data.unflushed);
  const json = new TextEncoder().encode(JSON.stringify(stored));
  const length = Math.ceil((json.length + 1) / JOURNAL_PAGE_BYTES) *
    JOURNAL_PAGE_BYTES;
  const bytes = new Uint8Array(length).fill(0x20);
  bytes.set(json);
  bytes[length - 1] = 0x0a;
  return bytes;
}

/** Removes a journal and any temporary file of an interrupted save; absent files are fine. */
export async function removeJournal(path: string): Promise<void> {
  await removeIfPresent(path);
  await removeIfPresent(journalTempPathFor(path));
}

/** Removes a journal and its temporary file, ignoring every error (synchronous, for the small-file path). */
export function removeJournalSync(path: string): void {
  for (const p of [path, journalTempPathFor(path)]) {
    try {
      Deno.removeSync(p);
    } catch {
      // absent, or left for a later run
    }
  }
}

/** True when the journal was made for this identity. */
export function sameIdentity(a: RemoteIdentity, b: RemoteIdentity): boolean {
  return a.size === b.size && a.mtime === b.mtime && a.etag === b.etag;
}
