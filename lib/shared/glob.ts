/**
 * Glob matching, the one place that holds picomatch: the server's name
 * rules, its remote globs and the client's filters all match through here.
 * The package is loaded by {@linkcode loadGlobs}, awaited by whatever is
 * about to match (hsyncd's rules, a pull's or a push's filters): loading an
 * npm package costs a start 16-24 ms of npm's layer, which a transfer
 * without filters does not need.
 */

/** How a glob matches. */
export interface GlobOptions {
  /** `*` and `?` match a leading `.` too (default false, as a shell). */
  dot?: boolean;
  /** Letter case is ignored. */
  nocase?: boolean;
  /** A pattern without `/` is matched against the last component only. */
  basename?: boolean;
}

/** What this file uses of picomatch. */
type Picomatch =
  & ((
    globs: string | string[],
    options?: GlobOptions,
  ) => (path: string) => boolean)
  & {
    makeRe(glob: string, options?: GlobOptions): RegExp;
  };

let picomatch: Picomatch | undefined;

/** Loads picomatch (once); the functions below need it loaded. */
export async function loadGlobs(): Promise<void> {
  picomatch ??= (await import("picomatch")).default as unknown as Picomatch;
}

function loaded(): Picomatch {
  if (picomatch === undefined) {
    throw new Error("Globs are matched before loadGlobs() was awaited");
  }
  return picomatch;
}

/** A test of a path (or name) against one glob or any of several. */
export function globTest(
  globs: string | readonly string[],
  options: GlobOptions = {},
): (path: string) => boolean {
  return loaded()(typeof globs === "string" ? globs : [...globs], options);
}

/** The regular expression picomatch makes of one glob. */
export function globRegExp(glob: string, options: GlobOptions = {}): RegExp {
  return loaded().makeRe(glob, options);
}
