/** The selection flags of a run made into {@linkcode FilterOptions}: the `--include-from`, `--exclude-from` and `--files-from` files read and checked. */
import { reason, UsageError } from "../shared/errors.ts";
import type { SelectFlags } from "./client_flags.ts";
import type { FilterOptions } from "./filters.ts";

/**
 * The filter options of a run: the globs given (`include`, `exclude`) with
 * the lines of the `-from` files added, the regular expressions, and the
 * `--files-from` paths. `read` gives a file's text (`-` is standard input,
 * which can be read once: naming it twice is a usage error, as is a file
 * that cannot be read or a `--files-from` line leaving the transfer root).
 */
export async function selectionOptions(
  select: SelectFlags,
  include: string[],
  exclude: string[],
  read: (name: string) => Promise<string>,
): Promise<FilterOptions> {
  const named: Array<[string, string]> = [
    ...select.includeFrom.map((n): [string, string] => ["--include-from", n]),
    ...select.excludeFrom.map((n): [string, string] => ["--exclude-from", n]),
    ...(select.filesFrom === undefined
      ? []
      : [["--files-from", select.filesFrom] as [string, string]]),
  ];
  const stdin = named.filter(([, name]) => name === "-").map(([flag]) => flag);
  if (stdin.length > 1) {
    throw new UsageError(
      `Standard input can be read only once: "-" is given to ${
        stdin.join(" and ")
      }`,
    );
  }
  const includes = [...include];
  for (const name of select.includeFrom) {
    includes.push(...linesOf(await readList("--include-from", name, read)));
  }
  const excludes = [...exclude];
  for (const name of select.excludeFrom) {
    excludes.push(...linesOf(await readList("--exclude-from", name, read)));
  }
  const options: FilterOptions = {
    include: includes,
    exclude: excludes,
    includeRegex: [...select.includeRegex],
    excludeRegex: [...select.excludeRegex],
  };
  if (select.filesFrom !== undefined) {
    const name = select.filesFrom;
    const text = await readList("--files-from", name, read);
    options.filesFrom = linesOf(text).map((line) => listedPath(line, name));
  }
  return options;
}

/** The text of a `-from` file, or a usage error naming it. */
async function readList(
  flag: string,
  name: string,
  read: (name: string) => Promise<string>,
): Promise<string> {
  try {
    return await read(name);
  } catch (error) {
    const what = name === "-" ? "standard input" : JSON.stringify(name);
    throw new UsageError(`Cannot read ${flag} file ${what}: ${reason(error)}`);
  }
}

/** The patterns or paths of a list, as rsync reads one: a trailing `\r` dropped, blank lines and `#` or `;` comments skipped. */
function linesOf(text: string): string[] {
  return text.split("\n")
    .map((line) => line.endsWith("\r") ? line.slice(0, -1) : line)
    .filter((line) =>
      line.trim() !== "" && !line.startsWith("#") && !line.startsWith(";")
    );
}

/** A `--files-from` line as a path relative to the transfer root (`./a/`, `/a` and `a` are one path; `.` is the root itself). */
function listedPath(line: string, file: string): string {
  const parts = line.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) {
    throw new UsageError(
      `Invalid line ${JSON.stringify(line)} in --files-from file ${
        file === "-" ? "standard input" : JSON.stringify(file)
      }: ".." leaves the transfer root`,
    );
  }
  return parts.join("/");
}
