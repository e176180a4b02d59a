/** Loads hsync.ini layers (built-in < $HSYNC_DIR < -c) into validated, typed settings. */
import { parseBytes } from "./byte_units.ts";
import { type ParsedIni, parseIni } from "./ini_text.ts";
import { join } from "node:path";
import { ConfigError } from "./errors.ts";
import { parseServerName, type ServerNameEntry } from "./server_origin.ts";
import {
  formatProfiles,
  mergeProfile,
  profileName,
  type Profiles,
} from "./host_profiles.ts";

/** Sections of hsync.ini. */
export type Section = "hsyncd" | "hscp" | "hsync";

/** The kinds of value a key can hold. */
type Kind =
  | "host"
  | "port"
  | "count"
  | "count0"
  | "seconds"
  | "bytes"
  | "bool"
  | "list"
  | "names"
  | "path";

const CLIENT_KEYS: Record<string, Kind> = {
  Host_ip: "host",
  Port: "port",
  Max_tcp_conn: "count",
  Max_part_num: "count",
  Max_runing: "count",
  Min_part_size: "bytes",
  Data_timeout: "seconds",
  Max_timeout_retry: "count0",
  Tls: "bool",
  CA_file: "path",
  Identity_file: "path",
};

/** Every known key per section with its kind. */
export const SCHEMA: Record<Section, Record<string, Kind>> = {
  hsyncd: {
    Host_ip: "host",
    Port: "port",
    Only_allowed_path: "list",
    Forbidden_dir: "list",
    Forbidden_file: "list",
    Allowed_host: "list",
    Cert_file: "path",
    Key_file: "path",
    Authorized_keys: "path",
    Server_name: "names",
    Writable_path: "list",
    Anonymous_read: "bool",
    Log_file: "path",
    Log_max_bytes: "bytes",
    Log_keep: "count0",
  },
  hscp: CLIENT_KEYS,
  hsync: { ...CLIENT_KEYS, Sync_interval_sec: "seconds" },
};

/** One effective value and where it came from. */
export interface Setting {
  raw: string;
  source: string;
}

/** A file searched while loading, in order of increasing precedence. */
export interface SearchedFile {
  path: string;
  found: boolean;
}

/** The merged configuration: raw values by section and key, with their sources. */
export interface LoadedConfig {
  searched: SearchedFile[];
  values: Record<Section, Record<string, Setting>>;
  warnings: string[];
  /** `[host:NAME]` sections by name. */
  profiles?: Profiles;
  /** Keys of the old tool that are accepted and not used, each with what replaced it (issue 21). */
  notes?: string[];
}

/** Options of {@linkcode loadConfig}. */
export interface LoadOptions {
  /** Text of the built-in defaults (the repository's hsync.ini). */
  defaults: string;
  /** Directory holding the user's hsync.ini, pidfile and logs. */
  hsyncDir: string;
  /** File given with `-c`, if any: it must exist. */
  configFile?: string;
  /** Reads a text file; NotFound means absent. Defaults to Deno.readTextFile. */
  readTextFile?: (path: string) => Promise<string>;
}

/** Keys of the old Python tool, in any section: what replaced each (said once, not an "unknown key" warning). */
const OLD_KEYS: Record<string, string> = {
  md5_check_nproc:
    "files are checked by SHA-256 on the server (--verify, --checksum), as many at once as -n files",
  hsync_verify: "verification is asked for on the command line with --verify",
};

/** Name under which the built-in defaults are reported. */
export const BUILTIN = "(built-in defaults)";

/** Reads the layers in precedence order and merges them key by key. */
export async function loadConfig(options: LoadOptions): Promise<LoadedConfig> {
  const read = options.readTextFile ?? Deno.readTextFile;
  const values: LoadedConfig["values"] = { hsyncd: {}, hscp: {}, hsync: {} };
  const warnings: string[] = [];
  const profiles: Profiles = {};
  const notes: string[] = [];
  const searched: SearchedFile[] = [{ path: BUILTIN, found: true }];
  mergeLayer(
    values,
    { warnings, notes },
    BUILTIN,
    await parsed(BUILTIN, options.defaults),
    profiles,
  );

  const userFile = join(options.hsyncDir, "hsync.ini");
  const layers: Array<{ path: string; required: boolean }> = [
    { path: userFile, required: false },
  ];
  if (options.configFile !== undefined) {
    layers.push({ path: options.configFile, required: true });
  }
  for (const layer of layers) {
    let text: string;
    try {
      text = await read(layer.path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound && !layer.required) {
        searched.push({ path: layer.path, found: false });
        continue;
      }
      const why = error instanceof Deno.errors.NotFound
        ? "no such file"
        : error instanceof Error
        ? error.message
        : String(error);
      throw new ConfigError(
        `Cannot read configuration file "${layer.path}": ${why}`,
      );
    }
    searched.push({ path: layer.path, found: true });
    mergeLayer(
      values,
      { warnings, notes },
      layer.path,
      await parsed(layer.path, text),
      profiles,
    );
  }
  return { searched, values, warnings, notes, profiles };
}

/** The configuration file `source` (its `text`) parsed; `ConfigError` when it cannot be. */
async function parsed(source: string, text: string): Promise<ParsedIni> {
  try {
    return await parseIni(text);
  } catch (error) {
    throw new ConfigError(
      `Cannot parse configuration file "${source}": ${String(error)}`,
    );
  }
}

function mergeLayer(
  values: LoadedConfig["values"],
  { warnings, notes }: { warnings: string[]; notes: string[] },
  source: string,
  parsed: ParsedIni,
  profiles: Profiles,
): void {
  for (const [sectionName, body] of Object.entries(parsed)) {
    const profile = profileName(sectionName);
    if (profile !== undefined && typeof body === "object" && body !== null) {
      const keys = Object.keys(SCHEMA.hsync);
      mergeProfile(
        profiles,
        warnings,
        profile,
        body as Record<string, unknown>,
        keys,
        source,
      );
      continue;
    }
    const section = findKey(Object.keys(SCHEMA), sectionName) as
      | Section
      | undefined;
    if (section === undefined || typeof body !== "object" || body === null) {
      warnings.push(
        `Unknown section [${sectionName}] in "${source}" is ignored`,
      );
      continue;
    }
    for (const [keyName, raw] of Object.entries(body)) {
      const key = findKey(Object.keys(SCHEMA[section]), keyName);
      const replaced = OLD_KEYS[keyName.trim().toLowerCase()];
      if (key === undefined && replaced !== undefined) {
        notes.push(
          `"${keyName}" in [${section}] of "${source}" is the old tool's and is not used: ${replaced}`,
        );
        continue;
      }
      if (key === undefined) {
        warnings.push(
          `Unknown key "${keyName}" in [${section}] of "${source}" is ignored`,
        );
        continue;
      }
      const text = typeof raw === "string" ? raw.trim() : String(raw);
      values[section][key] = { raw: text, source };
    }
  }
}

function findKey(keys: string[], name: string): string | undefined {
  const lower = name.trim().toLowerCase();
  return keys.find((k) => k.toLowerCase() === lower);
}

/** Settings of hsyncd. */
export interface ServerSettings {
  hostIp: string;
  port: number;
  onlyAllowedPath: string[];
  forbiddenDir: string[];
  forbiddenFile: string[];
  allowedHost: string[];
  certFile: string;
  keyFile: string;
  authorizedKeys: string;
  /** More names a signature may be bound to (DNS names, proxies, forwarded ports). */
  serverName: ServerNameEntry[];
  /** `Writable_path`: directories pushes may write below; empty accepts no writes. */
  writablePath: string[];
  /** `Anonymous_read`: with `Authorized_keys`, unsigned requests may still read; writes always need a key. */
  anonymousRead: boolean;
  logFile: string;
  logMaxBytes: number;
  logKeep: number;
}

/** Settings of the client, from [hscp] or (with --sync) [hsync]. */
export interface ClientSettings {
  hostIp: string;
  port: number;
  /** `Max_tcp_conn`: connections to the server at once. */
  maxTcpConn: number;
  /** `Max_part_num`: ranges one file is split into at most. */
  maxPartNum: number;
  /**
   * `Max_part_num` was given (a file or a profile): a big file is
   * split into that many ranges at once, as the old tool did. Otherwise it
   * is a bound, and how many streams pay is measured.
   */
  pinnedParts: boolean;
  /** `Max_runing` (the old key's spelling): range requests in flight at most, over all files. */
  maxRangesInFlight: number;
  minPartSize: number;
  /** Seconds. */
  dataTimeout: number;
  maxTimeoutRetry: number;
  /** Seconds; only meaningful for [hsync]. */
  syncIntervalSec: number;
  tls: boolean;
  caFile: string;
  identityFile: string;
}

/** Overrides from the command line, by ini key name (already strings, validated like file values). */
export type Overrides = Partial<Record<string, string>>;

/** The validated settings of [hsyncd], with command-line overrides applied. */
export function serverSettings(
  config: LoadedConfig,
  overrides: Overrides = {},
): ServerSettings {
  const get = getter(config, "hsyncd", overrides);
  return {
    hostIp: get("Host_ip") as string,
    port: get("Port") as number,
    onlyAllowedPath: get("Only_allowed_path") as string[],
    forbiddenDir: get("Forbidden_dir") as string[],
    forbiddenFile: get("Forbidden_file") as string[],
    allowedHost: get("Allowed_host") as string[],
    certFile: get("Cert_file") as string,
    keyFile: get("Key_file") as string,
    authorizedKeys: get("Authorized_keys") as string,
    serverName: get("Server_name") as ServerNameEntry[],
    writablePath: get("Writable_path") as string[],
    anonymousRead: get("Anonymous_read") as boolean,
    logFile: get("Log_file") as string,
    logMaxBytes: get("Log_max_bytes") as number,
    logKeep: get("Log_keep") as number,
  };
}

/** The validated settings of [hscp] or [hsync], with command-line overrides applied. */
export function clientSettings(
  config: LoadedConfig,
  section: "hscp" | "hsync",
  overrides: Overrides = {},
  profile?: string,
): ClientSettings {
  const get = getter(config, section, overrides, profile);
  const hostIp = get("Host_ip") as string;
  // Max_part_num left at its default is a bound: how many streams a big
  // file gets is measured (lib/client/stream_governor.ts), for any address.
  const maxPartNum = get("Max_part_num") as number;
  const pinnedParts = overrides.Max_part_num !== undefined ||
    config.profiles?.[profile ?? ""]?.Max_part_num !== undefined ||
    effectiveSetting(config, section, "Max_part_num")?.source !== BUILTIN;
  return {
    hostIp,
    port: get("Port") as number,
    maxTcpConn: get("Max_tcp_conn") as number,
    maxPartNum,
    pinnedParts,
    maxRangesInFlight: get("Max_runing") as number,
    minPartSize: get("Min_part_size") as number,
    dataTimeout: get("Data_timeout") as number,
    maxTimeoutRetry: get("Max_timeout_retry") as number,
    syncIntervalSec: section === "hsync"
      ? get("Sync_interval_sec") as number
      : 2,
    tls: get("Tls") as boolean,
    caFile: get("CA_file") as string,
    identityFile: get("Identity_file") as string,
  };
}

type Value = string | number | boolean | string[] | ServerNameEntry[];

function getter(
  config: LoadedConfig,
  section: Section,
  overrides: Overrides,
  profile?: string,
): (key: string) => Value {
  return (key) => {
    const kind = SCHEMA[section][key];
    const flag = overrides[key];
    if (flag !== undefined) {
      return parseValue(kind, flag, `command line option for ${key}`);
    }
    const own = config.profiles?.[profile ?? ""]?.[key];
    if (own !== undefined) {
      return parseValue(
        kind,
        own.raw,
        `"${own.source}" [host:${profile}] ${key}`,
      );
    }
    const setting = effectiveSetting(config, section, key);
    if (setting === undefined) {
      throw new ConfigError(
        `Missing key ${key} in [${section}] of the built-in defaults`,
      );
    }
    return parseValue(
      kind,
      setting.raw,
      `"${setting.source}" [${setting.section ?? section}] ${key}`,
    );
  };
}

/** Connection keys `--sync` ([hsync]) takes from [hscp] unless [hsync] sets them (README "Configuration"). */
export const SHARED_CLIENT_KEYS = [
  "Host_ip",
  "Port",
  "Tls",
  "CA_file",
  "Identity_file",
] as const;

/**
 * The value a section uses for a key, and where it came from. For [hsync],
 * a connection key ({@linkcode SHARED_CLIENT_KEYS}) set in [hscp] by a
 * file of higher precedence than any that sets it in [hsync] comes from
 * [hscp] (`section` then says so): a setting given once serves both; in
 * one file, [hsync] wins.
 */
export function effectiveSetting(
  config: LoadedConfig,
  section: Section,
  key: string,
): (Setting & { section?: Section }) | undefined {
  const own = config.values[section][key];
  if (
    section !== "hsync" ||
    !(SHARED_CLIENT_KEYS as readonly string[]).includes(key)
  ) return own;
  const shared = config.values.hscp[key];
  if (shared === undefined) return own;
  const rank = (s: Setting | undefined) =>
    s === undefined
      ? -1
      : config.searched.findIndex((f) => f.path === s.source);
  return rank(shared) > rank(own) ? { ...shared, section: "hscp" } : own;
}

/** Parses one raw value of the given kind; `where` names file, section and key in the error. */
export function parseValue(kind: Kind, raw: string, where: string): Value {
  const bad = (why: string) =>
    new ConfigError(`Invalid value "${raw}" for ${where}: ${why}`);
  const value = raw.trim();
  switch (kind) {
    case "port": {
      const n = Number(value);
      if (!/^\d+$/.test(value) || n < 1 || n > 65535) {
        throw bad("a port is a whole number from 1 to 65535");
      }
      return n;
    }
    case "count":
    case "count0": {
      const min = kind === "count" ? 1 : 0;
      const n = Number(value);
      if (!/^\d+$/.test(value) || n < min || n > 1_000_000) {
        throw bad(`expected a whole number from ${min} to 1000000`);
      }
      return n;
    }
    case "bytes": {
      const n = parseBytes(value);
      if (n === undefined) {
        throw bad("expected a size in bytes, like 1048576, 64K, 64M or 1G");
      }
      return n;
    }
    case "seconds": {
      const n = Number(value);
      if (value === "" || !Number.isFinite(n) || n <= 0 || n > 86400) {
        throw bad("expected a number of seconds above 0 and at most 86400");
      }
      return n;
    }
    case "bool": {
      const lower = value.toLowerCase();
      if (["yes", "true", "on", "1"].includes(lower)) return true;
      if (["no", "false", "off", "0", ""].includes(lower)) return false;
      throw bad("expected yes or no");
    }
    case "list":
      return value.split(",").map((s) => s.trim()).filter((s) => s !== "");
    case "names":
      return value.split(",").map((s) => s.trim()).filter((s) => s !== "").map(
        (entry) => {
          try {
            return parseServerName(entry);
          } catch (error) {
            throw bad((error as Error).message);
          }
        },
      );
    case "host":
      if (value === "" || /[\s/]/.test(value)) {
        throw bad("expected an IP address or host name");
      }
      return value;
    case "path":
      if (value.includes("\0")) throw bad("a path cannot contain NUL");
      return value;
  }
}

/**
 * `hsync echo-config`: the files searched in order and every effective value
 * by section; `shown` replaces the line of a key whose effective value is
 * not in any file (the default key file, when it exists).
 */
export function formatConfig(
  config: LoadedConfig,
  shown: Partial<Record<Section, Record<string, string>>> = {},
): string {
  const lines = ["; files searched, lowest precedence first:"];
  for (const f of config.searched) {
    lines.push(`;   ${f.path}${f.found ? "" : " (not found)"}`);
  }
  for (const section of Object.keys(SCHEMA) as Section[]) {
    lines.push("", `[${section}]`);
    for (const key of Object.keys(SCHEMA[section])) {
      const s = effectiveSetting(config, section, key);
      const note = s?.source === BUILTIN
        ? ""
        : `  ; from ${s?.source}${s?.section ? ` [${s.section}]` : ""}`;
      const value = shown[section]?.[key];
      if (value !== undefined) lines.push(`${key} = ${value}`);
      else {lines.push(
          s === undefined ? `${key} =` : `${key} = ${s.raw}${note}`,
        );}
    }
  }
  lines.push(...formatProfiles(config.profiles));
  return lines.join("\n");
}

/** `$HSYNC_DIR`, defaulting to `$HOME/.hsync`. */
export function resolveHsyncDir(
  env: { HSYNC_DIR?: string; HOME?: string },
): string {
  if (env.HSYNC_DIR) return env.HSYNC_DIR;
  return join(env.HOME ?? ".", ".hsync");
}

export { parseBytes };
