/** The path jail of hsyncd: decides, after resolving symlinks, whether a requested path may be served. */
import { posix } from "node:path";
import {
  constants as fsConstants,
  type FileHandle,
  open as nodeOpen,
} from "node:fs/promises";
import { closeSync, fstatSync, openSync, readSync, type Stats } from "node:fs";
import picomatch from "picomatch";
import { ConfigError, HttpError } from "./errors.ts";
import type { EntryType } from "./wire.ts";

/** Longest request path accepted, in UTF-8 bytes (Linux PATH_MAX). */
export const MAX_PATH_BYTES = 4096;
/** Longest single path component accepted, in UTF-8 bytes (Linux NAME_MAX). */
export const MAX_NAME_BYTES = 255;

/** Pseudo file systems whose files report fake sizes: never served, whatever the configuration says. */
const PSEUDO_ROOTS = ["/proc", "/sys"];

const encoder = new TextEncoder();

/** Rules of the jail, as configured (see `[hsyncd]` in hsync.ini). */
export interface PathGuardOptions {
  /** `Only_allowed_path`: absolute directories; empty allows everything not otherwise refused. Each must exist. */
  onlyAllowedPath?: readonly string[];
  /** `Forbidden_dir`: absolute directories (refused with everything below) or bare names (`.ssh`, refused anywhere). */
  forbiddenDir?: readonly string[];
  /** `Forbidden_file`: globs matched against file names. */
  forbiddenFile?: readonly string[];
  /** Paths always refused with everything below them: `HSYNC_DIR` and the server's certificate, key and authorized-keys files. */
  alwaysDenied?: readonly string[];
}

/** A path that passed every rule. */
export interface CheckedPath {
  /** The requested path, normalised (what error messages and file names show). */
  path: string;
  /** The path with every symlink resolved (what was checked and what is opened). */
  realPath: string;
  type: EntryType;
  /** `lstat` of `realPath`. */
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

/** The jail. All methods throw `HttpError` (400, 403, 404, 409) when a path cannot be served. */
export interface PathGuard {
  /** Validates, normalises and resolves a requested absolute path, and checks the rules on both forms. */
  check(requestPath: string): Promise<CheckedPath>;
  /**
   * Whether the entry `name` of an already checked real directory passes the
   * rules, without touching the file system. Only for entries that are not
   * symlinks: a symlink must go through `check`.
   */
  allowsEntry(realDirPath: string, name: string): boolean;
  /**
   * Opens a checked regular file without ever blocking on a FIFO or
   * following a symlink, and verifies that the opened handle is the file
   * that was checked (same device and inode) and that the checked real path
   * still leads to it with no symlink on the way; otherwise 409 `changed`.
   */
  openFile(checked: CheckedPath): Promise<OpenedFile>;
  /**
   * Checks and reads a whole small regular file synchronously, with the same
   * rules and the same identity proof as `check` + `openFile`. Returns
   * undefined whenever anything is unusual (missing, refused, a symlink, a
   * race, larger than `maxBytes`): the caller then takes the asynchronous
   * path, which produces the precise answer. `cache` (from
   * `newSmallReadCache`) keeps what was learnt of parent directories within
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
   * (a prefix of `requestPaths`). Each parent directory's real path is
   * proven once per batch, after its files were opened and before each is
   * compared with what its path now leads to.
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

/** A small file opened by `readSmallBatchSync`, its bytes not read yet. */
interface SmallOpen {
  fd: number;
  realPath: string;
  dir: SmallDir;
  /** `fstat` of the open file. */
  stats: Stats;
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

/** What one request learnt of parent directories (normalised requested path -> facts). */
export type SmallReadCache = Map<string, SmallDir>;

interface SmallDir {
  /** The directory with every symlink resolved. */
  real: string;
  /** Whether the rules allow what is below it, in both forms (then only a child's own name and path remain to check). */
  allowed: boolean;
}

/** A cache for `readSmallSync`, valid for one request. */
export function newSmallReadCache(): SmallReadCache {
  return new Map();
}

interface DirRule {
  /** The entry as configured, for messages. */
  entry: string;
  /** The entry as written and as resolved. */
  forms: string[];
}

/**
 * Builds the jail: resolves the configured directories once (a missing
 * `Only_allowed_path` entry is a `ConfigError`) and compiles the globs.
 */
export async function createPathGuard(
  options: PathGuardOptions,
): Promise<PathGuard> {
  const configuredRoots: string[] = [];
  const realRoots: string[] = [];
  for (const root of options.onlyAllowedPath ?? []) {
    const normal = configuredAbsolute(root, "Only_allowed_path");
    let real: string;
    try {
      real = await Deno.realPath(normal);
    } catch (error) {
      throw new ConfigError(
        `Cannot use Only_allowed_path "${root}": ${describeFsError(error)}`,
      );
    }
    configuredRoots.push(normal);
    realRoots.push(real);
  }

  const dirRules: DirRule[] = [];
  const forbiddenNames = new Set<string>();
  for (const entry of options.forbiddenDir ?? []) {
    if (entry.startsWith("/")) {
      const normal = configuredAbsolute(entry, "Forbidden_dir");
      dirRules.push({
        entry,
        forms: unique([normal, await realPathLoose(normal)]),
      });
    } else if (
      entry === "" || entry.includes("/") || entry === "." || entry === ".." ||
      entry.includes("\0")
    ) {
      throw new ConfigError(
        `Invalid Forbidden_dir entry "${entry}": expected an absolute directory or a bare directory name`,
      );
    } else {
      forbiddenNames.add(entry);
    }
  }

  const fileRules = (options.forbiddenFile ?? []).map((glob) => ({
    glob,
    test: picomatch(glob, { dot: true }) as (name: string) => boolean,
  }));

  const denied: string[] = [];
  for (const p of options.alwaysDenied ?? []) {
    if (p === "") continue;
    const normal = stripSlash(posix.resolve(Deno.cwd(), p));
    denied.push(normal, await realPathLoose(normal));
  }

  return new Jail({
    configuredRoots: unique([...configuredRoots, ...realRoots]),
    realRoots: unique(realRoots),
    dirRules,
    forbiddenNames,
    fileRules,
    anyFileRule: anyGlob(fileRules.map((rule) => rule.glob)),
    denied: unique(denied),
  });
}

/**
 * One test for a whole list of `Forbidden_file` globs, as picomatch decides
 * each (a name equal to a glob, or matching its expression), but with one
 * regular expression instead of one call per glob: the listing and the
 * bundles ask it about every file they serve.
 */
export function anyGlob(globs: readonly string[]): (name: string) => boolean {
  if (globs.length === 0) return () => false;
  const literal = new Set(globs);
  const all = new RegExp(
    globs.map((glob) => picomatch.makeRe(glob, { dot: true }).source).join(
      "|",
    ),
  );
  return (name) => name !== "" && (literal.has(name) || all.test(name));
}

interface JailRules {
  /** Roots as configured and as resolved: what a requested path is compared with. */
  configuredRoots: string[];
  /** Roots as resolved: what a real path is compared with. */
  realRoots: string[];
  dirRules: DirRule[];
  forbiddenNames: Set<string>;
  fileRules: Array<{ glob: string; test: (name: string) => boolean }>;
  /** Whether any of `fileRules` refuses a name (they say which). */
  anyFileRule: (name: string) => boolean;
  denied: string[];
}

class Jail implements PathGuard {
  #rules: JailRules;
  /** `allowsEntry`'s last directory and whether the rules allow what is below it. */
  #lastDir: string | undefined;
  #lastDirAllowed = false;

  constructor(rules: JailRules) {
    this.#rules = rules;
  }

  async check(requestPath: string): Promise<CheckedPath> {
    const path = normalizeRequest(requestPath);
    // Rules first, on the path as asked: a refused path is refused whether or not it exists.
    const early = this.#refusal(path, path, this.#rules.configuredRoots);
    if (early !== undefined) throw early;

    let realPath: string;
    try {
      realPath = await Deno.realPath(path);
    } catch (error) {
      throw await this.#resolveFailure(path, error);
    }
    const late = this.#refusal(realPath, path, this.#rules.realRoots);
    if (late !== undefined) throw late;

    let info: Deno.FileInfo;
    try {
      info = await Deno.lstat(realPath);
    } catch (error) {
      throw fsFailure(path, error);
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
    return { path, realPath, type, info };
  }

  allowsEntry(realDirPath: string, name: string): boolean {
    if (name === "" || name.includes("/") || name === "." || name === "..") {
      return false;
    }
    const path = realDirPath === "/" ? `/${name}` : `${realDirPath}/${name}`;
    // A listing asks about every entry of one directory in turn: the verdict
    // on the directory is kept, and each entry adds only its own path and name.
    if (this.#lastDir !== realDirPath) {
      this.#lastDirAllowed = this.#refusal(
        realDirPath,
        realDirPath,
        this.#rules.realRoots,
      ) === undefined;
      this.#lastDir = realDirPath;
    }
    return this.#lastDirAllowed && !this.#childRefused(path, name);
  }

  async openFile(checked: CheckedPath): Promise<OpenedFile> {
    const changed = () =>
      new HttpError(
        409,
        "changed",
        `Cannot serve ${
          quote(checked.path)
        }: it changed while being opened, retry`,
      );
    if (checked.type !== "file") {
      throw new HttpError(
        400,
        "not_a_file",
        `Cannot read ${quote(checked.path)}: it is a directory`,
      );
    }
    // O_NONBLOCK: a FIFO swapped in since the check opens at once instead of hanging (and is then refused).
    // O_NOFOLLOW: a symlink swapped in since the check is refused.
    let handle: FileHandle;
    try {
      handle = await nodeOpen(
        checked.realPath,
        fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | fsConstants.O_NOFOLLOW,
      );
    } catch (error) {
      if ((error as { code?: string }).code === "ELOOP") throw changed();
      throw fsFailure(checked.path, error);
    }
    try {
      const info = toFileInfo(await handle.stat());
      // Same device and inode as checked: whatever path led here, these are the checked bytes.
      if (!info.isFile || !sameFile(info, checked.info)) throw changed();
      // The check itself could have been raced: a directory on the way swapped
      // for a symlink between realpath and lstat makes both the checked and
      // the opened file one from outside. Now that the handle is fixed, the
      // checked path must still resolve to itself, with no symlink on the
      // way, and lead to this very file.
      let again: string;
      let now: Deno.FileInfo;
      try {
        again = await Deno.realPath(checked.realPath);
        now = await Deno.lstat(checked.realPath);
      } catch {
        throw changed();
      }
      if (again !== checked.realPath || !sameFile(now, info)) throw changed();
      return new HandleFile(handle, info, checked.realPath);
    } catch (error) {
      await handle.close();
      throw error;
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
      let total = 0;
      for (const requestPath of requestPaths) {
        if (total >= maxTotal) break;
        const got = this.#openSmall(requestPath, maxBytes, cache);
        if (got === undefined) break;
        opened.push(got);
        total += got.stats.size;
      }
      // One buffer for the whole batch: each file's bytes are a view of it.
      const slab = new Uint8Array(total);
      const datas: Uint8Array[] = [];
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
        datas.push(data);
        at += data.length;
      }
      // The proof, in this order: every file is open (its identity fixed);
      // now each parent's real path must still resolve to itself (no
      // directory on the way swapped for a symlink), and then each real path
      // must lead to the very file that was opened. Defeating it takes a swap
      // that is undone before the first step and redone before the second.
      const proven = new Set<SmallDir>();
      let good = 0;
      for (const item of opened.slice(0, datas.length)) {
        if (!proven.has(item.dir)) {
          if (!resolvesToItself(item.dir.real)) break;
          proven.add(item.dir);
        }
        let now: Deno.FileInfo;
        try {
          now = Deno.lstatSync(item.realPath);
        } catch {
          break;
        }
        if (now.dev !== item.stats.dev || now.ino !== item.stats.ino) break;
        good++;
      }
      return opened.slice(0, good).map((item, i) => ({
        info: toFileInfo(item.stats),
        data: datas[i],
      }));
    } finally {
      for (const item of opened) closeSync(item.fd);
    }
  }

  /** Checks and opens one small file; undefined (nothing left open) when it must go the long way. */
  #openSmall(
    requestPath: string,
    maxBytes: number,
    cache: SmallReadCache,
  ): SmallOpen | undefined {
    let path: string;
    try {
      path = normalizeRequest(requestPath);
    } catch {
      return undefined;
    }
    const slash = path.lastIndexOf("/");
    if (slash === path.length - 1) return undefined; // the root itself
    const dirPath = slash === 0 ? "/" : path.slice(0, slash);
    const name = path.slice(slash + 1);
    let dir = cache.get(dirPath);
    if (dir === undefined) {
      let real: string;
      try {
        real = Deno.realPathSync(dirPath);
      } catch {
        return undefined;
      }
      dir = {
        real,
        allowed:
          this.#refusal(dirPath, dirPath, this.#rules.configuredRoots) ===
            undefined &&
          this.#refusal(real, dirPath, this.#rules.realRoots) === undefined,
      };
      cache.set(dirPath, dir);
    }
    // Below an allowed directory only the child's own path and name can still be refused.
    if (!dir.allowed || this.#childRefused(path, name)) return undefined;
    const realPath = dir.real === "/" ? `/${name}` : `${dir.real}/${name}`;
    if (this.#childRefused(realPath, name)) return undefined;
    let fd = -1;
    /** Closes the file (once) and declines it. */
    const drop = (): undefined => {
      const open = fd;
      fd = -1;
      closeSync(open);
      return undefined;
    };
    try {
      // O_NOFOLLOW: a final symlink fails here (ELOOP) and goes the long way.
      // O_NONBLOCK: a FIFO swapped in opens at once (and is then declined).
      fd = openSync(
        realPath,
        fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | fsConstants.O_NOFOLLOW,
      );
      const stats = fstatSync(fd);
      if (!stats.isFile() || stats.size > maxBytes) return drop();
      return { fd, realPath, dir, stats };
    } catch {
      return fd >= 0 ? drop() : undefined;
    }
  }

  /**
   * Whether a rule refuses `path` (whose parent passed every rule) for
   * itself: only an exact match of a refused path, or its name.
   */
  #childRefused(path: string, name: string): boolean {
    const rules = this.#rules;
    if (PSEUDO_ROOTS.includes(path) || rules.denied.includes(path)) return true;
    for (const rule of rules.dirRules) {
      if (rule.forms.includes(path)) return true;
    }
    return rules.forbiddenNames.has(name) || rules.anyFileRule(name);
  }

  /** The rule that refuses `path`, if any; messages show `shown` (the requested path, never the real one). */
  #refusal(
    path: string,
    shown: string,
    roots: readonly string[],
  ): HttpError | undefined {
    const refuse = (code: string, why: string) =>
      new HttpError(403, code, `Cannot serve ${quote(shown)}: ${why}`);
    for (const pseudo of PSEUDO_ROOTS) {
      if (within(path, pseudo)) {
        return refuse(
          "not_regular",
          `files under ${pseudo} are pseudo-files and are never served`,
        );
      }
    }
    for (const d of this.#rules.denied) {
      if (within(path, d)) {
        return refuse(
          "forbidden",
          "it belongs to hsyncd (its state directory, certificate or keys)",
        );
      }
    }
    for (const rule of this.#rules.dirRules) {
      if (rule.forms.some((form) => within(path, form))) {
        return refuse(
          "forbidden_dir",
          `refused by Forbidden_dir "${rule.entry}"`,
        );
      }
    }
    if (this.#rules.forbiddenNames.size > 0) {
      for (const component of path.split("/")) {
        if (this.#rules.forbiddenNames.has(component)) {
          return refuse(
            "forbidden_dir",
            `refused by Forbidden_dir "${component}"`,
          );
        }
      }
    }
    const name = posix.basename(path);
    if (name !== "" && this.#rules.anyFileRule(name)) {
      for (const rule of this.#rules.fileRules) {
        if (rule.test(name)) {
          return refuse(
            "forbidden_file",
            `refused by Forbidden_file "${rule.glob}"`,
          );
        }
      }
    }
    if (roots.length > 0 && !roots.some((root) => within(path, root))) {
      return refuse(
        "outside_allowed",
        "it is outside every Only_allowed_path directory",
      );
    }
    return undefined;
  }

  /**
   * Turns a failed `realpath` into an answer. A missing path is 404 only when
   * the part of it that exists, resolved, passes the rules: otherwise a symlink
   * into a forbidden area would tell which files exist there.
   */
  async #resolveFailure(path: string, error: unknown): Promise<unknown> {
    if (
      error instanceof Deno.errors.NotFound ||
      error instanceof Deno.errors.NotADirectory
    ) {
      const rest: string[] = [];
      let dir = path;
      while (dir !== "/") {
        rest.unshift(posix.basename(dir));
        dir = posix.dirname(dir);
        let real: string;
        try {
          real = await Deno.realPath(dir);
        } catch {
          continue;
        }
        const candidate = posix.join(real, ...rest);
        const refused = this.#refusal(candidate, path, this.#rules.realRoots);
        if (refused !== undefined) return refused;
        break;
      }
    }
    return fsFailure(path, error);
  }
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

/** An open regular file: positioned reads on a handle opened without following symlinks. */
class HandleFile implements OpenedFile {
  readonly info: Deno.FileInfo;
  #handle: FileHandle;
  #realPath: string;
  #closed = false;

  constructor(handle: FileHandle, info: Deno.FileInfo, realPath: string) {
    this.#handle = handle;
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
    // Whatever the path led to, only the very inode of the proven handle is
    // used: same device and inode means the same bytes.
    try {
      const info = await file.stat();
      if (info.isFile && sameFile(info, this.info)) return file;
    } catch {
      // fall through: closed below, and the handle serves
    }
    file.close();
    return undefined;
  }

  async read(buffer: Uint8Array, position: number): Promise<number> {
    const { bytesRead } = await this.#handle.read(
      buffer,
      0,
      buffer.length,
      position,
    );
    return bytesRead;
  }

  async stat(): Promise<Deno.FileInfo> {
    return toFileInfo(await this.#handle.stat());
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#handle.close();
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
  // Lexical normalisation: `..` cannot climb above `/`, and the result is checked again after realpath.
  const path = stripSlash(posix.normalize(requestPath));
  for (const component of path.split("/")) {
    if (utf8Longer(component, MAX_NAME_BYTES)) {
      throw bad(`a file name is at most ${MAX_NAME_BYTES} bytes`);
    }
  }
  return path;
}

/** Whether `text` takes more than `max` bytes in UTF-8. */
function utf8Longer(text: string, max: number): boolean {
  return text.length * 3 > max && encoder.encode(text).length > max;
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
    error instanceof Deno.errors.PermissionDenied || code === "EACCES" ||
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

function describeFsError(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such directory";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  return error instanceof Error ? error.message : String(error);
}

function configuredAbsolute(entry: string, key: string): string {
  if (!entry.startsWith("/") || entry.includes("\0")) {
    throw new ConfigError(
      `Invalid ${key} entry "${entry}": expected an absolute path`,
    );
  }
  return stripSlash(posix.normalize(entry));
}

/** `realpath` of the longest existing prefix of `path`, with the rest appended; `path` itself when nothing resolves. */
async function realPathLoose(path: string): Promise<string> {
  const rest: string[] = [];
  let dir = path;
  while (true) {
    try {
      return posix.join(await Deno.realPath(dir), ...rest);
    } catch {
      if (dir === "/") return path;
      rest.unshift(posix.basename(dir));
      dir = posix.dirname(dir);
    }
  }
}

/** Whether `realPath` still resolves to itself (no component has become a symlink). */
function resolvesToItself(realPath: string): boolean {
  try {
    return Deno.realPathSync(realPath) === realPath;
  } catch {
    return false;
  }
}

/** Same device and inode. */
function sameFile(a: Deno.FileInfo, b: Deno.FileInfo): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/** True when `path` is `dir` or below it, compared by whole components. */
function within(path: string, dir: string): boolean {
  if (dir === "/") return true;
  return path === dir || path.startsWith(`${dir}/`);
}

function stripSlash(path: string): string {
  return path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}

/** A value quoted for a message, control characters escaped and length bounded. */
function quote(value: string): string {
  const shown = value.length > 300 ? `${value.slice(0, 300)}...` : value;
  return JSON.stringify(shown);
}
