/**
 * The one rule for a path relative to a transfer root, wherever it comes
 * from (a listing or a bundle frame read by hsync, a bundle request or a
 * listing's `after=` read by hsyncd): plain names joined by single slashes.
 * The two sides differ in what they do with a refusal, never in the rule.
 */
import { MAX_NAME_BYTES, MAX_PATH_BYTES, utf8Longer } from "./name_bytes.ts";
import { isHsyncOwnName } from "./own_names.ts";

/** A relative path that breaks the rule; `why` says how, in a few lower-case words. */
export class RelativePathError extends Error {
  /** The path as given. */
  readonly path: string;
  /** Why it is refused (`it has a ".." component`). */
  readonly why: string;
  constructor(path: string, why: string) {
    super(`Invalid relative path ${JSON.stringify(path)}: ${why}`);
    this.name = "RelativePathError";
    this.path = path;
    this.why = why;
  }
}

/**
 * The components of a relative path; `RelativePathError` when it is empty,
 * absolute, holds a NUL or a backslash, is longer than {@linkcode
 * MAX_PATH_BYTES}, has an empty, `.` or `..` component, a component longer
 * than {@linkcode MAX_NAME_BYTES}, or a component ending in hsync's own
 * `.hsync-part`/`.hsync-journal` suffixes or named `.hsync-lock` (one entry could otherwise
 * overwrite another's partial data).
 */
export function relativeComponents(rel: string): string[] {
  const refuse = (why: string) => new RelativePathError(rel, why);
  if (typeof rel !== "string" || rel === "") throw refuse("it is empty");
  if (rel.includes("\0")) throw refuse("it contains a NUL byte");
  if (rel.includes("\\")) throw refuse("it contains a backslash");
  if (rel.startsWith("/")) throw refuse("it is absolute");
  if (utf8Longer(rel, MAX_PATH_BYTES)) {
    throw refuse(`it is longer than ${MAX_PATH_BYTES} bytes`);
  }
  const parts = rel.split("/");
  for (const part of parts) {
    if (part === "") throw refuse("it has an empty component");
    if (part === "." || part === "..") {
      throw refuse(`it has a "${part}" component`);
    }
    if (utf8Longer(part, MAX_NAME_BYTES)) {
      throw refuse(`it has a name longer than ${MAX_NAME_BYTES} bytes`);
    }
    if (isHsyncOwnName(part)) {
      throw refuse("its name is reserved for hsync's partial files and lock");
    }
  }
  return parts;
}
