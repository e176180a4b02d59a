/**
 * The rules of hsyncd's path jail, as pure functions of a path: which real
 * paths `Only_allowed_path`, `Forbidden_dir`, `Forbidden_file` and the
 * implicit deny list refuse. Deny rules ignore letter case (on a
 * case-insensitive file system `ID_RSA` is `id_rsa`); the allow rule does not.
 */
import { posix } from "node:path";
import { globRegExp, globTest, loadGlobs } from "../../shared/glob.ts";
import { ConfigError, HttpError } from "../../shared/errors.ts";

/** Pseudo file systems whose files report fake sizes, and devices: never served, whatever the configuration says. */
export const PSEUDO_ROOTS = ["/proc", "/sys", "/dev"];

/** Rules of the jail, as configured (see `[hsyncd]` in hsync.ini). */
export interface PathGuardOptions {
  /** `Only_allowed_path`: absolute directories; empty allows everything not otherwise refused. Each must exist. */
  onlyAllowedPath?: readonly string[];
  /**
   * `Forbidden_dir`: absolute directories (refused with everything below),
   * bare names (`.ssh`, refused anywhere) or relative paths of names
   * (`.config/gh`: those directories in that order, anywhere).
   */
  forbiddenDir?: readonly string[];
  /** `Forbidden_file`: globs matched against file names. */
  forbiddenFile?: readonly string[];
  /** Paths always refused with everything below them: `HSYNC_DIR` and the server's certificate, key and authorized-keys files. */
  alwaysDenied?: readonly string[];
}

interface DirRule {
  /** The entry as configured, for messages. */
  entry: string;
  /** The entry as written and as resolved, lower-cased. */
  forms: string[];
}

/** The compiled rules. */
export interface JailRules {
  /** Roots as configured and as resolved: what a requested path is compared with. */
  readonly configuredRoots: readonly string[];
  /** Roots as resolved: what a real path is compared with. */
  readonly realRoots: readonly string[];
  /**
   * The rule that refuses `path` (absolute, normalised), if any, as a 403
   * whose message shows `shown` (the requested path, never the real one).
   * With `vague`, the message and code do not say which rule refused, so an
   * answer about a path reached through a symlink tells nothing of where the
   * link leads.
   */
  refusal(
    path: string,
    shown: string,
    roots: readonly string[],
    vague?: boolean,
  ): HttpError | undefined;
  /** Whether a rule refuses `path` for itself, its parent having passed every rule: its exact path or its name. */
  childRefused(path: string, name: string): boolean;
}

/**
 * Compiles the rules: resolves the configured directories once (a missing
 * `Only_allowed_path` entry is a `ConfigError`) and the globs.
 */
export async function compileRules(
  options: PathGuardOptions,
): Promise<JailRules> {
  await loadGlobs();
  const configuredRoots: string[] = [];
  const realRoots: string[] = [];
  for (const root of options.onlyAllowedPath ?? []) {
    const normal = configuredAbsolute(root, "Only_allowed_path");
    let real: string;
    try {
      real = await Deno.realPath(normal);
    } catch (error) {
      throw new ConfigError(
        `Cannot use Only_allowed_path "${root}": ${describeFsError(error)}`,
      );
    }
    configuredRoots.push(normal);
    realRoots.push(real);
  }

  const dirRules: DirRule[] = [];
  const forbiddenNames = new Set<string>();
  const forbiddenRuns: string[][] = [];
  for (const entry of options.forbiddenDir ?? []) {
    if (entry.startsWith("/")) {
      const normal = configuredAbsolute(entry, "Forbidden_dir");
      dirRules.push({
        entry,
        forms: unique([normal, await realPathLoose(normal)]).map(lower),
      });
      continue;
    }
    const names = entry.split("/");
    if (
      entry === "" || entry.includes("\0") ||
      names.some((n) => n === "" || n === "." || n === "..")
    ) {
      throw new ConfigError(
        `Invalid Forbidden_dir entry "${entry}": expected an absolute directory, a directory name or names joined by "/"`,
      );
    }
    if (names.length === 1) forbiddenNames.add(lower(entry));
    else forbiddenRuns.push(names.map(lower));
  }

  const fileRules = (options.forbiddenFile ?? []).map((glob) => ({
    glob,
    test: globTest(glob, { dot: true, nocase: true }),
  }));
  const anyFileRule = anyGlob(fileRules.map((rule) => rule.glob));

  const denied: string[] = [];
  for (const p of options.alwaysDenied ?? []) {
    if (p === "") continue;
    const normal = stripSlash(posix.resolve(Deno.cwd(), p));
    denied.push(lower(normal), lower(await realPathLoose(normal)));
  }
  const deniedPaths = unique(denied);

  /** Refused exact paths, lower-cased: the implicit deny list and absolute Forbidden_dir entries. */
  const exactRefused = new Set([
    ...deniedPaths,
    ...dirRules.flatMap((rule) => rule.forms),
  ]);
  /** Each Forbidden_dir run as the end of a path (`/.config/gh`). */
  const runSuffixes = forbiddenRuns.map((run) => `/${run.join("/")}`);

  function childRefused(path: string, name: string): boolean {
    if (forbiddenNames.has(lower(name)) || anyFileRule(name)) return true;
    if (PSEUDO_ROOTS.includes(path)) return true;
    // Lower-cased once, and only when some rule looks at whole paths.
    if (exactRefused.size === 0 && runSuffixes.length === 0) return false;
    const low = lower(path);
    return exactRefused.has(low) ||
      runSuffixes.some((suffix) => low.endsWith(suffix));
  }

  /** Whether a `Forbidden_dir` run of names occurs in `components` (only ending at the last one with `atEnd`). */
  function runAt(components: string[], atEnd: boolean): boolean {
    for (const run of forbiddenRuns) {
      const last = components.length - run.length;
      for (let i = atEnd ? last : 0; i <= last; i++) {
        if (run.every((name, j) => components[i + j] === name)) return true;
      }
    }
    return false;
  }

  function refusal(
    path: string,
    shown: string,
    roots: readonly string[],
    vague = false,
  ): HttpError | undefined {
    const refuse = (code: string, why: string) =>
      vague
        ? new HttpError(
          403,
          "refused",
          `Cannot serve ${quote(shown)}: it leads to a path the rules refuse`,
        )
        : new HttpError(403, code, `Cannot serve ${quote(shown)}: ${why}`);
    for (const pseudo of PSEUDO_ROOTS) {
      if (within(path, pseudo)) {
        return refuse(
          "not_regular",
          `files under ${pseudo} are ${
            pseudo === "/dev" ? "devices" : "pseudo-files"
          } and are never served`,
        );
      }
    }
    const low = lower(path);
    for (const d of deniedPaths) {
      if (within(low, d)) {
        return refuse(
          "forbidden",
          "it belongs to hsyncd (its state directory, certificate or keys)",
        );
      }
    }
    for (const rule of dirRules) {
      if (rule.forms.some((form) => within(low, form))) {
        return refuse(
          "forbidden_dir",
          `refused by Forbidden_dir "${rule.entry}"`,
        );
      }
    }
    if (forbiddenNames.size > 0 || forbiddenRuns.length > 0) {
      const components = low.split("/");
      for (const component of components) {
        if (forbiddenNames.has(component)) {
          return refuse(
            "forbidden_dir",
            `refused by Forbidden_dir "${component}"`,
          );
        }
      }
      if (runAt(components, false)) {
        return refuse("forbidden_dir", "refused by Forbidden_dir");
      }
    }
    const name = posix.basename(path);
    if (name !== "" && anyFileRule(name)) {
      const rule = fileRules.find((r) => r.test(name));
      return refuse(
        "forbidden_file",
        `refused by Forbidden_file "${rule?.glob ?? name}"`,
      );
    }
    if (roots.length > 0 && !roots.some((root) => within(path, root))) {
      return refuse(
        "outside_allowed",
        "it is outside every Only_allowed_path directory",
      );
    }
    return undefined;
  }

  return {
    configuredRoots: unique([...configuredRoots, ...realRoots]),
    realRoots: unique(realRoots),
    refusal,
    childRefused,
  };
}

/**
 * One test for a whole list of `Forbidden_file` globs, as picomatch decides
 * each (a name equal to a glob, or matching its expression), letter case
 * ignored, but with one regular expression instead of one call per glob: the
 * listing and the bundles ask it about every file they serve.
 */
export function anyGlob(globs: readonly string[]): (name: string) => boolean {
  if (globs.length === 0) return () => false;
  const literal = new Set(globs.map(lower));
  const all = new RegExp(
    globs.map((glob) => globRegExp(glob, { dot: true, nocase: true }).source)
      .join("|"),
    "i",
  );
  return (name) => name !== "" && (literal.has(lower(name)) || all.test(name));
}

/** Validates a configured absolute path and normalises it. */
function configuredAbsolute(entry: string, key: string): string {
  if (!entry.startsWith("/") || entry.includes("\0")) {
    throw new ConfigError(
      `Invalid ${key} entry "${entry}": expected an absolute path`,
    );
  }
  return stripSlash(posix.normalize(entry));
}

function describeFsError(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such directory";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  return error instanceof Error ? error.message : String(error);
}

/** `realpath` of the longest existing prefix of `path`, with the rest appended; `path` itself when nothing resolves. */
async function realPathLoose(path: string): Promise<string> {
  const rest: string[] = [];
  let dir = path;
  while (true) {
    try {
      return posix.join(await Deno.realPath(dir), ...rest);
    } catch {
      if (dir === "/") return path;
      rest.unshift(posix.basename(dir));
      dir = posix.dirname(dir);
    }
  }
}

/** True when `path` is `dir` or below it, compared by whole components. */
export function within(path: string, dir: string): boolean {
  if (dir === "/") return true;
  return path === dir || path.startsWith(`${dir}/`);
}

/** `path` without a trailing slash (except `/` itself). */
export function stripSlash(path: string): string {
  return path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}

function lower(text: string): string {
  return text.toLowerCase();
}

/** A value quoted for a message, control characters escaped and length bounded. */
export function quote(value: string): string {
  const shown = value.length > 300 ? `${value.slice(0, 300)}...` : value;
  return JSON.stringify(shown);
}
