/**
 * Requested paths in the jail: validated and normalised before any rule or
 * file-system call sees them, split into directory and name, and failures
 * about them worded with the requested path only (never the real one).
 */
import { posix } from "node:path";
import { HttpError } from "../../shared/errors.ts";
import {
  MAX_NAME_BYTES,
  MAX_PATH_BYTES,
  utf8Longer,
} from "../../shared/name_bytes.ts";
import { fsFailureStatus } from "../error_status.ts";
import { quote, stripSlash } from "./rules.ts";

/** Validates a requested path and returns it normalised (absolute, no `.`/`..`/empty segments, no trailing slash). */
export function normalizeRequest(requestPath: string): string {
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

/** A requested path split into its normalised form, directory and name; undefined for the root or a bad path. */
export function splitRequest(
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

/** `dir/name...`, with `/` as a directory handled. */
export function join(dir: string, ...names: string[]): string {
  if (names.length === 0) return dir;
  return dir === "/" ? `/${names.join("/")}` : `${dir}/${names.join("/")}`;
}

/**
 * A file-system failure about `path` as the `HttpError` it means (by the
 * server's one map, lib/server/error_status.ts), its message showing only
 * the requested path; `error` itself when a client did not cause it.
 */
export function fsFailure(path: string, error: unknown): unknown {
  const meaning = fsFailureStatus(error);
  if (meaning === undefined) return error;
  return new HttpError(
    meaning.status,
    meaning.code,
    `Cannot serve ${quote(path)}: ${meaning.reason}`,
  );
}
