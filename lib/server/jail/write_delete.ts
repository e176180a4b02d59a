/**
 * Removing one entry (push `--delete`) inside a directory the write jail
 * has entered: the name is looked at and removed through that very
 * directory's inode (lib/server/jail/cwd_anchor.ts), so a symbolic link is
 * removed itself and never followed, a directory only when empty, and a
 * directory swapped for a link meanwhile can make the removal fail, never
 * remove anything elsewhere.
 */
import { HttpError } from "../../shared/errors.ts";
import type { EntryType } from "../../shared/wire.ts";
import { fsFailureStatus } from "../error_status.ts";
import type { Inside } from "./cwd_anchor.ts";
import { quote } from "./rules.ts";
import { lstatOrUndefined } from "./write_support.ts";

/**
 * Removes the entry `name` of the entered directory `at` (`path` is what
 * messages show) and answers what it was: a regular file or a symbolic
 * link is unlinked, an empty directory removed; 404 when it is not there,
 * 409 `not_empty` for a directory holding entries, 403 `not_regular` for
 * anything else (a FIFO, a socket, a device).
 */
export function removeEntry(at: Inside, path: string, name: string): EntryType {
  const refuse = (status: number, code: string, why: string) =>
    new HttpError(status, code, `Cannot delete ${quote(path)}: ${why}`);
  const info = lstatOrUndefined(at, name);
  if (info === undefined) throw refuse(404, "not_found", "it is not there");
  const type: EntryType | undefined = info.isSymlink
    ? "symlink"
    : info.isDirectory
    ? "dir"
    : info.isFile
    ? "file"
    : undefined;
  if (type === undefined) {
    throw refuse(
      403,
      "not_regular",
      "only files, symbolic links and empty directories are deleted",
    );
  }
  try {
    // unlink, or rmdir for a directory (never recursive): one name of this directory.
    at.remove(name);
  } catch (error) {
    const code = (error as { code?: string } | null)?.code;
    if (code === "ENOTEMPTY" || code === "EEXIST") {
      throw refuse(409, "not_empty", "the directory is not empty");
    }
    const fs = fsFailureStatus(error);
    if (fs === undefined) throw error;
    throw refuse(fs.status, fs.code, fs.reason);
  }
  return type;
}
