/** The write side of the jail as the server sees it: the targets, files and operations of {@linkcode WriteJail}. */
import type { HttpError } from "../../shared/errors.ts";
import type { EntryType } from "../../shared/wire.ts";
import type { PathGuardOptions } from "./rules.ts";

/** Options of `createWriteJail`: the read jail's rules plus the writable roots. */
export interface WriteJailOptions extends PathGuardOptions {
  /** `Writable_path`: absolute directories below which pushes may write; each must exist. */
  writablePath: readonly string[];
}

/** A path that may be written: its directory as the kernel entered it, and its name there. */
export interface WriteTarget {
  /** The requested path, normalised (what messages show). */
  path: string;
  /** The kernel's path of its directory. */
  dir: string;
  /** Its name in `dir`. */
  name: string;
}

/** A regular file of a target's directory, opened for writing and proven. */
export interface WritableFile {
  /** The file; the caller closes it. */
  file: Deno.FsFile;
  /** Its device and inode (what `rename` expects) and size when it was proven. */
  info: { dev: number; ino: number; size: number };
}

/** How {@linkcode WriteJail.replace} treats the new file. */
export interface ReplaceMeta {
  /** Modification time to set, whole milliseconds since the epoch. */
  mtimeMs?: number;
  /** Permission bits to set. */
  mode?: number;
  /** Flush it before the rename (default true). */
  sync?: boolean;
}

/** The write side of the jail. Every method throws `HttpError` (400, 403, 404, 409) when it refuses. */
export interface WriteJail {
  /** Whether any directory is writable (`Writable_path` set). */
  readonly enabled: boolean;
  /**
   * Checks that `requestPath` may be written: its directory (which must
   * exist) entered, the rules checked on the kernel's path of it and on its
   * name. Creates nothing.
   */
  target(requestPath: string): WriteTarget;
  /**
   * Creates the missing directories of `requestPath` (it included) below a
   * writable root, one level at a time, each inside the level entered before
   * it; returns the kernel's path of the last one.
   */
  makeDirs(requestPath: string, mode?: number): string;
  /**
   * The kernel's path `requestPath` has, or would have once made: its
   * deepest existing directory entered and checked as a target's directory
   * is (inside a writable root, no rule refusing it), the missing names
   * after it. Creates nothing (what a lease of a destination is keyed by).
   */
  resolve(requestPath: string): string;
  /**
   * Opens the file `name` (the target's own name, or one beside it such as
   * its part file) in the target's directory for writing, creating it empty
   * (mode 0600) when it is missing and `create` is set.
   */
  open(
    target: WriteTarget,
    name: string,
    create: boolean,
  ): Promise<WritableFile>;
  /**
   * Like {@linkcode WriteJail.open}, as a descriptor (node:fs, write only)
   * for positional writes on the calling thread. The caller closes it.
   */
  openWriteDescriptor(
    target: WriteTarget,
    name: string,
    create: boolean,
  ): number;
  /**
   * A descriptor (node:fs, write only) of `name` in the target's directory,
   * proven to be the regular file with identity `expect` that the name holds
   * (for `fchmod`: a mode set by name would follow a link planted there).
   * The caller closes it.
   */
  openDescriptor(
    target: WriteTarget,
    name: string,
    expect: { dev: number; ino: number },
  ): number;
  /** Creates a new file with a fresh name (`.hsync-new-...`) in the target's directory and opens it, proven; the caller renames it into place (or removes it). */
  createFresh(target: WriteTarget): Promise<WritableFile & { name: string }>;
  /**
   * Sets the time and mode (each when given) of a directory made by
   * `makeDirs`, entered again and proven; returns its `stat` after. With
   * `narrow`, `mode` only takes bits away from the directory's own.
   */
  setDirMeta(
    path: string,
    real: string,
    mtimeMs?: number,
    mode?: number,
    narrow?: boolean,
  ): Deno.FileInfo;
  /** Reads the whole file `name` beside the target when it is a regular file of at most `max` bytes; undefined otherwise. */
  read(target: WriteTarget, name: string, max: number): Uint8Array | undefined;
  /**
   * Writes `data` to `name` beside the target atomically (new file, then
   * rename over), in one synchronous section: flushed first (`fdatasync`)
   * unless `meta.sync` is false, its mtime and mode set through the new
   * file's descriptor when given. Returns the `lstat` of `name` after.
   */
  replace(
    target: WriteTarget,
    name: string,
    data: Uint8Array,
    meta?: ReplaceMeta,
  ): Deno.FileInfo;
  /**
   * Writes several whole files of one directory (their request paths all
   * in it), each as `replace` writes one, in one synchronous section: the
   * directory is entered and proven once. Each file's outcome, in order: its
   * `lstat`, or the refusal of that file alone.
   */
  writeFiles(
    files: ReadonlyArray<{ path: string; data: Uint8Array; meta: ReplaceMeta }>,
  ): Array<Deno.FileInfo | HttpError>;
  /**
   * Renames `from` to `to` in the target's directory, when `from` still holds
   * the inode `expect` (a regular file); an entry at `to` is replaced.
   */
  rename(
    target: WriteTarget,
    from: string,
    to: string,
    expect: { dev: number; ino: number },
  ): void;
  /** Removes `name` from the target's directory, if it is there (never what a symlink leads to). */
  remove(target: WriteTarget, name: string): void;
  /** `lstat` of `name` in the target's directory, or undefined when there is none. */
  lstat(target: WriteTarget, name: string): Deno.FileInfo | undefined;
  /**
   * Makes the target a symbolic link holding `text` as given (a file or link
   * there replaced; 409 `is_a_directory`); 403 `unsafe_link` unless the text
   * stays inside the target's writable root. Answers its `lstat`.
   */
  symlink(target: WriteTarget, text: string, mtimeMs?: number): Deno.FileInfo;
  /**
   * Gives the regular file `existing` (400 `not_a_file` otherwise, 404 when
   * missing), below the same writable root, the target's name too (a file or
   * link there replaced; 409 `is_a_directory`). Answers the target's `lstat`.
   */
  link(target: WriteTarget, existing: WriteTarget): Deno.FileInfo;
  /**
   * Removes the target itself (write_delete.ts: a file or a link unlinked,
   * an empty directory removed; 404, 409 `not_empty`), never a writable
   * root (403 `not_writable`). Answers what it was.
   */
  delete(target: WriteTarget): EntryType;
}
