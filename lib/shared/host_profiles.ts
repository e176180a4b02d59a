/** `[host:NAME]` sections of hsync.ini: named servers with their own client keys, used as `NAME:/path` like ssh's Host aliases. */
import type { Setting } from "./config.ts";

/** Prefix of a profile section's name. */
export const PROFILE_PREFIX = "host:";

/** The profiles of a configuration: name -> key -> value and source. */
export type Profiles = Record<string, Record<string, Setting>>;

/** The profile name of a section name (`host:lab` -> `lab`), undefined for any other section. */
export function profileName(section: string): string | undefined {
  const trimmed = section.trim();
  if (!trimmed.toLowerCase().startsWith(PROFILE_PREFIX)) return undefined;
  const name = trimmed.slice(PROFILE_PREFIX.length).trim();
  return /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(name) ? name : undefined;
}

/**
 * Merges one `[host:NAME]` section of `source` into `profiles`: keys are
 * those of the client sections (`keys`, matched without regard to case);
 * an unknown one is a warning.
 */
export function mergeProfile(
  profiles: Profiles,
  warnings: string[],
  name: string,
  body: Record<string, unknown>,
  keys: string[],
  source: string,
): void {
  const profile = profiles[name] ??= {};
  for (const [keyName, raw] of Object.entries(body)) {
    const key = keys.find((k) => k.toLowerCase() === keyName.toLowerCase());
    if (key === undefined || typeof raw === "object") {
      warnings.push(
        `Unknown key "${keyName}" in [${PROFILE_PREFIX}${name}] of "${source}" is ignored`,
      );
      continue;
    }
    profile[key] = {
      raw: typeof raw === "string" ? raw.trim() : String(raw),
      source,
    };
  }
}

/**
 * The profile a command-line host names, and the host to connect to: the
 * profile's `Host_ip`, or the name itself when it sets none (as ssh's
 * HostName). Undefined when `host` names no profile.
 */
export function profileFor(
  profiles: Profiles | undefined,
  host: string,
): { name: string; hostIp?: string } | undefined {
  const profile = profiles?.[host];
  if (profile === undefined) return undefined;
  return {
    name: host,
    hostIp: profile.Host_ip === undefined ? host : undefined,
  };
}

/** The `[host:NAME]` sections for `hsync echo-config`, each key with the file it came from. */
export function formatProfiles(profiles: Profiles | undefined): string[] {
  const lines: string[] = [];
  for (const [name, keys] of Object.entries(profiles ?? {})) {
    lines.push("", `[${PROFILE_PREFIX}${name}]`);
    for (const [key, s] of Object.entries(keys)) {
      lines.push(`${key} = ${s.raw}  ; from ${s.source}`);
    }
  }
  return lines;
}
