/** Glob matching, the one place that holds picomatch: the server's name rules, its remote globs and the client's filters all match through here. */
import picomatch from "picomatch";

/** How a glob matches. */
export interface GlobOptions {
  /** `*` and `?` match a leading `.` too (default false, as a shell). */
  dot?: boolean;
  /** Letter case is ignored. */
  nocase?: boolean;
  /** A pattern without `/` is matched against the last component only. */
  basename?: boolean;
}

/** A test of a path (or name) against one glob or any of several. */
export function globTest(
  globs: string | readonly string[],
  options: GlobOptions = {},
): (path: string) => boolean {
  return picomatch(
    typeof globs === "string" ? globs : [...globs],
    options,
  ) as (path: string) => boolean;
}

/** The regular expression picomatch makes of one glob. */
export function globRegExp(glob: string, options: GlobOptions = {}): RegExp {
  return picomatch.makeRe(glob, options);
}
