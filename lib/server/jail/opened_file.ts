/**
 * Opening a checked regular file in the jail, and the open file: the handle
 * must be the very inode the checked name holds, proven by an `lstat` of the
 * name through the entered directory after the open (Deno's `open` follows a
 * final symlink whatever the flags say).
 */
import {
  close as closeCallback,
  closeSync,
  constants as fsConstants,
  fstat as fstatCallback,
  fstatSync,
  openSync,
  read as readCallback,
} from "node:fs";
import { HttpError } from "../../shared/errors.ts";
import { toFileInfo } from "../../shared/node_stats.ts";
import { Limiter, type Release } from "../../shared/limiter.ts";
import type { CwdAnchor } from "./cwd_anchor.ts";
import { fsFailure } from "./request_path.ts";
import { quote } from "./rules.ts";

/** Flags of every open: read only, and a FIFO swapped in opens at once (then refused) instead of hanging. */
export const OPEN_FLAGS = fsConstants.O_RDONLY | fsConstants.O_NONBLOCK;

/** A regular file opened for reading; the caller closes it. */
export interface OpenedFile {
  /** `fstat` of the opened handle (size and times may have moved on since the check; identity has not). */
  readonly info: Deno.FileInfo;
  /** Reads into `buffer` from byte `position` of the file; resolves 0 at the end of the file. */
  read(buffer: Uint8Array, position: number): Promise<number>;
  /** A fresh `fstat` of the open handle. */
  stat(): Promise<Deno.FileInfo>;
  /** Closes the file; calling it again does nothing. */
  close(): Promise<void>;
  /**
   * The same file as a `Deno.FsFile`, whose `readable` Deno streams without
   * JavaScript (a resource-backed body), or `undefined` when that cannot be
   * had promptly and provably; then keep reading through this handle. The
   * caller owns the `FsFile`; this handle stays open until closed.
   */
  native(): Promise<Deno.FsFile | undefined>;
}

/** A checked regular file: where the jail found it (see `CheckedPath`). */
export interface CheckedFile {
  /** The requested path, normalised (what messages show). */
  path: string;
  /** The kernel's path of the file. */
  realPath: string;
  /** The kernel's path of its directory. */
  dir: string;
  /** Its name in `dir`. */
  name: string;
  /** `lstat` of the entry when it was checked. */
  info: Deno.FileInfo;
}

/**
 * Opens a checked regular file and proves the handle is the entry that was
 * checked, still held by the checked directory under its name; otherwise
 * 409 `changed`.
 */
export function openChecked(
  anchor: CwdAnchor,
  checked: CheckedFile,
): Promise<OpenedFile> {
  const changed = () =>
    new HttpError(
      409,
      "changed",
      `Cannot serve ${
        quote(checked.path)
      }: it changed while being opened, retry`,
    );
  let fd = -1;
  try {
    const info = anchor.run(checked.dir, (at) => {
      if (at.real !== checked.dir) throw changed();
      fd = openSync(checked.realPath, OPEN_FLAGS);
      const opened = toFileInfo(fstatSync(fd));
      // The proof: the name, looked at through the entered directory after
      // the open, holds the very inode that was opened and checked.
      const now = at.lstat(checked.name);
      if (
        !opened.isFile || !now.isFile || !sameFile(opened, now) ||
        !sameFile(opened, checked.info)
      ) throw changed();
      return opened;
    });
    const file = new FdFile(fd, info, checked.realPath);
    fd = -1;
    return Promise.resolve(file);
  } catch (error) {
    if (fd >= 0) closeSync(fd);
    if (error instanceof HttpError) return Promise.reject(error);
    const code = (error as { code?: string } | null)?.code;
    if (error instanceof Deno.errors.NotFound || code === "ENOENT") {
      return Promise.reject(changed());
    }
    return Promise.reject(fsFailure(checked.path, error));
  }
}

/**
 * `Deno.open`s of checked files' real paths (for `OpenedFile.native`).
 * `Deno.open` cannot say `O_NONBLOCK`, so a FIFO swapped in under the path
 * makes it hang until a writer comes. At most `NATIVE_OPENS` run at once and
 * the others wait their turn (64 clients asking for 4 files each at once:
 * without the wait, all but the first 16 were read through JavaScript, and
 * each slow connection then held about 0.5 MiB); an open or a wait is given
 * up on after `NATIVE_OPEN_MS`. An open given up on gives its turn back but
 * stays counted as stuck until it settles, and while `NATIVE_OPENS` are
 * stuck no new one starts: files are then read through their handles.
 */
const NATIVE_OPENS = 16;
const NATIVE_OPEN_MS = 1000;
const nativeOpens = new Limiter(NATIVE_OPENS, { name: "native opens" });
let nativeOpensStuck = 0;

/** A turn to open natively (at once when one is free), waited for at most `NATIVE_OPEN_MS`; `undefined` when none came. */
async function nativeTurn(): Promise<Release | undefined> {
  const late = new AbortController();
  const timer = setTimeout(() => late.abort(), NATIVE_OPEN_MS);
  try {
    return await nativeOpens.acquire(late.signal);
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}

/** An open regular file: positioned reads on a descriptor proven to be the checked file. */
class FdFile implements OpenedFile {
  readonly info: Deno.FileInfo;
  #fd: number;
  #realPath: string;
  #closed = false;

  constructor(fd: number, info: Deno.FileInfo, realPath: string) {
    this.#fd = fd;
    this.info = info;
    this.#realPath = realPath;
  }

  async native(): Promise<Deno.FsFile | undefined> {
    if (this.#closed || nativeOpensStuck >= NATIVE_OPENS) return undefined;
    const release = await nativeTurn();
    if (release === undefined) return undefined;
    if (this.#closed) {
      release();
      return undefined;
    }
    const opening = Deno.open(this.#realPath, { read: true });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const given = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), NATIVE_OPEN_MS);
    });
    let file: Deno.FsFile | undefined;
    try {
      file = await Promise.race([opening, given]);
    } catch {
      return undefined;
    } finally {
      clearTimeout(timer);
      release();
    }
    if (file === undefined) {
      nativeOpensStuck++;
      opening.then((f) => f.close(), () => {}).finally(() => {
        nativeOpensStuck--;
      });
      return undefined;
    }
    // Whatever the path led to, only the very inode of the proven descriptor
    // is used: same device and inode means the same bytes.
    try {
      const info = await file.stat();
      if (info.isFile && sameFile(info, this.info)) return file;
    } catch {
      // fall through: closed below, and the descriptor serves
    }
    file.close();
    return undefined;
  }

  read(buffer: Uint8Array, position: number): Promise<number> {
    return new Promise((resolve, reject) => {
      readCallback(
        this.#fd,
        buffer,
        0,
        buffer.length,
        position,
        (error, bytesRead) => error ? reject(error) : resolve(bytesRead),
      );
    });
  }

  stat(): Promise<Deno.FileInfo> {
    return new Promise((resolve, reject) => {
      fstatCallback(
        this.#fd,
        (error, stats) => error ? reject(error) : resolve(toFileInfo(stats)),
      );
    });
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    return new Promise((resolve, reject) => {
      closeCallback(this.#fd, (error) => error ? reject(error) : resolve());
    });
  }
}

/** Same device and inode. */
export function sameFile(a: Deno.FileInfo, b: Deno.FileInfo): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}
