/** `--include` and `--exclude`: globs on a path relative to the transfer root, where a match on an enclosing directory counts for everything below it. */
import picomatch from "picomatch";

/** The compiled `--include`/`--exclude` globs of one run (a pattern without `/` matches the name at any depth). */
export class PathFilter {
  readonly #include?: (path: string) => boolean;
  readonly #exclude?: (path: string) => boolean;

  /** Compiles the globs; empty or absent lists filter nothing. */
  constructor(options: { include?: string[]; exclude?: string[] } = {}) {
    const globs = { dot: true, basename: true };
    if (options.include?.length) {
      this.#include = picomatch(options.include, globs);
    }
    if (options.exclude?.length) {
      this.#exclude = picomatch(options.exclude, globs);
    }
  }

  /** True when the path (its checked components) or a directory above it matches `--exclude`: `--exclude build` drops build/**. */
  excludes(parts: readonly string[]): boolean {
    const exclude = this.#exclude;
    return exclude !== undefined && prefixesOf(parts).some((p) => exclude(p));
  }

  /** True without `--include`, or when the path or a directory above it matches one. */
  includes(parts: readonly string[]): boolean {
    const include = this.#include;
    return include === undefined || prefixesOf(parts).some((p) => include(p));
  }

  /** Neither excluded nor left out by `--include`: the entry is transferred. */
  wants(parts: readonly string[]): boolean {
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
