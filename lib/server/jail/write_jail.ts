/**
 * Where and how hsyncd writes (push): only below a `Writable_path`
 * directory, and every file created, opened, renamed or removed inside a
 * directory the kernel actually entered (lib/server/jail/cwd_anchor.ts).
 *
 * The steps, each in one synchronous section of the working directory:
 * - the directory of a target is entered (`chdir`) and the rules are checked
 *   on its kernel path (`getcwd`): inside a writable root, outside
 *   `HSYNC_DIR`, the server's key files and every deny rule;
 * - a new file is created in that very directory with `O_CREAT|O_EXCL`
 *   (mode 0600) under a fresh name, and renamed to its name there: both
 *   calls reach the directory through `/proc/self/cwd`, not by name;
 * - a file is opened for writing without `O_CREAT` or `O_TRUNC` (Deno
 *   resolves an open by name), then must be the very inode, a regular file
 *   with one link, that its name holds in the entered directory: otherwise it
 *   is closed before a byte is written (409 `changed`);
 * - renames and removals name entries of the entered directory only; an
 *   entry at the final name is replaced, never followed.
 * A directory swapped for a symlink at any moment can make a push fail,
 * never create, replace or truncate anything elsewhere.
 */
import {
  closeSync,
  constants as fsConstants,
  fchmodSync,
  fdatasyncSync,
  writeSync,
} from "node:fs";
import { posix } from "node:path";
import { HttpError } from "../../shared/errors.ts";
import { readFully } from "../../shared/fd_read.ts";
import { JOURNAL_SUFFIX, PART_SUFFIX } from "../../shared/own_names.ts";
import { type CwdAnchor, cwdAnchor, type Inside } from "./cwd_anchor.ts";
import {
  asWriteRefusal,
  changed,
  deepestDir,
  describe,
  join,
  lstatOrUndefined,
  openForWriting,
  openProven,
  type ProvenFd,
  resolveWritableRoots,
  sameFile,
  splitWritePath,
  tryRemove,
  writeFailure,
} from "./write_support.ts";
import { setMtimeMsOnce, withMtimeMs } from "../../shared/fd_times.ts";
import { compileRules, type JailRules, quote, within } from "./rules.ts";
import type { EntryType } from "../../shared/wire.ts";
import { removeEntry } from "./write_delete.ts";
import { checkLinkSource, placeLink, placeSymlink } from "./write_links.ts";
import type {
  ReplaceMeta,
  WritableFile,
  WriteJail,
  WriteJailOptions,
  WriteTarget,
} from "./write_jail_api.ts";

export type {
  ReplaceMeta,
  WritableFile,
  WriteJail,
  WriteJailOptions,
  WriteTarget,
} from "./write_jail_api.ts";

/** Flags of every open for writing: no create, no truncate, and a FIFO fails at once instead of hanging. */
const WRITE_FLAGS = fsConstants.O_WRONLY | fsConstants.O_NONBLOCK;
/** Flags of every open for reading a file of the jail's own (a journal). */
const READ_FLAGS = fsConstants.O_RDONLY | fsConstants.O_NONBLOCK;
/** Prefix of files hsyncd is creating (then renames): never served, never a target. */
const NEW_PREFIX = ".hsync-new-";

/**
 * Builds the write jail: resolves `Writable_path` once (a missing entry is a
 * `ConfigError`) and compiles the same deny rules as the read jail.
 */
export async function createWriteJail(
  options: WriteJailOptions,
): Promise<WriteJail> {
  const roots = await resolveWritableRoots(options.writablePath);
  // The deny rules of reads, with the writable roots in place of Only_allowed_path.
  const rules = await compileRules({ ...options, onlyAllowedPath: [] });
  return new Writer(roots, rules, cwdAnchor());
}

class Writer implements WriteJail {
  #roots: string[];
  #rules: JailRules;
  #anchor: CwdAnchor;

  constructor(roots: string[], rules: JailRules, anchor: CwdAnchor) {
    this.#roots = roots;
    this.#rules = rules;
    this.#anchor = anchor;
  }

  get enabled(): boolean {
    return this.#roots.length > 0;
  }

  target(requestPath: string): WriteTarget {
    const { path, dir, name } = splitWritePath(requestPath);
    return this.#in(path, dir, (at) => {
      this.#check(path, at.real, name);
      return { path, dir: at.real, name };
    });
  }

  makeDirs(requestPath: string, mode = 0o755): string {
    const { path } = splitWritePath(requestPath);
    // The deepest existing ancestor inside a writable root, then one level at a time.
    const names = path.split("/").slice(1);
    const { known, depth } = deepestDir(names);
    let real = this.#in(path, known, (at) => at.real);
    for (let i = depth; i < names.length; i++) {
      const name = names[i];
      real = this.#in(path, real, (at) => {
        if (at.real !== real) throw changed(path);
        const child = join(at.real, name);
        this.#check(path, at.real, name, true);
        let info = lstatOrUndefined(at, name);
        if (info === undefined) {
          try {
            at.mkdir(name, mode & 0o777);
          } catch (error) {
            if (!(error instanceof Deno.errors.AlreadyExists)) {
              throw writeFailure(path, error);
            }
          }
          info = lstatOrUndefined(at, name);
        }
        if (info === undefined || !info.isDirectory) {
          throw new HttpError(
            409,
            "not_a_directory",
            `Cannot create directory ${quote(path)}: ${
              quote(child)
            } exists and is not a directory`,
          );
        }
        // Into the very directory just looked at, by its name in this one.
        const entered = at.enter(child);
        if (entered !== child || !sameFile(at.stat(), info)) {
          throw changed(path);
        }
        return entered;
      });
    }
    // The last level itself must be writable, as any target's directory.
    this.#in(path, real, (at) => this.#checkDir(path, at.real));
    return real;
  }

  resolve(requestPath: string): string {
    const { path } = splitWritePath(requestPath);
    const names = path.split("/").slice(1);
    const { known, depth } = deepestDir(names);
    return this.#in(path, known, (at) => {
      // Where no link was followed, the refusal may say why.
      const vague = at.real !== known;
      this.#checkDir(path, at.real, vague);
      const rest = names.slice(depth);
      if (rest.length === 0) return at.real;
      const real = join(at.real, ...rest);
      const refused = this.#rules.refusal(real, path, this.#roots, vague);
      if (refused !== undefined) throw asWriteRefusal(refused, path);
      return real;
    });
  }

  async open(
    target: WriteTarget,
    name: string,
    create: boolean,
  ): Promise<WritableFile> {
    const proven = this.#openFile(target, name, create);
    return await this.#asDenoFile(target, name, proven);
  }

  openWriteDescriptor(
    target: WriteTarget,
    name: string,
    create: boolean,
  ): number {
    return this.#openFile(target, name, create).fd;
  }

  /** `name` in the target's directory opened for writing (created when missing and `create` is set), proven. */
  #openFile(target: WriteTarget, name: string, create: boolean): ProvenFd {
    return this.#at(target, (at) => {
      let info = lstatOrUndefined(at, name);
      if (info === undefined) {
        if (!create) {
          throw new HttpError(
            404,
            "not_found",
            `Cannot write ${quote(target.path)}: ${quote(name)} is missing`,
          );
        }
        const fresh = at.createFile(NEW_PREFIX);
        try {
          at.rename(fresh, name);
        } catch (error) {
          tryRemove(at, fresh);
          throw writeFailure(target.path, error);
        }
        info = at.lstat(name);
      }
      if (!info.isFile) {
        throw new HttpError(
          409,
          "not_regular",
          `Cannot write ${quote(join(target.path, "..", name))}: it is ${
            describe(info)
          }`,
        );
      }
      return openProven(at, target, name, WRITE_FLAGS);
    });
  }

  async createFresh(
    target: WriteTarget,
  ): Promise<WritableFile & { name: string }> {
    const created = this.#at(target, (at) => {
      const name = at.createFile(NEW_PREFIX);
      try {
        return {
          name,
          proven: openProven(at, target, name, WRITE_FLAGS),
        };
      } catch (error) {
        tryRemove(at, name);
        throw error;
      }
    });
    try {
      const file = await this.#asDenoFile(target, created.name, created.proven);
      return { ...file, name: created.name };
    } catch (error) {
      this.remove(target, created.name);
      throw error;
    }
  }

  /** A Deno file for the inode a proven descriptor holds (which it then closes). */
  async #asDenoFile(
    target: WriteTarget,
    name: string,
    proven: ProvenFd,
  ): Promise<WritableFile> {
    try {
      // The proven descriptor pins the inode: a Deno file for the same
      // device and inode is that very file, whatever its name led to.
      const file = await openForWriting(join(target.dir, name));
      if (file !== undefined) {
        try {
          const info = await file.stat();
          if (
            info.isFile && info.dev === proven.info.dev &&
            info.ino === proven.info.ino
          ) {
            return {
              file,
              info: { dev: info.dev, ino: info.ino!, size: info.size },
            };
          }
        } catch {
          // refused below
        }
        file.close();
      }
      throw changed(target.path);
    } finally {
      closeSync(proven.fd);
    }
  }

  openDescriptor(
    target: WriteTarget,
    name: string,
    expect: { dev: number; ino: number },
  ): number {
    return this.#at(target, (at) => {
      const proven = openProven(at, target, name, WRITE_FLAGS);
      if (!sameFile(proven.info, expect)) {
        closeSync(proven.fd);
        throw changed(target.path);
      }
      return proven.fd;
    });
  }

  setDirMeta(
    path: string,
    real: string,
    mtimeMs?: number,
    mode?: number,
    narrow = false,
  ): Deno.FileInfo {
    return this.#in(path, real, (at) => {
      if (at.real !== real) throw changed(path);
      this.#checkDir(path, at.real);
      try {
        if (mode !== undefined) {
          const own = narrow ? (at.stat().mode ?? 0) & 0o777 : -1;
          const bits = narrow ? own & mode : mode & 0o777;
          if (bits !== own) at.setOwnMode(bits);
        }
        if (mtimeMs !== undefined) at.setOwnTime(mtimeMs);
        return at.stat();
      } catch (error) {
        throw writeFailure(path, error);
      }
    });
  }

  read(
    target: WriteTarget,
    name: string,
    max: number,
  ): Uint8Array | undefined {
    return this.#at(target, (at) => {
      const info = lstatOrUndefined(at, name);
      if (info === undefined || !info.isFile || info.size > max) {
        return undefined;
      }
      const file = openProven(at, target, name, READ_FLAGS);
      try {
        const data = new Uint8Array(file.info.size);
        return readFully(file.fd, data) ? data : undefined;
      } finally {
        closeSync(file.fd);
      }
    });
  }

  replace(
    target: WriteTarget,
    name: string,
    data: Uint8Array,
    meta: ReplaceMeta = {},
  ): Deno.FileInfo {
    return this.#at(
      target,
      (at) => this.#writeWhole(at, target, name, data, meta),
    );
  }

  writeFiles(
    files: ReadonlyArray<{ path: string; data: Uint8Array; meta: ReplaceMeta }>,
  ): Array<Deno.FileInfo | HttpError> {
    if (files.length === 0) return [];
    const first = splitWritePath(files[0].path);
    return this.#in(
      first.path,
      first.dir,
      (at) =>
        files.map(({ path: requestPath, data, meta }) => {
          try {
            const { path, dir, name } = splitWritePath(requestPath);
            // Every file of the batch is in the directory entered.
            if (dir !== first.dir) throw changed(path);
            this.#check(path, at.real, name);
            const target = { path, dir: at.real, name };
            return this.#writeWhole(at, target, name, data, meta);
          } catch (error) {
            if (error instanceof HttpError) return error;
            throw error;
          }
        }),
    );
  }

  /** `replace`'s work, in the entered directory of `target`. */
  #writeWhole(
    at: Inside,
    target: WriteTarget,
    name: string,
    data: Uint8Array,
    meta: ReplaceMeta,
  ): Deno.FileInfo {
    const fresh = at.createFile(NEW_PREFIX);
    try {
      const file = openProven(at, target, fresh, WRITE_FLAGS);
      try {
        let done = 0;
        while (done < data.length) {
          done += writeSync(file.fd, data, done, data.length - done, done);
        }
        if (meta.mode !== undefined) fchmodSync(file.fd, meta.mode);
        const mtime = meta.mtimeMs;
        // Checked below, by the lstat that gives the result.
        if (mtime !== undefined) setMtimeMsOnce(file.fd, mtime);
        if (meta.sync !== false) fdatasyncSync(file.fd);
        at.rename(fresh, name);
        const look = () => lstatOrUndefined(at, name);
        const now = mtime === undefined
          ? look()
          : withMtimeMs(file.fd, mtime, look(), look);
        if (now === undefined) throw changed(target.path);
        return now;
      } finally {
        closeSync(file.fd);
      }
    } catch (error) {
      tryRemove(at, fresh);
      throw error instanceof HttpError
        ? error
        : writeFailure(target.path, error);
    }
  }

  rename(
    target: WriteTarget,
    from: string,
    to: string,
    expect: { dev: number; ino: number },
  ): void {
    this.#at(target, (at) => {
      const info = lstatOrUndefined(at, from);
      if (info === undefined || !info.isFile || !sameFile(info, expect)) {
        throw changed(target.path);
      }
      try {
        at.rename(from, to);
      } catch (error) {
        throw writeFailure(target.path, error);
      }
    });
  }

  remove(target: WriteTarget, name: string): void {
    this.#at(target, (at) => {
      if (lstatOrUndefined(at, name) === undefined) return;
      try {
        at.remove(name);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) {
          throw writeFailure(target.path, error);
        }
      }
    });
  }

  lstat(target: WriteTarget, name: string): Deno.FileInfo | undefined {
    return this.#at(target, (at) => lstatOrUndefined(at, name));
  }

  symlink(target: WriteTarget, text: string, mtimeMs?: number): Deno.FileInfo {
    const place = { ...target, root: this.#rootOf(target) };
    return this.#at(
      target,
      (at) => placeSymlink(at, place, text, NEW_PREFIX, mtimeMs),
    );
  }

  link(target: WriteTarget, existing: WriteTarget): Deno.FileInfo {
    const place = { ...target, root: this.#rootOf(target) };
    const info = checkLinkSource(
      target.path,
      existing.path,
      this.#rootOf(existing) === place.root,
      this.#at(existing, (at) => lstatOrUndefined(at, existing.name)),
    );
    const real = join(existing.dir, existing.name);
    return this.#at(
      target,
      (at) =>
        placeLink(at, place, { path: existing.path, real, info }, NEW_PREFIX),
    );
  }

  delete(target: WriteTarget): EntryType {
    return this.#at(target, (at) => {
      if (this.#roots.includes(join(at.real, target.name))) {
        throw new HttpError(
          403,
          "not_writable",
          `Cannot delete ${
            quote(target.path)
          }: it is a Writable_path directory`,
        );
      }
      return removeEntry(at, target.path, target.name);
    });
  }

  /** The writable root a target's directory is in (the deepest, when roots nest). */
  #rootOf(target: WriteTarget): string {
    const roots = this.#roots.filter((root) => within(target.dir, root));
    return roots.reduce((a, b) => (b.length > a.length ? b : a), "");
  }

  /** Runs `inside` in the target's directory, refusing when its path no longer leads there. */
  #at<T>(target: WriteTarget, inside: (at: Inside) => T): T {
    return this.#in(target.path, target.dir, (at) => {
      if (at.real !== target.dir) throw changed(target.path);
      return inside(at);
    });
  }

  /** `CwdAnchor.run`, with a directory that cannot be entered answered as the jail answers. */
  #in<T>(path: string, dir: string, inside: (at: Inside) => T): T {
    let entered = false;
    try {
      return this.#anchor.run(dir, (at) => {
        entered = true;
        return inside(at);
      });
    } catch (error) {
      if (entered || error instanceof HttpError) throw error;
      throw writeFailure(path, error, "its directory");
    }
  }

  /** Refuses a directory that is not inside a writable root, or that a deny rule refuses. */
  #checkDir(
    path: string,
    dir: string,
    vague = dir !== posix.dirname(path),
  ): void {
    if (this.#roots.length === 0) {
      throw new HttpError(
        403,
        "read_only",
        `Cannot write ${
          quote(path)
        }: this server accepts no writes (no Writable_path)`,
      );
    }
    const refused = this.#rules.refusal(dir, path, this.#roots, vague);
    if (refused !== undefined) throw asWriteRefusal(refused, path);
  }

  /** The checks of a target: its directory, and its own name and path (never one of hsync's partial-file names). */
  #check(path: string, dir: string, name: string, isDir = false): void {
    this.#checkDir(path, dir);
    const real = join(dir, name);
    const refused = this.#rules.refusal(
      real,
      path,
      this.#roots,
      real !== path && !isDir,
    );
    if (refused !== undefined) throw asWriteRefusal(refused, path);
    if (
      name.startsWith(NEW_PREFIX) || name.endsWith(PART_SUFFIX) ||
      name.endsWith(JOURNAL_SUFFIX)
    ) {
      throw new HttpError(
        400,
        "bad_path",
        `Cannot write ${
          quote(path)
        }: its name is reserved for hsync's partial files`,
      );
    }
  }
}
