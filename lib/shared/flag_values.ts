/** Command-line values in the programs' own words: one line naming the flag, what it needs and what it got, for hsync and hsyncd alike. */
import { UsageError } from "./errors.ts";

/**
 * `-n -3` as `--parallel=-3`: node:util's parser refuses a value that starts
 * with `-` as "ambiguous" without saying which value; joined to its flag it
 * reaches the check that words the refusal. `flags` maps every spelling of
 * an option that takes a value (`-n`, `--parallel`) to its long form. Only a
 * negative number is joined: anything else after a flag stays a flag.
 */
export function joinNegativeValues(
  args: string[],
  flags: Record<string, string>,
): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      out.push(...args.slice(i));
      break;
    }
    const long = flags[arg];
    const next = args[i + 1];
    if (long !== undefined && next !== undefined && /^-\d/.test(next)) {
      out.push(`${long}=${next}`);
      i++;
    } else out.push(arg);
  }
  return out;
}

/**
 * The old tools' flags in today's spelling: each key of `renames` (`-host`)
 * and its `KEY=VALUE` form become the value (`--host-ip`, `--host-ip=VALUE`).
 * Nothing after `--` is touched (a file may be named `-host`).
 */
export function renameFlags(
  args: string[],
  renames: Record<string, string>,
): string[] {
  const end = args.indexOf("--");
  const flags = end === -1 ? args : args.slice(0, end);
  const renamed = flags.map((arg) => {
    const eq = arg.indexOf("=");
    const name = eq === -1 ? arg : arg.slice(0, eq);
    const to = Object.hasOwn(renames, name) ? renames[name] : undefined;
    return to === undefined ? arg : to + (eq === -1 ? "" : arg.slice(eq));
  });
  return end === -1 ? renamed : [...renamed, ...args.slice(end)];
}

/** `-p needs a port number (1-65535), got "abc"`. */
export function badFlagValue(
  flag: string,
  needs: string,
  got: string,
): UsageError {
  return new UsageError(`${flag} needs ${needs}, got ${JSON.stringify(got)}`);
}

/** A port number from the command line, or a {@linkcode badFlagValue} for `flag`. */
export function checkPort(flag: string, text: string): string {
  const n = Number(text.trim());
  if (!/^\d+$/.test(text.trim()) || n < 1 || n > 65535) {
    throw badFlagValue(flag, "a port number (1-65535)", text);
  }
  return text.trim();
}

/** A host or address from the command line, or a {@linkcode badFlagValue} for `flag`. */
export function checkHost(flag: string, text: string): string {
  if (text.trim() === "" || /[\s/]/.test(text.trim())) {
    throw badFlagValue(flag, "an IP address or host name", text);
  }
  return text.trim();
}
