/**
 * `--include`/`--exclude` (globs written as for rsync), their regular
 * expression forms and `--files-from`, on paths relative to the transfer
 * root, where a match on an enclosing directory counts for everything below it.
 */
import { globTest, loadGlobs } from "../shared/glob.ts";

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

/** Makes a {@linkcode PathFilter} of `options` possible: loads the glob matcher when it has globs (not otherwise: see lib/shared/glob.ts). */
export async function readyFilter(options: FilterOptions): Promise<void> {
  if ((options.include?.length ?? 0) + (options.exclude?.length ?? 0) > 0) {
    await loadGlobs();
  }
}

/**
 * The compiled selection of one run. Each method takes the path's checked
 * components and whether the entry is a directory; `isDir` left out means
 * the kind is not known yet, and the answer is the one that loses nothing
 * (excluded only when excluded as a file and as a directory).
 */
export class PathFilter {
  readonly #include?: Matcher;
  readonly #exclude?: Matcher;
  /** `--files-from` paths, and the directories on the way to them. */
  readonly #listed?: Set<string>;
  readonly #onTheWay = new Set<string>();

  /** Compiles the rules (globs need {@linkcode readyFilter} awaited first); empty or absent lists filter nothing (but a `filesFrom` list, even empty, selects). */
  constructor(options: FilterOptions = {}) {
    this.#include = matcherOf(options.include, options.includeRegex);
    this.#exclude = matcherOf(options.exclude, options.excludeRegex);
    if (options.filesFrom !== undefined) {
      this.#listed = new Set();
      for (const line of options.filesFrom) {
        const parts = line.split("/").filter((p) => p !== "" && p !== ".");
        this.#listed.add(parts.join("/"));
        for (let i = 1; i < parts.length; i++) {
          this.#onTheWay.add(parts.slice(0, i).join("/"));
        }
      }
    }
  }

  /**
   * True when the entry and everything below it are left out: `--exclude`
   * (or `--exclude-regex`) matches it or a directory above it, or
   * `--files-from` lists neither it, nor a directory above it, nor (when it
   * is a directory) anything below it. A caller need not walk such a directory.
   */
  excludes(parts: readonly string[], isDir?: boolean): boolean {
    if (isDir === undefined) {
      return this.#excludes(parts, false) && this.#excludes(parts, true);
    }
    return this.#excludes(parts, isDir);
  }

  /** True without `--include`/`--include-regex`, or when the path or a directory above it matches one. */
  includes(parts: readonly string[], isDir?: boolean): boolean {
    const include = this.#include;
    if (include === undefined) return true;
    if (isDir === undefined) {
      return include(parts, false) || include(parts, true);
    }
    return include(parts, isDir);
  }

  /** Neither excluded nor left out by `--include`: the entry is transferred (a directory: made). */
  wants(parts: readonly string[], isDir?: boolean): boolean {
    if (
      this.#include === undefined && this.#exclude === undefined &&
      this.#listed === undefined
    ) return true;
    if (isDir === undefined) {
      return this.wants(parts, false) || this.wants(parts, true);
    }
    return !this.#excludes(parts, isDir) && this.includes(parts, isDir);
  }

  /**
   * Whether a walk of a local tree takes the entry: a directory is gone into
   * unless excluded (include globs may name what is below it), anything
   * else is taken when wanted.
   */
  takes(parts: readonly string[], isDir: boolean): boolean {
    return isDir ? !this.#excludes(parts, true) : this.wants(parts, false);
  }

  #excludes(parts: readonly string[], isDir: boolean): boolean {
    if (this.#exclude?.(parts, isDir)) return true;
    const listed = this.#listed;
    if (listed === undefined || listed.has("")) return false;
    const prefixes = prefixesOf(parts);
    if (prefixes.some((p) => listed.has(p))) return false;
    return !(isDir && this.#onTheWay.has(prefixes[prefixes.length - 1]));
  }
}

/** Whether a path (its components; is it a directory) or a directory above it matches. */
type Matcher = (parts: readonly string[], isDir: boolean) => boolean;

/** One matcher for the globs and the regular expressions of one kind, or none when there are neither. */
function matcherOf(
  globs: readonly string[] = [],
  regexes: readonly string[] = [],
): Matcher | undefined {
  if (globs.length === 0 && regexes.length === 0) return undefined;
  const any: string[] = [];
  const dirOnly: string[] = [];
  for (const glob of globs) {
    const dir = glob.endsWith("/");
    const body = dir ? glob.slice(0, -1) : glob;
    // `""` and `/` name no entry (picomatch refuses an empty glob).
    if (body === "" || body === "/") continue;
    (dir ? dirOnly : any).push(picomatchGlob(body));
  }
  const options = { dot: true };
  const anyTest = any.length ? globTest(any, options) : undefined;
  const dirTest = dirOnly.length ? globTest(dirOnly, options) : undefined;
  const res = regexes.map((re) => new RegExp(re));
  return (parts, isDir) => {
    const prefixes = prefixesOf(parts);
    return prefixes.some((path, i) =>
      anyTest?.(path) ||
      // Every component but the last is a directory.
      ((i < prefixes.length - 1 || isDir) && dirTest?.(path)) ||
      res.some((re) => re.test(path))
    );
  };
}

/**
 * An rsync pattern (its trailing `/` removed) as the picomatch glob matching
 * the same relative paths: a leading `/` anchors at the root, any other
 * pattern matches the end of the path (`a/b` also matches `x/a/b`, `*.log`
 * a name at any depth). rsync's `**` matches anything, `/` included: as a
 * whole component between two others it stands for one or more of them
 * (`a/**\/b` does not match `a/b`), trailing `/**` for everything below
 * (not the directory itself), trailing `/***` for the directory and
 * everything below, and inside a name it may cross directories too.
 */
function picomatchGlob(pattern: string): string {
  const anchored = pattern.startsWith("/");
  const body = anchored ? pattern.slice(1) : pattern;
  let out = "";
  for (let i = 0; i < body.length;) {
    const c = body[i];
    if (c === "\\" && i + 1 < body.length) {
      out += body.slice(i, i + 2);
      i += 2;
    } else if (c === "[") {
      // A class is copied whole: a `*` inside it is a character.
      const end = body.indexOf("]", i + 2);
      const stop = end === -1 ? body.length : end + 1;
      out += body.slice(i, stop);
      i = stop;
    } else if (c === "*" && body[i + 1] === "*") {
      let j = i;
      while (body[j] === "*") j++;
      const startsPart = i === 0 || body[i - 1] === "/";
      const endsPart = j === body.length || body[j] === "/";
      if (startsPart && endsPart) {
        if (i === 0) out += "**";
        else if (j < body.length) out += "*/**";
        else out += j - i >= 3 ? "**" : "*{,/**}";
      } else out += "{*,*/**/*}";
      i = j;
    } else {
      // picomatch would read a leading `!` as negation; rsync as a name.
      out += i === 0 && c === "!" ? "\\!" : c;
      i++;
    }
  }
  if (anchored || out.startsWith("**")) return out;
  return `**/${out}`;
}

/** `a`, `a/b`, `a/b/c` for `a/b/c`: a filter on any of them applies to the path. */
function prefixesOf(parts: readonly string[]): string[] {
  const out: string[] = [];
  let path = "";
  for (const part of parts) {
    path = path === "" ? part : `${path}/${part}`;
    out.push(path);
  }
  return out;
}
