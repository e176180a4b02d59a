/**
 * Lookups anchored on a directory the kernel has actually entered, for the
 * jail: `chdir` to a path, read back the kernel's own path of where it landed
 * (`getcwd`), then look at one name inside that very directory, whatever
 * happens to the names on the way meanwhile.
 *
 * Why it takes a link: under explicit permission flags Deno makes every path
 * absolute (a relative name is joined to `getcwd()`), and `open` also resolves
 * the path in user space and opens what that gave; so no call resolves a name
 * relative to the directory the process is in, and `O_NOFOLLOW` does not stop
 * a final symlink (measured with strace on Deno 2.9.6, and under a swap race:
 * a `chdir` + relative `open` served the outside file 149,316 times in 3.5 s).
 * `lstat`, `stat`, `readDir`, `readLink`, `mkdir`, `rename`, `remove`,
 * `symlink`, `link` and `makeTempFile` (and node's `lutimes`) pass the path to the kernel as given (also strace), so
 * they go through a symlink this module keeps in a private directory, `cwd -> /proc/self/cwd`: the kernel follows the `/proc` link to
 * the working directory's inode itself, not to a name. Opening still goes by
 * name; the jail then compares the opened handle's identity with the anchored
 * `lstat` of the name (see lib/server/jail/opened_file.ts).
 *
 * The working directory is process-wide: every use is one synchronous
 * section (`run`) that enters, looks, and goes back to where the process
 * was, so no other code ever sees another working directory; nothing in
 * hsyncd uses relative paths.
 */
import { ConfigError } from "../../shared/errors.ts";
import { setLinkMtimeMs } from "../../shared/fd_times.ts";

/** What {@linkcode CwdAnchor.run} hands its callback: lookups inside the directory entered. */
export interface Inside {
  /** The kernel's own path of the directory now entered (no symlink in it). */
  readonly real: string;
  /** `lstat` of `name` in the entered directory (one component, never followed). */
  lstat(name: string): Deno.FileInfo;
  /** `stat` of the entered directory itself. */
  stat(): Deno.FileInfo;
  /** The entries of the entered directory. */
  entries(): Deno.DirEntry[];
  /** The text of the symlink `name` in the entered directory. */
  readLink(name: string): string;
  /** Enters another directory (by path, following symlinks) and returns the kernel's path of it. */
  enter(path: string): string;
  /**
   * Creates a new empty regular file (mode 0600, `O_CREAT|O_EXCL`) with a
   * fresh name starting with `prefix` in the entered directory, and returns
   * its name. The one way to create a file there that Deno does not resolve
   * by name first (its `open` does; `makeTempFile` hands the path as given).
   */
  createFile(prefix: string): string;
  /** Renames `from` to `to`, both in the entered directory (an entry at `to` is replaced, never followed). */
  rename(from: string, to: string): void;
  /** Creates the directory `name` in the entered directory. */
  mkdir(name: string, mode: number): void;
  /** Creates the symbolic link `name` in the entered directory, holding `text` as given (`symlink(2)`: nothing is followed). */
  symlink(text: string, name: string): void;
  /** Sets the modification time (ms) of the symbolic link `name` in the entered directory itself (`lutimes`: never followed). */
  setLinkTime(name: string, mtimeMs: number): void;
  /**
   * Gives the entry at the absolute path `existing` the name `name` in the
   * entered directory (`linkat` without `AT_SYMLINK_FOLLOW`: a final symlink
   * is linked itself). `existing` goes by name: the caller proves what was linked.
   */
  link(existing: string, name: string): void;
  /** Removes the entry `name` of the entered directory (a symlink itself, never what it leads to). */
  remove(name: string): void;
  /** Sets the modification time (ms) of the entered directory itself. */
  setOwnTime(mtimeMs: number): void;
  /** Sets the permission bits of the entered directory itself. */
  setOwnMode(mode: number): void;
}

/** Race-free one-component lookups through the process's working directory. */
export interface CwdAnchor {
  /**
   * Enters `dir` (following any symlinks, as `chdir` does), calls `inside`
   * synchronously with lookups anchored there, and goes back. Throws what
   * `chdir` throws (`NotFound`, `NotADirectory`, `PermissionDenied`).
   */
  run<T>(dir: string, inside: (at: Inside) => T): T;
}

let shared: CwdAnchor | undefined;

/**
 * The anchor of this process (made once): a private directory holding the
 * link, checked to work; `ConfigError` when the runtime or the system does
 * not allow it (no `/proc`), since the jail cannot be made race-free then.
 */
export function cwdAnchor(): CwdAnchor {
  shared ??= createAnchor();
  return shared;
}

function createAnchor(): CwdAnchor {
  const home = Deno.cwd();
  let dir: string;
  try {
    dir = Deno.makeTempDirSync({ prefix: "hsyncd-anchor-" });
    Deno.chmodSync(dir, 0o700);
    Deno.symlinkSync("/proc/self/cwd", `${dir}/cwd`);
  } catch (error) {
    throw new ConfigError(
      `Cannot prepare the path jail in a temporary directory: ${
        error instanceof Error ? error.message : String(error)
      }`,
    );
  }
  const link = `${dir}/cwd`;
  globalThis.addEventListener("unload", () => {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch {
      // Another process's cleanup or a read-only /tmp: nothing to do.
    }
  });
  const anchor = new Anchor(link, home);
  selfTest(anchor, dir);
  return anchor;
}

/** Proves the link reaches the entered directory's own inode; `ConfigError` otherwise. */
function selfTest(anchor: Anchor, dir: string): void {
  try {
    Deno.writeTextFileSync(`${dir}/probe`, "");
    const want = Deno.lstatSync(`${dir}/probe`);
    const ok = anchor.run(dir, (at) => {
      const got = at.lstat("probe");
      const self = at.stat();
      const here = Deno.lstatSync(dir);
      return got.ino === want.ino && got.dev === want.dev &&
        self.ino === here.ino && self.dev === here.dev &&
        at.entries().some((e) => e.name === "probe");
    });
    Deno.removeSync(`${dir}/probe`);
    if (ok) return;
  } catch (error) {
    throw new ConfigError(
      `Cannot make the path jail race-free: looking up names through /proc/self/cwd failed (${
        error instanceof Error ? error.message : String(error)
      }); hsyncd needs /proc`,
    );
  }
  throw new ConfigError(
    "Cannot make the path jail race-free: /proc/self/cwd does not lead to the working directory",
  );
}

class Anchor implements CwdAnchor {
  #link: string;
  #home: string;
  #depth = 0;

  constructor(link: string, home: string) {
    this.#link = link;
    this.#home = home;
  }

  run<T>(dir: string, inside: (at: Inside) => T): T {
    // A nested run would leave its caller in the wrong directory.
    if (this.#depth > 0) throw new Error("CwdAnchor.run cannot be nested");
    this.#depth++;
    try {
      const link = this.#link;
      let real = enter(dir);
      const at: Inside = {
        get real() {
          return real;
        },
        lstat: (name) => Deno.lstatSync(`${link}/${name}`),
        stat: () => Deno.statSync(link),
        entries: () => Array.from(Deno.readDirSync(link)),
        readLink: (name) => Deno.readLinkSync(`${link}/${name}`),
        enter: (path) => real = enter(path),
        createFile: (prefix) => {
          const path = Deno.makeTempFileSync({ dir: link, prefix });
          return path.slice(link.length + 1);
        },
        rename: (from, to) =>
          Deno.renameSync(`${link}/${from}`, `${link}/${to}`),
        mkdir: (name, mode) => Deno.mkdirSync(`${link}/${name}`, { mode }),
        symlink: (text, name) => Deno.symlinkSync(text, `${link}/${name}`),
        setLinkTime: (name, mtimeMs) =>
          setLinkMtimeMs(`${link}/${name}`, mtimeMs),
        link: (existing, name) => Deno.linkSync(existing, `${link}/${name}`),
        remove: (name) => Deno.removeSync(`${link}/${name}`),
        // utimensat and chmod follow the link to the working directory itself.
        setOwnTime: (mtimeMs) =>
          Deno.utimeSync(link, new Date(), new Date(mtimeMs)),
        setOwnMode: (mode) => Deno.chmodSync(link, mode),
      };
      return inside(at);
    } finally {
      this.#depth--;
      this.#goHome();
    }
  }

  #goHome(): void {
    try {
      Deno.chdir(this.#home);
    } catch {
      // The starting directory went away: anywhere fixed will do.
      this.#home = "/";
      Deno.chdir("/");
    }
  }
}

function enter(path: string): string {
  Deno.chdir(path);
  return Deno.cwd();
}
