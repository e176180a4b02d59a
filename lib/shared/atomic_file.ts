/** Replacing a small file atomically (write a temporary file, fsync, rename), for journals and state files of either side. */

/** Options of {@linkcode replaceFile} and {@linkcode replaceFileKeepOpen}. */
export interface ReplaceOptions {
  /** The temporary name written first (default `PATH.tmp`); a reserved name the caller owns. */
  temp?: string;
  /** Flush the temporary file before the rename (default true). */
  sync?: boolean;
}

/**
 * Replaces `path` with `bytes` atomically: the temporary file is created
 * exclusively (a leftover or planted entry at its name is removed first,
 * never followed, and `O_EXCL` refuses one planted meanwhile), written,
 * flushed unless `sync` is false, then renamed over `path` (a rename
 * replaces a link, never its target). A crash at any point leaves the old or
 * the new file, never a torn one; a failed replace leaves the old one and no
 * temporary file. Without the flush a killed process still leaves a whole
 * file, a crashed machine maybe an older one or none.
 */
export async function replaceFile(
  path: string,
  bytes: Uint8Array,
  options: ReplaceOptions = {},
): Promise<void> {
  (await replaceFileKeepOpen(path, bytes, options)).close();
}

/**
 * Replaces `path` as {@linkcode replaceFile} does and returns the new file
 * still open for writing: later writes through the handle follow the inode,
 * so a link planted at the name afterwards is never written through (opening
 * the name again would follow it). The caller closes it.
 */
export async function replaceFileKeepOpen(
  path: string,
  bytes: Uint8Array,
  options: ReplaceOptions = {},
): Promise<Deno.FsFile> {
  const temp = options.temp ?? `${path}.tmp`;
  await removeIfPresent(temp);
  let file: Deno.FsFile | undefined;
  try {
    file = await Deno.open(temp, { write: true, createNew: true });
    let off = 0;
    while (off < bytes.length) off += await file.write(bytes.subarray(off));
    if (options.sync ?? true) await file.sync();
    await Deno.rename(temp, path);
    return file;
  } catch (error) {
    file?.close();
    await removeIfPresent(temp).catch(() => {});
    throw error;
  }
}

/** Removes `path` (the entry itself, never a link's target); an absent one is fine. */
export async function removeIfPresent(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/** Synchronous {@linkcode removeIfPresent}. */
export function removeIfPresentSync(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}
