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
 *
 * The rules are jail/rules.ts; opening with the identity proof is
 * jail/opened_file.ts; the bundle's synchronous small-file reads are
 * jail/small_files.ts; requested paths are jail/request_path.ts.
 */
import { posix } from "node:path";
import { HttpError } from "../../shared/errors.ts";
import type { EntryType } from "../../shared/wire.ts";
import { type CwdAnchor, cwdAnchor, type Inside } from "./cwd_anchor.ts";
import { openChecked, type OpenedFile, sameFile } from "./opened_file.ts";
import { fsFailureStatus } from "../error_status.ts";
import { fsFailure, join, normalizeRequest } from "./request_path.ts";
import {
  type SmallFile,
  SmallFileReads,
  type SmallReadCache,
} from "./small_files.ts";
import {
  compileRules,
  type JailRules,
  type PathGuardOptions,
  quote,
} from "./rules.ts";

export { anyGlob, type PathGuardOptions } from "./rules.ts";
export type { OpenedFile } from "./opened_file.ts";
export {
  newSmallReadCache,
  type SmallFile,
  type SmallReadCache,
} from "./small_files.ts";

/** Symlinks followed for one path at most (Linux's limit). */
const MAX_LINKS = 40;

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

/** Names of directories read before, by identity and times (see `PathGuard.readDirectory`). */
export interface NamesCache {
  get(key: string): string[] | undefined;
  set(key: string, names: string[]): void;
}

/**
 * What a listing learns of one entry of a checked directory: its `lstat`,
 * `"missing"` when the name is not there (it vanished, or it is a name the
 * runtime cannot spell: not valid UTF-8), or `"failed"` when it could not
 * be looked at.
 */
export type DirEntryInfo = Deno.FileInfo | "missing" | "failed";

/**
 * Why a checked directory's names could not be read: `"missing"` (it is
 * gone), `"changed"` (its path no longer leads to that very directory),
 * `"denied"` (no permission) or `"failed"` (any other error).
 */
export type DirectoryFailure = "missing" | "changed" | "denied" | "failed";

/**
 * A symlink of a checked directory, followed: `ok` with the link's own
 * `lstat`, its text and the entry it leads to (which passed every rule);
 * `missing` when the name is gone; `refused` when it leads outside the
 * served paths, to a refused entry, nowhere or round in a loop (nothing
 * says which, nor where).
 */
export type FollowedLink =
  | { kind: "ok"; link: Deno.FileInfo; text: string; target: CheckedPath }
  | { kind: "missing" }
  | { kind: "refused" };

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
   * inode; why not when `dir.realPath` no longer leads to that very
   * directory or it cannot be read. With `cache`, names read before are
   * used again while the directory (same inode) has the same modification
   * and change times.
   */
  readDirectory(
    dir: { realPath: string; info: Deno.FileInfo },
    cache?: NamesCache,
  ): string[] | DirectoryFailure;
  /**
   * `lstat` of each name in a checked directory, through its inode;
   * undefined as a whole when `dir.realPath` no longer leads to that very
   * directory.
   */
  describeEntries(
    dir: { realPath: string; info: Deno.FileInfo },
    names: readonly string[],
  ): DirEntryInfo[] | undefined;
  /**
   * Follows the symlink `name` of a checked directory: its `lstat` and its
   * text are read together through the directory's inode (so the text told
   * is the one followed), then the text is followed as `check` follows a
   * link. Undefined when `dir.realPath` no longer leads to that very
   * directory. The caller checks the link's own name (`allowsEntry`).
   */
  followLink(
    dir: { realPath: string; info: Deno.FileInfo },
    name: string,
  ): FollowedLink | undefined;
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

/**
 * Builds the jail: compiles the rules (a missing `Only_allowed_path` entry is
 * a `ConfigError`) and prepares the working-directory anchor (a
 * `ConfigError` when `/proc` cannot be used for it).
 */
export async function createPathGuard(
  options: PathGuardOptions,
): Promise<PathGuard> {
  const rules = await compileRules(options);
  const anchor = cwdAnchor();
  return new Jail(rules, anchor, new SmallFileReads(rules, anchor));
}

class Jail implements PathGuard {
  #rules: JailRules;
  #anchor: CwdAnchor;
  /** `allowsEntry`'s last directory and whether the rules allow what is below it. */
  #lastDir: string | undefined;
  #lastDirAllowed = false;
  #small: SmallFileReads;

  constructor(rules: JailRules, anchor: CwdAnchor, small: SmallFileReads) {
    this.#rules = rules;
    this.#anchor = anchor;
    this.#small = small;
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
  #resolve(path: string, fromLink = false): CheckedPath {
    const rules = this.#rules;
    let target = path;
    let viaLink = fromLink;
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
    if (fsFailureStatus(error)?.kind !== "missing") {
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

  /**
   * Whether every path a link's text names on its way passes the rules, as
   * the text reads (from `from`, its directory): the text may be told, and
   * `a/../b` is followed as `b`, so a refused `a` must not ride along in it.
   * Ancestors of a served directory are on the way to it, not refused.
   */
  #namesOnlyAllowed(from: string, text: string): boolean {
    const rules = this.#rules;
    let at = text.startsWith("/") ? "/" : from;
    for (const part of text.split("/")) {
      if (part === "" || part === ".") continue;
      if (part === "..") {
        at = posix.dirname(at);
        continue;
      }
      at = join(at, part);
      const onTheWay = rules.configuredRoots.some((root) =>
        root.startsWith(`${at}/`)
      );
      if (!onTheWay && rules.refusal(at, at, rules.configuredRoots)) {
        return false;
      }
    }
    return true;
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
    return openChecked(this.#anchor, checked);
  }

  readDirectory(
    dir: { realPath: string; info: Deno.FileInfo },
    cache?: NamesCache,
  ): string[] | DirectoryFailure {
    try {
      return this.#anchor.run(dir.realPath, (at): string[] | "changed" => {
        if (!isThatDirectory(at, dir)) return "changed";
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
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return "missing";
      if (error instanceof Deno.errors.PermissionDenied) return "denied";
      // A directory swapped for a file, or for a link to one, between
      // being found and being entered.
      if (error instanceof Deno.errors.NotADirectory) return "changed";
      return "failed";
    }
  }

  describeEntries(
    dir: { realPath: string; info: Deno.FileInfo },
    names: readonly string[],
  ): DirEntryInfo[] | undefined {
    try {
      return this.#anchor.run(dir.realPath, (at) => {
        if (!isThatDirectory(at, dir)) return undefined;
        return names.map((name): DirEntryInfo => {
          try {
            return at.lstat(name);
          } catch (error) {
            return error instanceof Deno.errors.NotFound ? "missing" : "failed";
          }
        });
      });
    } catch {
      return undefined;
    }
  }

  followLink(
    dir: { realPath: string; info: Deno.FileInfo },
    name: string,
  ): FollowedLink | undefined {
    let read: { link: Deno.FileInfo; text: string } | "missing" | "refused";
    try {
      const found = this.#anchor.run(dir.realPath, (at) => {
        if (!isThatDirectory(at, dir)) return undefined;
        try {
          const link = at.lstat(name);
          // Replaced by something else since it was described: not followed.
          if (!link.isSymlink) return "refused";
          return { link, text: at.readLink(name) };
        } catch (error) {
          return error instanceof Deno.errors.NotFound ? "missing" : "refused";
        }
      });
      if (found === undefined) return undefined;
      read = found;
    } catch {
      return undefined;
    }
    if (read === "missing" || read === "refused") return { kind: read };
    if (!this.#namesOnlyAllowed(dir.realPath, read.text)) {
      return { kind: "refused" };
    }
    try {
      const target = this.#resolve(
        posix.resolve(dir.realPath, read.text),
        true,
      );
      return { kind: "ok", link: read.link, text: read.text, target };
    } catch {
      return { kind: "refused" };
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
    return this.#small.read(requestPaths, maxBytes, maxTotal, cache);
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
