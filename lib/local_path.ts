/** Maps untrusted relative paths from the server onto the output directory, refusing anything that could write outside it. */
import { join } from "node:path";
import { JOURNAL_SUFFIX, PART_SUFFIX } from "./journal.ts";

/** A relative path from the server that must not be written. */
export class UnsafePathError extends Error {
  /** The refused path, as the server sent it. */
  readonly path: string;
  constructor(path: string, why: string) {
    super(`Refused path ${JSON.stringify(path)} from the server: ${why}`);
    this.name = "UnsafePathError";
    this.path = path;
  }
}

/**
 * Joins a `/`-separated relative path from the server onto `root`. Refuses
 * (with {@linkcode UnsafePathError}) a path that is empty, absolute, holds a
 * NUL or a backslash, has an empty, `.` or `..` component, or a component
 * ending in the client's own `.hsync-part`/`.hsync-journal` suffixes (which
 * would let one entry overwrite another's partial data).
 */
export function safeJoin(root: string, relPath: string): string {
  return join(root, ...safeComponents(relPath));
}

/** The components of a relative path from the server, checked as {@linkcode safeJoin} does. */
export function safeComponents(relPath: string): string[] {
  const refuse = (why: string) => new UnsafePathError(relPath, why);
  if (typeof relPath !== "string" || relPath === "") {
    throw refuse("it is empty");
  }
  if (relPath.includes("\0")) throw refuse("it contains a NUL byte");
  if (relPath.includes("\\")) throw refuse("it contains a backslash");
  if (relPath.startsWith("/")) throw refuse("it is absolute");
  const parts = relPath.split("/");
  for (const part of parts) {
    if (part === "") throw refuse("it has an empty component");
    if (part === "." || part === "..") {
      throw refuse(`it has a "${part}" component`);
    }
    if (part.endsWith(PART_SUFFIX) || part.endsWith(JOURNAL_SUFFIX)) {
      throw refuse("its name is reserved for hsync's partial files");
    }
  }
  return parts;
}

/** A local file or directory that cannot be used (a planted symlink, a file where a directory belongs...). */
export class LocalPathError extends Error {
  /** The local path at fault. */
  readonly path: string;
  constructor(path: string, why: string, cause?: unknown) {
    super(`Cannot write ${JSON.stringify(path)}: ${why}`, { cause });
    this.name = "LocalPathError";
    this.path = path;
  }
}

/**
 * Makes sure every directory from `root` down to `root/components...`
 * exists and is a real directory, creating missing ones one level at a time.
 * An existing symlink or non-directory on the way is refused with
 * {@linkcode LocalPathError}, so a link planted in the output directory
 * cannot redirect writes. `root` itself is trusted (the user chose it).
 * Directories already checked in this run are remembered in `verified`,
 * and the ones it made in `created` (files there need no comparison).
 * Synchronous on purpose: a few microseconds per new directory, and no
 * other task can interleave between the check and the use.
 */
export function ensureDirs(
  root: string,
  components: string[],
  verified: Set<string>,
  created?: Set<string>,
): string {
  let path = root;
  for (const part of components) {
    path = join(path, part);
    if (verified.has(path)) continue;
    let info: Deno.FileInfo | undefined;
    try {
      info = Deno.lstatSync(path);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        throw new LocalPathError(path, reason(error), error);
      }
    }
    if (info === undefined) {
      try {
        Deno.mkdirSync(path);
        created?.add(path);
      } catch (error) {
        if (!(error instanceof Deno.errors.AlreadyExists)) {
          throw new LocalPathError(path, reason(error), error);
        }
      }
      info = Deno.lstatSync(path);
    }
    if (info.isSymlink) {
      throw new LocalPathError(path, "it is a symbolic link");
    }
    if (!info.isDirectory) {
      throw new LocalPathError(path, "it exists and is not a directory");
    }
    verified.add(path);
  }
  return path;
}

/** A short lower-case reason for a file-system error: `permission denied`, `no space left on device`... */
export function reason(error: unknown): string {
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.NotFound) return "no such file or directory";
  if (error instanceof Deno.errors.AlreadyExists) return "it already exists";
  if (error instanceof Deno.errors.NotADirectory) return "not a directory";
  if (error instanceof Deno.errors.IsADirectory) return "it is a directory";
  if (error instanceof Deno.errors.NotCapable) {
    return "not allowed by the permissions of this program";
  }
  const text = error instanceof Error ? error.message : String(error);
  // "No space left on device (os error 28): write '/x'" -> "no space left on device"
  const m = /^([^(:]+?)\s*\(os error \d+\)/.exec(text);
  const short = m ? m[1] : text;
  return short.charAt(0).toLowerCase() + short.slice(1);
}

/** Whether `path` is a directory now (following links); false when it cannot be read. */
export function isDirectory(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}
