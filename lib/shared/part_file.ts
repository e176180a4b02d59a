/**
 * Part files: a file being received is written to `NAME.hsync-part` and gets
 * its final name only when complete (times and mode set through its own
 * handle, then renamed), whichever side receives it.
 */
import { createHash } from "node:crypto";
import { removeIfPresentSync } from "./atomic_file.ts";
import { MAX_NAME_BYTES } from "./name_bytes.ts";
import {
  JOURNAL_SUFFIX,
  PART_SUFFIX,
  splitLastName,
  unshortenedOwnName,
} from "./own_names.ts";
import {
  type CheckedFile,
  checkName,
  chmodOpened,
  createCheckedWithInfo,
  type FileId,
  openChecked,
} from "./checked_open.ts";

/** Hex digits of the SHA-256 of a long name kept in its shortened own name. */
const HASH_CHARS = 16;
const encoder = new TextEncoder();

/**
 * The name of hsync's own file (`suffix`: part, journal) for the entry
 * `name`: `name` + `suffix` when that fits in a file name (255 bytes), else
 * `name` cut at a character boundary, `~`, 16 hex digits of the SHA-256 of
 * the whole name, and `suffix`. The same every run (a resume finds it) and
 * different for different names; a name of 250 bytes can be received too.
 */
export function ownNameFor(name: string, suffix: string): string {
  const whole = unshortenedOwnName(name, suffix);
  if (whole !== undefined) return whole;
  const hash = createHash("sha256").update(name).digest("hex");
  const room = MAX_NAME_BYTES - encoder.encode(suffix).length - 1 -
    HASH_CHARS;
  let cut = "";
  let bytes = 0;
  for (const char of name) {
    const size = encoder.encode(char).length;
    if (bytes + size > room) break;
    cut += char;
    bytes += size;
  }
  return `${cut}~${hash.slice(0, HASH_CHARS)}${suffix}`;
}

/** The name of the part file of the entry `name` (see {@linkcode ownNameFor}). */
export function partNameFor(name: string): string {
  return ownNameFor(name, PART_SUFFIX);
}

/** The name of the journal of the entry `name` (see {@linkcode ownNameFor}). */
export function journalNameFor(name: string): string {
  return ownNameFor(name, JOURNAL_SUFFIX);
}

/** `path` with its last component `name` made {@linkcode ownNameFor}`(name, suffix)`. */
function ownPathFor(path: string, suffix: string): string {
  const [dir, name] = splitLastName(path);
  return dir + ownNameFor(name, suffix);
}

/** The partial-data path of a final destination path. */
export function partPathFor(finalPath: string): string {
  return ownPathFor(finalPath, PART_SUFFIX);
}

/** The journal path of a final destination path. */
export function journalPathFor(finalPath: string): string {
  return ownPathFor(finalPath, JOURNAL_SUFFIX);
}

/** The temporary file a journal is written to before it replaces the journal (a reserved name: no remote entry can have it). */
export function journalTempPathFor(journalPath: string): string {
  return ownPathFor(journalPath, PART_SUFFIX);
}

/**
 * Creates `part` as a new, empty regular file and returns its handle, checked
 * to be the entry at that name. A leftover entry there (an earlier attempt,
 * or a planted link) is removed, never followed, and `onLeftover` is told
 * before the new file is made (so what went with the old one can go too);
 * `O_EXCL` then refuses anything planted meanwhile. No size is reserved: a
 * sender announcing 10 TiB gets a part file only as big as what it sends.
 * Throws `LocalPathError` when the checked create fails, and the file
 * system's own error when the leftover cannot be removed.
 */
export function createPart(
  part: string,
  options: { onLeftover?: () => void } = {},
): Deno.FsFile {
  return createPartWithInfo(part, options).file;
}

/** {@linkcode createPart}, with the `fstat` that proved the handle. */
export function createPartWithInfo(
  part: string,
  options: { onLeftover?: () => void } = {},
): CheckedFile {
  try {
    return createCheckedWithInfo(part);
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
  }
  removeIfPresentSync(part);
  options.onLeftover?.();
  return createCheckedWithInfo(part);
}

/** What a complete file gets before it takes its final name. */
export interface PartMeta {
  /** Modification time in milliseconds since the epoch; undefined leaves it as written. */
  mtime?: number;
  /** Permission bits to set; undefined leaves the mode as created. */
  mode?: number;
}

/**
 * Sets mtime (and mode) of the file open as `file` (named `path`) through
 * the handle: the name may have been swapped by now. `known` is the
 * handle's fstat when the caller has it (its mode as yet unchanged).
 */
export function applyMeta(
  file: Deno.FsFile,
  path: string,
  meta: PartMeta,
  known?: Deno.FileInfo,
): void {
  if (meta.mtime !== undefined) {
    file.utimeSync(new Date(), new Date(meta.mtime));
  }
  if (meta.mode !== undefined) chmodOpened(file, path, meta.mode, known);
}

/**
 * Renames the part file `id` to `target` once the name is proven to still
 * be that inode, so a link swapped in meanwhile is never moved into place.
 */
export function renamePartSync(part: string, id: FileId, target: string): void {
  checkName(part, id);
  Deno.renameSync(part, target);
}

/**
 * Places a complete part file `id`: mtime (and mode) through a checked
 * handle, then `beforeRename` (a journal goes first: a crash in between costs
 * a refetch, never a journal left beside a final file), then the rename of
 * the proven name. Throws `LocalPathError` for a name that is not the part
 * any more, and the file system's own errors otherwise.
 */
export async function placePart(
  part: string,
  id: FileId,
  target: string,
  options: PartMeta & { beforeRename?: () => Promise<void> },
): Promise<void> {
  {
    using file = openChecked(part, { expected: id });
    applyMeta(file, part, options);
  }
  await options.beforeRename?.();
  checkName(part, id);
  await Deno.rename(part, target);
}
