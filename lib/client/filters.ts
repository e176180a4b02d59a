/** `--include` and `--exclude`: globs on a path relative to the transfer root, where a match on an enclosing directory counts for everything below it. */
import { globTest } from "../shared/glob.ts";

/** What selects the entries of a run (the `-from` files already read into lists). */
export interface FilterOptions {
  /** Globs (see `hsync --help`): a pattern without `/` matches a name at any depth, a leading `/` anchors, a trailing `/` matches directories only, `**` crosses directories. */
  include?: string[];
  exclude?: string[];
  /** Regular expressions searched in the relative path. */
  includeRegex?: string[];
  excludeRegex?: string[];
  /** `--files-from`: only these relative paths (a directory with all below it, and the directories on the way to each). */
  filesFrom?: string[];
}

/** The compiled selection of one run (a pattern without `/` matches the name at any depth). */
export class PathFilter {
  readonly #include?: (path: string) => boolean;
  readonly #exclude?: (path: string) => boolean;

  /** Compiles the globs; empty or absent lists filter nothing. */
  constructor(options: FilterOptions = {}) {
    const globs = { dot: true, basename: true };
    if (options.include?.length) {
      this.#include = globTest(options.include, globs);
    }
    if (options.exclude?.length) {
      this.#exclude = globTest(options.exclude, globs);
    }
  }

  /** True when the path (its checked components) or a directory above it matches `--exclude`: `--exclude build` drops build/**. */
  excludes(parts: readonly string[], _isDir = false): boolean {
    const exclude = this.#exclude;
    return exclude !== undefined && prefixesOf(parts).some((p) => exclude(p));
  }

  /** True without `--include`, or when the path or a directory above it matches one. */
  includes(parts: readonly string[], _isDir = false): boolean {
    const include = this.#include;
    return include === undefined || prefixesOf(parts).some((p) => include(p));
  }

  /** Neither excluded nor left out by `--include`: the entry is transferred. */
  wants(parts: readonly string[], _isDir = false): boolean {
    if (this.#include === undefined && this.#exclude === undefined) return true;
    return !this.excludes(parts) && this.includes(parts);
  }
}

/** `a`, `a/b`, `a/b/c` for `a/b/c`: a filter on any of them applies to the path. */
function prefixesOf(parts: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 1; i <= parts.length; i++) out.push(parts.slice(0, i).join("/"));
  return out;
}
