/**
 * A new part file written whole through one node descriptor, its mode set
 * by `fchmod` on it: the way of lib/shared/part_file.ts's `writeNewPart`
 * once a run sets modes other than the one files are made with (this module
 * loads node's fs, which a run without such modes never needs).
 */
import {
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  openSync,
  writeSync,
} from "node:fs";
import type { FileId } from "./checked_open.ts";
import { LocalPathError, reason } from "./errors.ts";
import { setMtimeMs, setMtimeMsOnce } from "./fd_times.ts";
import { madeAnew, type PartMeta } from "./part_file.ts";

/** A new part file: write-only, created here, never through a link. */
const NEW_PART_FLAGS = constants.O_WRONLY | constants.O_CREAT |
  constants.O_EXCL | constants.O_NOFOLLOW;

/**
 * Writes `data` as the new part file `part` through one node descriptor:
 * made with `O_CREAT|O_EXCL|O_NOFOLLOW` (an entry at the name, a link
 * included, is removed, never followed, `onLeftover` told, and the file
 * made once more), its bytes, then its mtime (at or after 1970: node's
 * `futimes` takes an earlier one as now) and mode set through the
 * descriptor. Returns the inode's identity from the descriptor's own
 * `fstat`: no Deno handle, whose `statSync` reads seven links of the path,
 * and its mode changed without a second descriptor. `LocalPathError` naming
 * `part` when anything fails (the part is left for the next try to remove).
 */
export function writeNewPartThroughNode(
  part: string,
  data: Uint8Array,
  meta: PartMeta,
  options: { onLeftover?: () => void } = {},
): FileId {
  let fd = -1;
  try {
    fd = madeAnew(
      part,
      options,
      () => openSync(part, NEW_PART_FLAGS, 0o666),
      (error) => (error as { code?: string }).code === "EEXIST",
    );
    let off = 0;
    while (off < data.length) off += writeSync(fd, data, off);
    if (meta.mtime !== undefined) setMtimeMsOnce(fd, meta.mtime);
    const st = fstatSync(fd, { bigint: true });
    if (
      meta.mtime !== undefined &&
      st.mtimeNs / 1_000_000n !== BigInt(Math.trunc(meta.mtime))
    ) setMtimeMs(fd, meta.mtime);
    if (meta.mode !== undefined && Number(st.mode & 0o7777n) !== meta.mode) {
      fchmodSync(fd, meta.mode);
    }
    return { dev: Number(st.dev), ino: Number(st.ino) };
  } catch (error) {
    throw new LocalPathError(part, reason(error), error);
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}
