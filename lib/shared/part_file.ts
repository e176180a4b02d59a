/**
 * Part files: a file being received is written to `NAME.hsync-part` and gets
 * its final name only when complete (times and mode set through its own
 * handle, then renamed), whichever side receives it.
 */
import { createHash } from "node:crypto";
import { removeIfPresentSync } from "./atomic_file.ts";
import { LocalPathError, reason } from "./errors.ts";
import { writeAllSync } from "./write_all.ts";
import { MAX_NAME_BYTES } from "./name_bytes.ts";
import {
  JOURNAL_SUFFIX,
  PART_SUFFIX,
  splitLastName,
  unshortenedOwnName,
} from "./own_names.ts";
import {
  checkName,
  createChecked,
  type FileId,
  fileIdOf,
  openChecked,
} from "./checked_open.ts";
import {
  chmodOpened,
  chmodReady,
  modeDiffers,
  readyToChmod,
} from "./chmod_opened.ts";

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
  return madeAnew(part, options, () => createChecked(part));
}

/**
 * `create()` (an `O_EXCL` create of `part`), run again once a leftover
 * entry at the name is removed (`onLeftover` told first) when it found one
 * (`exists` tells that from its error: Deno's `AlreadyExists`, or node's
 * `EEXIST` for a node descriptor).
 */
export function madeAnew<T>(
  part: string,
  options: { onLeftover?: () => void },
  create: () => T,
  exists: (error: unknown) => boolean = (error) =>
    error instanceof Deno.errors.AlreadyExists,
): T {
  try {
    return create();
  } catch (error) {
    if (!exists(error)) throw error;
  }
  removeIfPresentSync(part);
  options.onLeftover?.();
  return create();
}

/** The writer through node's descriptors, once {@linkcode readyToSetModes} loaded it. */
let throughNode: typeof import("./node_new_part.ts") | undefined;

/**
 * Loads node's fs for a run that will set modes other than the one files
 * are made with (0666 less the umask): {@linkcode writeNewPart} then sets
 * them on its own descriptor, and `chmodOpened` can. Once; at once after.
 */
export async function readyToSetModes(): Promise<void> {
  await readyToChmod();
  throughNode ??= await import("./node_new_part.ts");
}

/**
 * Writes `data` as the new part file `part`, whole, through one handle:
 * made with `O_CREAT|O_EXCL` (an entry at the name, a link included, is
 * removed, never followed, `onLeftover` told, and the file made once more),
 * its bytes, then its mtime and mode set through the handle. Returns the
 * inode's identity from the handle's own `fstat` (no `lstat` after the
 * create: `O_EXCL` made the entry); the rename ({@linkcode renamePartSync})
 * proves the name is still it. After {@linkcode readyToSetModes}, through a
 * node descriptor (lib/shared/node_new_part.ts: a mode set without a
 * second descriptor, an `fstat` without Deno's `readlink`s); before it, a
 * Deno handle, so a pull whose files all get the mode they are made with
 * never loads node's fs. `LocalPathError` naming `part` when anything
 * fails (the part is left for the next try to remove).
 */
export function writeNewPart(
  part: string,
  data: Uint8Array,
  meta: PartMeta,
  options: { onLeftover?: () => void } = {},
): FileId {
  // node's futimes takes a time before 1970 as now: Deno's handle sets it.
  if (
    throughNode !== undefined && (meta.mtime === undefined || meta.mtime >= 0)
  ) {
    return throughNode.writeNewPartThroughNode(part, data, meta, options);
  }
  try {
    // Checked by its own fstat only: O_EXCL made the entry.
    using file = madeAnew(
      part,
      options,
      () => Deno.openSync(part, { write: true, createNew: true }),
    );
    writeAllSync(file, data);
    const own = file.statSync();
    applyMeta(file, part, meta, own);
    return fileIdOf(own);
  } catch (error) {
    if (error instanceof LocalPathError) throw error;
    throw new LocalPathError(part, reason(error), error);
  }
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
 * the handle: the name may have been swapped by now. `own` is the handle's
 * `fstat` when the caller took it already (see `chmodOpened`).
 */
export function applyMeta(
  file: Deno.FsFile,
  path: string,
  meta: PartMeta,
  own?: Deno.FileInfo,
): void {
  if (meta.mtime !== undefined) {
    file.utimeSync(new Date(), new Date(meta.mtime));
  }
  if (meta.mode !== undefined) chmodOpened(file, path, meta.mode, own);
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
    // One fstat for both: whether node's fs is needed, and chmodOpened's.
    const own = options.mode === undefined ? undefined : file.statSync();
    if (
      own !== undefined && !chmodReady() && modeDiffers(own, options.mode!)
    ) await readyToSetModes();
    applyMeta(file, part, options, own);
  }
  await options.beforeRename?.();
  checkName(part, id);
  await Deno.rename(part, target);
}
