/** The resume journal beside a `.hsync-part` file: remote identity, the byte ranges flushed to disk, and ranges written but not yet flushed. */

/** What identifies the remote file a partial download belongs to. */
export interface RemoteIdentity {
  size: number;
  mtime: number;
  etag: string;
}

/**
 * The on-disk journal. Ranges are sorted, disjoint, half-open `[start, end)`.
 * `done` was flushed (fdatasync) before it was written here: it can be
 * trusted as is. `unflushed` was written to the part file but not flushed
 * yet: it survives a killed process but maybe not a crash of the machine, so
 * a resume trusts it only after its SHA-256 matches the server's.
 */
export interface JournalData {
  version: 1;
  remote: RemoteIdentity;
  done: Array<[number, number]>;
  unflushed?: Array<[number, number]>;
}

/** Suffix of partial data files. */
export const PART_SUFFIX = ".hsync-part";
/** Suffix of journal files. */
export const JOURNAL_SUFFIX = ".hsync-journal";

/** The journal path of a final destination path. */
export function journalPathFor(finalPath: string): string {
  return finalPath + JOURNAL_SUFFIX;
}

/** The partial-data path of a final destination path. */
export function partPathFor(finalPath: string): string {
  return finalPath + PART_SUFFIX;
}

/** A set of byte ranges, kept sorted and merged. */
export class RangeSet {
  #ranges: Array<[number, number]> = [];

  /** Builds a set from ranges in any order, overlapping or not. */
  constructor(ranges: Iterable<[number, number]> = []) {
    for (const [s, e] of ranges) this.add(s, e);
  }

  /** Adds `[start, end)`; empty or inverted ranges are ignored. */
  add(start: number, end: number): void {
    if (!(end > start)) return;
    const out: Array<[number, number]> = [];
    let placed = false;
    for (const [s, e] of this.#ranges) {
      if (e < start) out.push([s, e]);
      else if (s > end) {
        if (!placed) {
          out.push([start, end]);
          placed = true;
        }
        out.push([s, e]);
      } else {
        start = Math.min(start, s);
        end = Math.max(end, e);
      }
    }
    if (!placed) out.push([start, end]);
    this.#ranges = out;
  }

  /** Removes `[start, end)` (the bytes are no longer known to be on disk). */
  remove(start: number, end: number): void {
    if (!(end > start)) return;
    const out: Array<[number, number]> = [];
    for (const [s, e] of this.#ranges) {
      if (e <= start || s >= end) out.push([s, e]);
      else {
        if (s < start) out.push([s, start]);
        if (e > end) out.push([end, e]);
      }
    }
    this.#ranges = out;
  }

  /** Total bytes covered. */
  get covered(): number {
    let n = 0;
    for (const [s, e] of this.#ranges) n += e - s;
    return n;
  }

  /** True when `[0, size)` is covered entirely. */
  isComplete(size: number): boolean {
    if (size === 0) return true;
    return this.#ranges.length === 1 && this.#ranges[0][0] <= 0 &&
      this.#ranges[0][1] >= size;
  }

  /** The ranges of `[0, size)` not covered, in order. */
  gaps(size: number): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    let pos = 0;
    for (const [s, e] of this.#ranges) {
      if (s >= size) break;
      if (s > pos) out.push([pos, s]);
      pos = Math.max(pos, e);
    }
    if (pos < size) out.push([pos, size]);
    return out;
  }

  /** A copy of the ranges. */
  toArray(): Array<[number, number]> {
    return this.#ranges.map(([s, e]) => [s, e]);
  }
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
      version: 1,
      remote: { size: r.size, mtime: r.mtime, etag: r.etag },
      done: done.toArray(),
    };
    for (const [a, b] of data.done) unflushed.remove(a, b);
    if (unflushed.covered > 0) data.unflushed = unflushed.toArray();
    return data;
  } catch {
    return undefined;
  }
}

/** Ranges within `[0, size)` from parsed JSON; undefined when malformed. */
function readRanges(value: unknown, size: number): RangeSet | undefined {
  if (!Array.isArray(value)) return undefined;
  const set = new RangeSet();
  for (const pair of value) {
    if (
      !Array.isArray(pair) || pair.length !== 2 ||
      !Number.isSafeInteger(pair[0]) || !Number.isSafeInteger(pair[1]) ||
      pair[0] < 0 || pair[1] < pair[0] || pair[1] > size
    ) return undefined;
    set.add(pair[0], pair[1]);
  }
  return set;
}

/** The temporary file a journal is written to before it replaces the journal (a reserved name: no remote entry can have it). */
export function journalTempPathFor(journalPath: string): string {
  return journalPath + PART_SUFFIX;
}

/**
 * Replaces a journal atomically: write a temporary file, fsync it, rename it
 * over the old one. A crash at any point leaves either the old or the new
 * journal, never a torn one; a failed save leaves the old one and no
 * temporary file. With `sync: false` the fsync is skipped: a killed process
 * still leaves a whole journal, a crashed machine maybe an older or none
 * (for journals that claim nothing more than the last synced one).
 */
export async function saveJournal(
  path: string,
  data: JournalData,
  options: { sync?: boolean } = {},
): Promise<void> {
  (await replaceJournal(path, data, options)).close();
}

/**
 * Replaces a journal as {@linkcode saveJournal} does and returns the new
 * journal still open for writing. Later saves of the same length overwrite
 * it in place through this handle: the handle follows the inode, so a link
 * planted at the journal's name afterwards is never written through (opening
 * the name again would follow it).
 */
export async function replaceJournal(
  path: string,
  data: JournalData,
  options: { sync?: boolean } = {},
): Promise<Deno.FsFile> {
  const tmp = journalTempPathFor(path);
  const bytes = encodeJournal(data);
  // A leftover (or planted) temporary entry is removed, never followed;
  // O_EXCL then refuses anything planted at the name meanwhile.
  await removeIfPresent(tmp);
  let file: Deno.FsFile | undefined;
  try {
    file = await Deno.open(tmp, { write: true, createNew: true });
    let off = 0;
    while (off < bytes.length) off += await file.write(bytes.subarray(off));
    if (options.sync ?? true) await file.sync();
    await Deno.rename(tmp, path);
    return file;
  } catch (error) {
    file?.close();
    await removeIfPresent(tmp).catch(() => {});
    throw error;
  }
}

/** Journals are padded with spaces to a multiple of this, so a later save of the same length can overwrite one page in place. */
export const JOURNAL_PAGE_BYTES = 4096;

/** The bytes of a journal: JSON padded with spaces to a multiple of {@linkcode JOURNAL_PAGE_BYTES}. */
export function encodeJournal(data: JournalData): Uint8Array<ArrayBuffer> {
  const json = new TextEncoder().encode(JSON.stringify(data));
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

async function removeIfPresent(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/** True when the journal was made for this remote identity. */
export function sameIdentity(a: RemoteIdentity, b: RemoteIdentity): boolean {
  return a.size === b.size && a.mtime === b.mtime && a.etag === b.etag;
}
