/**
 * The path jail of hsyncd: decides on what the kernel actually entered and
 * opened whether a requested path may be served, and opens or lists it.
 *
 * Every decision is taken inside one synchronous section of the process's
 * working directory (lib/server/jail/cwd_anchor.ts): the directory holding an entry is
 * entered with `chdir` and the rules are checked on the kernel's own path of
 * it (`getcwd`), then the entry is looked at through that directory's inode
 * (one name, never followed); a file is opened and then must be the very
 * inode that name holds. A directory swapped for a symlink at any moment can
 * only make an answer fail (409 `changed`), never lead out.
 */
import { posix } from "node:path";
import {
  close as closeCallback,
  closeSync,
  constants as fsConstants,
  fstat as fstatCallback,
  fstatSync,
  openSync,
  read as readCallback,
  readSync,
  type Stats,
} from "node:fs";
import { HttpError } from "../../shared/errors.ts";
import { type CwdAnchor, cwdAnchor, type Inside } from "./cwd_anchor.ts";
import {
  compileRules,
  type JailRules,
  type PathGuardOptions,
  quote,
  stripSlash,
} from "./rules.ts";
import type { EntryType } from "../../shared/wire.ts";
import {
  MAX_NAME_BYTES,
  MAX_PATH_BYTES,
  utf8Longer,
} from "../../shared/relative_path.ts";

export { anyGlob, type PathGuardOptions } from "./rules.ts";

/** Symlinks followed for one path at most (Linux's limit). */
const MAX_LINKS = 40;
/** Flags of every open: read only, and a FIFO swapped in opens at once (then refused) instead of hanging. */
const OPEN_FLAGS = fsConstants.O_RDONLY | fsConstants.O_NONBLOCK;

/** A path that passed every rule. */
export interface CheckedPath {
  /** The requested path, normalised (what error messages and file names show). */
  path: string;
  /** The path with every symlink resolved: the kernel's path of its directory and its name. */
  realPath: string;
  /** The kernel's path of the directory holding it (`realPath` itself for `/`). */
  dir: string;
  /** Its name in `dir` (empty for `/`). */
  name: string;
  type: EntryType;
  /** `lstat` of the entry, taken through its directory's inode. */
  info: Deno.FileInfo;
}

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

/** Names of directories read before, by identity and times (see `PathGuard.readDirectory`). */
export interface NamesCache {
  get(key: string): string[] | undefined;
  set(key: string, names: string[]): void;
}

/** What a listing learns of one entry of a checked directory. */
export type DirEntryInfo = Deno.FileInfo | undefined;

/** The jail. All methods throw `HttpError` (400, 403, 404, 409) when a path cannot be served. */
export interface PathGuard {
  /** Validates, normalises and resolves a requested absolute path, and checks the rules on both forms. */
  check(requestPath: string): Promise<CheckedPath>;
  /** `check`, synchronously. */
  checkSync(requestPath: string): CheckedPath;
  /**
   * Whether the entry `name` of an already checked real directory passes the
   * rules, without touching the file system. Only for entries that are not
   * symlinks: a symlink must go through `check`.
   */
  allowsEntry(realDirPath: string, name: string): boolean;
  /**
   * Opens a checked regular file and proves the opened handle is the entry
   * that was checked, still held by the checked directory under its name;
   * otherwise 409 `changed`.
   */
  openFile(checked: CheckedPath): Promise<OpenedFile>;
  /**
   * The names in a checked directory, sorted, read through the directory's
   * inode; undefined when `dir.realPath` no longer leads to that very
   * directory (or it cannot be read). With `cache`, names read before are
   * used again while the directory (same inode) has the same modification
   * and change times.
   */
  readDirectory(
    dir: { realPath: string; info: Deno.FileInfo },
    cache?: NamesCache,
  ): string[] | undefined;
  /**
   * `lstat` of each name in a checked directory, through its inode
   * (undefined for a name that vanished); undefined as a whole when
   * `dir.realPath` no longer leads to that very directory.
   */
  describeEntries(
    dir: { realPath: string; info: Deno.FileInfo },
    names: readonly string[],
  ): DirEntryInfo[] | undefined;
  /**
   * Checks and reads a whole small regular file synchronously, with the same
   * rules and the same identity proof as `check` + `openFile`. Returns
   * undefined whenever anything is unusual (missing, refused, a symlink, a
   * race, larger than `maxBytes`): the caller then takes the asynchronous
   * path, which produces the precise answer. `cache` (from
   * `newSmallReadCache`) keeps rule verdicts on parent directories within
   * one request.
   */
  readSmallSync(
    requestPath: string,
    maxBytes: number,
    cache: SmallReadCache,
  ): SmallFile | undefined;
  /**
   * `readSmallSync` for consecutive paths: reads them in order until one is
   * declined or `maxTotal` bytes have been read, and returns the ones read
   * (a prefix of `requestPaths`).
   */
  readSmallBatchSync(
    requestPaths: readonly string[],
    maxBytes: number,
    maxTotal: number,
    cache: SmallReadCache,
  ): SmallFile[];
}

/** A whole small file read by `readSmallSync`. */
export interface SmallFile {
  /** `fstat` of the opened file, taken before its bytes were read. */
  info: Deno.FileInfo;
  data: Uint8Array;
}

/** What one request learnt of parent directories: (path as asked, kernel path) -> whether the rules allow what is below it. */
export type SmallReadCache = Map<string, boolean>;

/** A cache for `readSmallSync`, valid for one request. */
export function newSmallReadCache(): SmallReadCache {
  return new Map();
}

/**
 * Builds the jail: compiles the rules (a missing `Only_allowed_path` entry is
 * a `ConfigError`) and prepares the working-directory anchor (a
 * `ConfigError` when `/proc` cannot be used for it).
 */
export async function createPathGuard(
  options: PathGuardOptions,
): Promise<PathGuard> {
  return new Jail(await compileRules(options), cwdAnchor());
}

/** A small file opened by `readSmallBatchSync`, its bytes not read yet. */
interface SmallOpen {
  fd: number;
  stats: Stats;
}

class Jail implements PathGuard {
  #rules: JailRules;
  #anchor: CwdAnchor;
  /** `allowsEntry`'s last directory and whether the rules allow what is below it. */
  #lastDir: string | undefined;
  #lastDirAllowed = false;

  constructor(rules: JailRules, anchor: CwdAnchor) {
    this.#rules = rules;
    this.#anchor = anchor;
  }

  check(requestPath: string): Promise<CheckedPath> {
    try {
      return Promise.resolve(this.checkSync(requestPath));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  checkSync(requestPath: string): CheckedPath {
    const path = normalizeRequest(requestPath);
    // Rules first, on the path as asked: a refused path is refused whether or not it exists.
    const early = this.#rules.refusal(path, path, this.#rules.configuredRoots);
    if (early !== undefined) throw early;
    return this.#resolve(path);
  }

  /**
   * Follows `path` to a file or directory: its directory is entered by the
   * kernel (symlinks on the way followed as they are at that instant), the
   * rules are checked on the kernel's path of it, and the last name is looked
   * at through that directory; a symlink there is read and its target
   * followed the same way.
   */
  #resolve(path: string): CheckedPath {
    const rules = this.#rules;
    let target = path;
    let viaLink = false;
    for (let hops = 0; hops <= MAX_LINKS; hops++) {
      const slash = target.lastIndexOf("/");
      const dirPath = target === "/"
        ? "/"
        : slash === 0
        ? "/"
        : target.slice(0, slash);
      const name = target === "/" ? "" : target.slice(slash + 1);
      let next: string | undefined;
      let entered: string | undefined;
      let result: CheckedPath | undefined;
      try {
        result = this.#anchor.run(dirPath, (at) => {
          entered = at.real;
          const real = name === "" ? at.real : join(at.real, name);
          // Told apart only when no symlink was involved: the rule then names nothing the asker did not write.
          const vague = viaLink || real !== path;
          const refused = rules.refusal(real, path, rules.realRoots, vague);
          if (refused !== undefined) throw refused;
          const info = name === "" ? at.stat() : at.lstat(name);
          if (info.isSymlink) {
            next = posix.resolve(at.real, at.readLink(name));
            return undefined;
          }
          let type: EntryType;
          if (info.isFile) type = "file";
          else if (info.isDirectory) type = "dir";
          else {
            throw new HttpError(
              403,
              "not_regular",
              `Cannot serve ${
                quote(path)
              }: only regular files and directories are served`,
            );
          }
          return { path, realPath: real, dir: at.real, name, type, info };
        });
      } catch (error) {
        if (error instanceof HttpError) throw error;
        if (entered === undefined) {
          throw this.#missing(path, dirPath, name, error, viaLink);
        }
        throw fsFailure(path, error);
      }
      if (result !== undefined) return result;
      target = next!;
      viaLink = true;
    }
    throw new HttpError(
      404,
      "not_found",
      `Cannot serve ${quote(path)}: too many levels of symbolic links`,
    );
  }

  /**
   * The answer when the directory of a path could not be entered. A missing
   * path is 404 only when the part of it that exists, as the kernel reaches
   * it, passes the rules: otherwise a symlink into a refused area would tell
   * which files exist there.
   */
  #missing(
    path: string,
    dirPath: string,
    name: string,
    error: unknown,
    viaLink: boolean,
  ): unknown {
    const code = (error as { code?: string } | null)?.code;
    const missing = error instanceof Deno.errors.NotFound ||
      error instanceof Deno.errors.NotADirectory || code === "ENOENT" ||
      code === "ENOTDIR";
    if (!missing) {
      // Permission denied on the way: where a symlink led is not told.
      return viaLink
        ? new HttpError(
          403,
          "refused",
          `Cannot serve ${quote(path)}: it leads to a path the rules refuse`,
        )
        : fsFailure(path, error);
    }
    const rest = name === "" ? [] : [name];
    let dir = dirPath;
    while (dir !== "/") {
      rest.unshift(posix.basename(dir));
      dir = posix.dirname(dir);
      let answer: unknown;
      try {
        answer = this.#anchor.run(dir, (at) => {
          const candidate = join(at.real, ...rest);
          return this.#rules.refusal(
            candidate,
            path,
            this.#rules.realRoots,
            viaLink || candidate !== path,
          ) ?? fsFailure(path, error);
        });
      } catch {
        continue;
      }
      return answer;
    }
    return fsFailure(path, error);
  }

  allowsEntry(realDirPath: string, name: string): boolean {
    if (name === "" || name.includes("/") || name === "." || name === "..") {
      return false;
    }
    const path = join(realDirPath, name);
    // A listing asks about every entry of one directory in turn: the verdict
    // on the directory is kept, and each entry adds only its own path and name.
    if (this.#lastDir !== realDirPath) {
      this.#lastDirAllowed = this.#rules.refusal(
        realDirPath,
        realDirPath,
        this.#rules.realRoots,
      ) === undefined;
      this.#lastDir = realDirPath;
    }
    return this.#lastDirAllowed && !this.#rules.childRefused(path, name);
  }

  openFile(checked: CheckedPath): Promise<OpenedFile> {
    if (checked.type !== "file") {
      return Promise.reject(
        new HttpError(
          400,
          "not_a_file",
          `Cannot read ${quote(checked.path)}: it is a directory`,
        ),
      );
    }
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
      const info = this.#anchor.run(checked.dir, (at) => {
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

  readDirectory(
    dir: { realPath: string; info: Deno.FileInfo },
    cache?: NamesCache,
  ): string[] | undefined {
    try {
      return this.#anchor.run(dir.realPath, (at) => {
        if (!isThatDirectory(at, dir)) return undefined;
        const self = at.stat();
        const key =
          `${self.dev}:${self.ino}:${self.mtime?.getTime()}:${self.ctime?.getTime()}`;
        const known = cache?.get(key);
        if (known !== undefined) return known;
        // The default order of sort() is by UTF-16 code units, the listing
        // order contract, and ten times faster than a comparator.
        const names = at.entries().map((e) => e.name).sort();
        cache?.set(key, names);
        return names;
      });
    } catch {
      return undefined;
    }
  }

  describeEntries(
    dir: { realPath: string; info: Deno.FileInfo },
    names: readonly string[],
  ): DirEntryInfo[] | undefined {
    try {
      return this.#anchor.run(dir.realPath, (at) => {
        if (!isThatDirectory(at, dir)) return undefined;
        return names.map((name) => {
          try {
            return at.lstat(name);
          } catch {
            return undefined;
          }
        });
      });
    } catch {
      return undefined;
    }
  }

  readSmallSync(
    requestPath: string,
    maxBytes: number,
    cache: SmallReadCache,
  ): SmallFile | undefined {
    return this.readSmallBatchSync([requestPath], maxBytes, Infinity, cache)[0];
  }

  readSmallBatchSync(
    requestPaths: readonly string[],
    maxBytes: number,
    maxTotal: number,
    cache: SmallReadCache,
  ): SmallFile[] {
    const opened: SmallOpen[] = [];
    try {
      this.#openSmallBatch(requestPaths, maxBytes, maxTotal, cache, opened);
    } catch {
      // Whatever was proven before the failure stands; the rest goes the long way.
    }
    try {
      let total = 0;
      for (const item of opened) total += item.stats.size;
      // One buffer for the whole batch: each file's bytes are a view of it.
      const slab = new Uint8Array(total);
      const files: SmallFile[] = [];
      let at = 0;
      for (const item of opened) {
        const data = slab.subarray(at, at + item.stats.size);
        let whole: boolean;
        try {
          whole = readFully(item.fd, data);
        } catch {
          whole = false;
        }
        // Shrank or failed: the long way reports it; the files before it stand.
        if (!whole) break;
        files.push({ info: toFileInfo(item.stats), data });
        at += data.length;
      }
      return files;
    } finally {
      for (const item of opened) closeSync(item.fd);
    }
  }

  /**
   * Opens consecutive small files with the proof of `openFile`, one
   * directory section at a time, into `opened`; stops at the first path that
   * must go the long way or at `maxTotal` bytes.
   */
  #openSmallBatch(
    requestPaths: readonly string[],
    maxBytes: number,
    maxTotal: number,
    cache: SmallReadCache,
    opened: SmallOpen[],
  ): void {
    let total = 0;
    let i = 0;
    while (i < requestPaths.length && total < maxTotal) {
      const first = splitRequest(requestPaths[i]);
      if (first === undefined) return;
      const dirPath = first.dir;
      let stop = false;
      this.#anchor.run(dirPath, (at) => {
        const key = `${dirPath}\0${at.real}`;
        let allowed = cache.get(key);
        if (allowed === undefined) {
          // Both forms: the directory as asked and as the kernel reached it.
          allowed = this.#rules.refusal(
                dirPath,
                dirPath,
                this.#rules.configuredRoots,
              ) === undefined &&
            this.#rules.refusal(at.real, dirPath, this.#rules.realRoots) ===
              undefined;
          cache.set(key, allowed);
        }
        while (i < requestPaths.length && total < maxTotal) {
          const next = splitRequest(requestPaths[i]);
          if (next === undefined || next.dir !== dirPath) return;
          const got = allowed ? this.#openSmall(at, next, maxBytes) : undefined;
          if (got === undefined) {
            stop = true;
            return;
          }
          opened.push(got);
          total += got.stats.size;
          i++;
        }
      });
      if (stop) return;
    }
  }

  /** Opens one small file of the entered directory with the proof; undefined (nothing left open) when it must go the long way. */
  #openSmall(
    at: Inside,
    request: { path: string; name: string },
    maxBytes: number,
  ): SmallOpen | undefined {
    const realPath = join(at.real, request.name);
    // Below an allowed directory only the child's own path and name can still be refused.
    if (
      this.#rules.childRefused(request.path, request.name) ||
      this.#rules.childRefused(realPath, request.name)
    ) return undefined;
    let fd = -1;
    try {
      fd = openSync(realPath, OPEN_FLAGS);
      const stats = fstatSync(fd);
      if (!stats.isFile() || stats.size > maxBytes) {
        closeSync(fd);
        return undefined;
      }
      const now = at.lstat(request.name);
      if (!now.isFile || now.dev !== stats.dev || now.ino !== stats.ino) {
        closeSync(fd);
        return undefined;
      }
      return { fd, stats };
    } catch {
      if (fd >= 0) closeSync(fd);
      return undefined;
    }
  }
}

/** Whether the entered directory is the checked one (same kernel path, same inode). */
function isThatDirectory(
  at: Inside,
  dir: { realPath: string; info: Deno.FileInfo },
): boolean {
  if (at.real !== dir.realPath) return false;
  const self = at.stat();
  return self.isDirectory && sameFile(self, dir.info);
}

/** A requested path split into its normalised form, directory and name; undefined for the root or a bad path. */
function splitRequest(
  requestPath: string,
): { path: string; dir: string; name: string } | undefined {
  let path: string;
  try {
    path = normalizeRequest(requestPath);
  } catch {
    return undefined;
  }
  const slash = path.lastIndexOf("/");
  if (slash === path.length - 1) return undefined; // the root itself
  return {
    path,
    dir: slash === 0 ? "/" : path.slice(0, slash),
    name: path.slice(slash + 1),
  };
}

/** Fills `data` from the start of the file; false if the file ends first. */
function readFully(fd: number, data: Uint8Array): boolean {
  let at = 0;
  while (at < data.length) {
    const n = readSync(fd, data, at, data.length - at, at);
    if (n === 0) return false;
    at += n;
  }
  return true;
}

/**
 * `Deno.open` of a checked file's real path (for `OpenedFile.native`) that
 * has not settled yet. `Deno.open` cannot say `O_NONBLOCK`, so a FIFO swapped
 * in under the path makes it hang until a writer comes; such opens are given
 * up on after `NATIVE_OPEN_MS`, and while `NATIVE_OPENS_PENDING` of them are
 * outstanding no new one starts: a file is then read through its handle.
 */
let nativeOpensPending = 0;
const NATIVE_OPENS_PENDING = 16;
const NATIVE_OPEN_MS = 1000;

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
    if (this.#closed || nativeOpensPending >= NATIVE_OPENS_PENDING) {
      return undefined;
    }
    nativeOpensPending++;
    const opening = Deno.open(this.#realPath, { read: true }).finally(() => {
      nativeOpensPending--;
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), NATIVE_OPEN_MS);
    });
    let file: Deno.FsFile | undefined;
    try {
      file = await Promise.race([opening, late]);
    } catch {
      return undefined;
    } finally {
      clearTimeout(timer);
    }
    if (file === undefined) {
      opening.then((f) => f.close(), () => {});
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

/** The `Deno.FileInfo` of a node `fstat`, so identity tags come out the same as from `Deno.lstat`. */
function toFileInfo(st: Stats): Deno.FileInfo {
  return {
    isFile: st.isFile(),
    isDirectory: st.isDirectory(),
    isSymlink: st.isSymbolicLink(),
    size: st.size,
    mtime: st.mtime,
    atime: st.atime,
    birthtime: st.birthtime,
    ctime: st.ctime,
    dev: st.dev,
    ino: st.ino,
    mode: st.mode,
    nlink: st.nlink,
    uid: st.uid,
    gid: st.gid,
    rdev: st.rdev,
    blksize: st.blksize,
    blocks: st.blocks,
    isBlockDevice: st.isBlockDevice(),
    isCharDevice: st.isCharacterDevice(),
    isFifo: st.isFIFO(),
    isSocket: st.isSocket(),
  };
}

/** Validates a requested path and returns it normalised (absolute, no `.`/`..`/empty segments, no trailing slash). */
function normalizeRequest(requestPath: string): string {
  const bad = (why: string) =>
    new HttpError(
      400,
      "bad_path",
      `Cannot serve ${quote(requestPath)}: ${why}`,
    );
  if (typeof requestPath !== "string" || requestPath === "") {
    throw new HttpError(400, "bad_path", "A path is required");
  }
  if (requestPath.includes("\0")) throw bad("a path cannot contain NUL");
  // A UTF-16 code unit is at most 3 UTF-8 bytes: most paths need no encoding to be measured.
  if (utf8Longer(requestPath, MAX_PATH_BYTES)) {
    throw bad(`a path is at most ${MAX_PATH_BYTES} bytes`);
  }
  if (!requestPath.startsWith("/")) throw bad("the path must be absolute");
  // Lexical normalisation: `..` cannot climb above `/`, and the result is checked again on the kernel's path.
  const path = stripSlash(posix.normalize(requestPath));
  for (const component of path.split("/")) {
    if (utf8Longer(component, MAX_NAME_BYTES)) {
      throw bad(`a file name is at most ${MAX_NAME_BYTES} bytes`);
    }
  }
  return path;
}

/** Maps a file-system error about `path` to an `HttpError` whose message shows only the requested path. */
function fsFailure(path: string, error: unknown): unknown {
  const code = (error as { code?: string } | null)?.code;
  if (
    error instanceof Deno.errors.NotFound ||
    error instanceof Deno.errors.NotADirectory || code === "ENOENT" ||
    code === "ENOTDIR"
  ) {
    return new HttpError(
      404,
      "not_found",
      `Cannot serve ${quote(path)}: no such file or directory`,
    );
  }
  if (error instanceof Deno.errors.FilesystemLoop || code === "ELOOP") {
    return new HttpError(
      404,
      "not_found",
      `Cannot serve ${quote(path)}: too many levels of symbolic links`,
    );
  }
  if (
    error instanceof Deno.errors.PermissionDenied ||
    error instanceof Deno.errors.NotCapable || code === "EACCES" ||
    code === "EPERM"
  ) {
    return new HttpError(
      403,
      "permission_denied",
      `Cannot serve ${quote(path)}: permission denied`,
    );
  }
  return error;
}

/** `dir/name...`, with `/` as a directory handled. */
function join(dir: string, ...names: string[]): string {
  if (names.length === 0) return dir;
  return dir === "/" ? `/${names.join("/")}` : `${dir}/${names.join("/")}`;
}

/** Same device and inode. */
function sameFile(a: Deno.FileInfo, b: Deno.FileInfo): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}
