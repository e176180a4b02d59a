/** The small pieces of the write jail: its answers to failures, and the open of a Deno file for writing that cannot hang. */
import { closeSync, fstatSync, openSync, type Stats } from "node:fs";
import { posix } from "node:path";
import { ConfigError, HttpError } from "../../shared/errors.ts";
import { fsFailureStatus } from "../error_status.ts";
import type { Inside } from "./cwd_anchor.ts";
import type { WriteTarget } from "./write_jail_api.ts";
import { quote, stripSlash } from "./rules.ts";

/**
 * `Deno.open` for writing (no create, no truncate) that has not settled yet.
 * It cannot say `O_NONBLOCK`, so a FIFO swapped in under the name would make
 * it wait for a reader: such opens are given up on after `OPEN_MS`.
 */
const OPEN_MS = 1000;

export async function openForWriting(
  path: string,
): Promise<Deno.FsFile | undefined> {
  // Read too: a commit verifies the part's SHA-256 through the same file.
  const opening = Deno.open(path, { read: true, write: true });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), OPEN_MS);
  });
  try {
    const file = await Promise.race([opening, late]);
    if (file === undefined) opening.then((f) => f.close(), () => {});
    return file;
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}

/** A read-jail refusal reworded for a write (same status and code). */
export function asWriteRefusal(refused: HttpError, path: string): HttpError {
  if (refused.code === "outside_allowed") {
    return new HttpError(
      403,
      "not_writable",
      `Cannot write ${
        quote(path)
      }: it is outside every Writable_path directory`,
    );
  }
  return new HttpError(
    refused.status,
    refused.code,
    refused.message.replace(/^Cannot serve /, "Cannot write "),
  );
}

export function lstatOrUndefined(
  at: Inside,
  name: string,
): Deno.FileInfo | undefined {
  try {
    return at.lstat(name);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

export function tryRemove(at: Inside, name: string): void {
  try {
    at.remove(name);
  } catch {
    // Gone already, or not ours to remove: nothing more to do.
  }
}

export function changed(path: string): HttpError {
  return new HttpError(
    409,
    "changed",
    `Cannot write ${quote(path)}: it changed while being written, retry`,
  );
}

/**
 * A file-system failure of a write as an `HttpError` naming the requested
 * path only: what it means comes from the one map (lib/server/error_status.ts);
 * a FIFO or a loop where a file was expected is a conflict (409).
 */
export function writeFailure(path: string, error: unknown, what = ""): unknown {
  const where = what === "" ? quote(path) : `${what} of ${quote(path)}`;
  const code = (error as { code?: string } | null)?.code;
  if (code === "ENXIO" || code === "ELOOP") {
    return new HttpError(
      409,
      "not_regular",
      `Cannot write ${where}: it is not a regular file`,
    );
  }
  const fs = fsFailureStatus(error);
  if (fs === undefined) return error;
  return new HttpError(
    fs.status,
    fs.code,
    `Cannot write ${where}: ${fs.reason}`,
  );
}

/** What an entry that is not a regular file is, for a message. */
export function describe(info: Deno.FileInfo): string {
  return info.isSymlink
    ? "a symbolic link"
    : info.isDirectory
    ? "a directory"
    : info.isFile
    ? "a regular file"
    : "not a regular file";
}

export function join(dir: string, ...names: string[]): string {
  const rest = names.join("/");
  return posix.normalize(dir === "/" ? `/${rest}` : `${dir}/${rest}`);
}

export function sameFile(
  a: { dev: number; ino: number | null },
  b: { dev: number; ino: number | null },
): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/** The real paths of the `Writable_path` entries; `ConfigError` naming one that is not an existing absolute directory. */
export async function resolveWritableRoots(
  entries: readonly string[],
): Promise<string[]> {
  const roots: string[] = [];
  for (const root of entries) {
    if (!root.startsWith("/") || root.includes("\0")) {
      throw new ConfigError(
        `Invalid Writable_path entry "${root}": expected an absolute path`,
      );
    }
    try {
      const real = await Deno.realPath(root);
      if (!(await Deno.stat(real)).isDirectory) {
        throw new ConfigError(
          `Cannot use Writable_path "${root}": not a directory`,
        );
      }
      roots.push(real);
    } catch (error) {
      if (error instanceof ConfigError) throw error;
      throw new ConfigError(
        `Cannot use Writable_path "${root}": ${
          error instanceof Deno.errors.NotFound
            ? "no such directory"
            : error instanceof Error
            ? error.message
            : String(error)
        }`,
      );
    }
  }
  return roots;
}

/** A requested absolute path for writing, normalised, and its directory and name. */
export function splitWritePath(
  requestPath: string,
): { path: string; dir: string; name: string } {
  if (typeof requestPath !== "string" || !requestPath.startsWith("/")) {
    throw new HttpError(
      400,
      "bad_path",
      `Cannot write ${quote(String(requestPath))}: the path must be absolute`,
    );
  }
  if (requestPath.includes("\0")) {
    throw new HttpError(
      400,
      "bad_path",
      `Cannot write ${quote(requestPath)}: a path cannot contain NUL`,
    );
  }
  const path = stripSlash(posix.normalize(requestPath));
  if (path === "/") {
    throw new HttpError(
      400,
      "bad_path",
      `Cannot write ${quote(requestPath)}: it is the root directory`,
    );
  }
  const slash = path.lastIndexOf("/");
  return {
    path,
    dir: slash === 0 ? "/" : path.slice(0, slash),
    name: path.slice(slash + 1),
  };
}

/** The deepest of the directories `/names[0]/...` that exists (`/` at least), and how many names it has. */
export function deepestDir(names: string[]): { known: string; depth: number } {
  for (let i = names.length; i > 0; i--) {
    const candidate = `/${names.slice(0, i).join("/")}`;
    try {
      if (Deno.statSync(candidate).isDirectory) {
        return { known: candidate, depth: i };
      }
    } catch {
      // Missing (or unreadable): one level up.
    }
  }
  return { known: "/", depth: 0 };
}

/** A descriptor proven to be a file of a target's directory. */
export interface ProvenFd {
  fd: number;
  info: Stats;
}

/** Opens `name` of the entered directory and proves it is the regular file (one link) that name holds now. */
export function openProven(
  at: Inside,
  target: WriteTarget,
  name: string,
  flags: number,
): ProvenFd {
  let fd = -1;
  try {
    fd = openSync(join(at.real, name), flags);
    const info = fstatSync(fd);
    const now = at.lstat(name);
    if (
      !info.isFile() || info.nlink !== 1 || !now.isFile ||
      now.dev !== info.dev || now.ino !== info.ino
    ) {
      throw changed(target.path);
    }
    const file = { fd, info };
    fd = -1;
    return file;
  } catch (error) {
    if (error instanceof HttpError) throw error;
    throw writeFailure(target.path, error);
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}
