/** Parses the hsync command line (old single-dash flags included) into a command, without touching Deno.args. */
import { parseArgs } from "node:util";
import { UsageError } from "../shared/errors.ts";
import {
  badFlagValue,
  checkHost,
  checkPort,
  joinNegativeValues,
} from "../shared/flag_values.ts";
import { DEFAULT_MAX_ENTRIES } from "./listing.ts";
import { parseRate } from "./bandwidth.ts";

export { CLIENT_USAGE } from "./client_usage.ts";

/** A pull (one-shot or --sync). */
export interface PullCommand {
  kind: "pull";
  remotePath: string;
  localPath: string;
  /** Given as `HOST:/path LOCAL`: scp's placement rule applies to directories too. */
  scpStyle: boolean;
  host?: string;
  port?: string;
  parallel: number;
  configFile?: string;
  sync: boolean;
  fromNow: boolean;
  verify: boolean;
  /** Skip files whose SHA-256 matches the server's (instead of size + mtime). */
  checksum: boolean;
  include: string[];
  exclude: string[];
  /** `--include-regex`, `--exclude-regex`, `--include-from`, `--exclude-from`, `--files-from`. */
  select: SelectFlags;
  /** `--delete`, `--max-delete`, `--dry-run`. */
  mirror: MirrorFlags;
  /** Every remote path asked for (`-i` repeated, or several `HOST:/path`), the first also in `remotePath`. */
  remotePaths: string[];
  preserve: boolean;
  /** With `preserve`: also apply setuid, setgid, sticky and write-for-others bits. */
  specialModes: boolean;
  /** `-l`, `-H`, `-S`, `--unsafe-links`. */
  copy: CopyFlags;
  /** Most listing entries accepted (`--max-entries`). */
  maxEntries: number;
  tls: boolean;
  quiet: boolean;
  debug: boolean;
  /** `--no-wait`: another hsync writing into the same destination stops this run (exit 1) instead of making it wait. */
  noWait: boolean;
  /** `--json`: one JSON object per event on standard output (lib/client/json_events.ts). */
  json: boolean;
  /** `--bwlimit RATE`: bytes per second over every connection of the run. */
  bwlimit?: number;
}

/** A push of local files and trees to the server. */
export interface PushCommand {
  kind: "push";
  /** Local files and directories, in order. */
  sources: string[];
  /** Absolute path on the server. */
  remotePath: string;
  /** Given as `LOCAL... HOST:/path`: scp's placement rule applies to directories too. */
  scpStyle: boolean;
  host?: string;
  port?: string;
  parallel: number;
  configFile?: string;
  verify: boolean;
  checksum: boolean;
  include: string[];
  exclude: string[];
  /** `--include-regex`, `--exclude-regex`, `--include-from`, `--exclude-from`, `--files-from`. */
  select: SelectFlags;
  /** `--delete`, `--max-delete`, `--dry-run`. */
  mirror: MirrorFlags;
  preserve: boolean;
  /** `-l`, `-H`, `-S`, `--unsafe-links`. */
  copy: CopyFlags;
  maxEntries: number;
  tls: boolean;
  quiet: boolean;
  debug: boolean;
  /** `--no-wait`: another push into the same server destination stops this run (exit 1) instead of making it wait. */
  noWait: boolean;
  /** `--json`: one JSON object per event on standard output (lib/client/json_events.ts). */
  json: boolean;
  /** `--bwlimit RATE`: bytes per second over every connection of the run. */
  bwlimit?: number;
}

/**
 * Selection beyond `--include`/`--exclude`. The `-from` files are named
 * here and read by the caller (`-` is standard input), one pattern or path
 * per line; blank lines and lines starting with `#` or `;` are skipped.
 */
export interface SelectFlags {
  /** JavaScript regular expressions searched in the relative path (checked here). */
  includeRegex: string[];
  excludeRegex: string[];
  /** Files of globs, one per line, added to `--include`/`--exclude`. */
  includeFrom: string[];
  excludeFrom: string[];
  /** A file of relative paths (`-`: standard input): only those entries (a directory with all below it). */
  filesFrom?: string;
}

/** Mirroring: delete what the source does not have, or only say what would happen. */
export interface MirrorFlags {
  /** `--delete`: after a transfer with no failures, delete entries of the destination the source does not have. */
  delete: boolean;
  /** `--max-delete N`: more than N deletions means none, one line and exit 2. */
  maxDelete?: number;
  /** `--dry-run`: list, compare and print what would be transferred, skipped and deleted; write nothing; exit 0. */
  dryRun: boolean;
}

/** What a faithful copy keeps beyond bytes, times and modes (`-a` sets the first three). */
export interface CopyFlags {
  /** `-l`: symbolic links are copied as links. */
  links: boolean;
  /** `-H`: names of one file stay names of one file. */
  hardLinks: boolean;
  /** `-S`: long zero runs are neither sent nor written (they stay holes). */
  sparse: boolean;
  /** `--unsafe-links`: with `links`, links whose target leaves the copy are created too. */
  unsafeLinks: boolean;
}

/** What the command line asks for. */
export type ClientCommand =
  | { kind: "help" }
  | { kind: "version" }
  | { kind: "echo-config"; configFile?: string }
  | {
    kind: "keygen";
    force: boolean;
    configFile?: string;
    /** `--public FILE`: print the Authorized_keys line of this existing key instead. */
    publicOf?: string;
  }
  | PullCommand
  | PushCommand;

const OPTIONS = {
  input: { type: "string", short: "i", multiple: true },
  output: { type: "string", short: "o" },
  "host-ip": { type: "string" },
  port: { type: "string", short: "p" },
  parallel: { type: "string", short: "n" },
  config: { type: "string", short: "c" },
  sync: { type: "boolean" },
  "from-now": { type: "boolean" },
  "ignore-exists": { type: "boolean" },
  verify: { type: "boolean" },
  checksum: { type: "boolean" },
  include: { type: "string", multiple: true },
  exclude: { type: "string", multiple: true },
  "include-regex": { type: "string", multiple: true },
  "exclude-regex": { type: "string", multiple: true },
  "include-from": { type: "string", multiple: true },
  "exclude-from": { type: "string", multiple: true },
  "files-from": { type: "string" },
  delete: { type: "boolean" },
  "max-delete": { type: "string" },
  "dry-run": { type: "boolean" },
  preserve: { type: "boolean", short: "P" },
  archive: { type: "boolean", short: "a" },
  links: { type: "boolean", short: "l" },
  "hard-links": { type: "boolean", short: "H" },
  sparse: { type: "boolean", short: "S" },
  "unsafe-links": { type: "boolean" },
  "special-modes": { type: "boolean" },
  push: { type: "boolean" },
  "max-entries": { type: "string" },
  tls: { type: "boolean" },
  quiet: { type: "boolean" },
  "no-wait": { type: "boolean" },
  debug: { type: "boolean" },
  json: { type: "boolean" },
  bwlimit: { type: "string" },
  force: { type: "boolean" },
  public: { type: "string" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean" },
} as const;

/** Every spelling of the options that take a number, for {@linkcode joinNegativeValues}. */
const VALUE_FLAGS: Record<string, string> = {
  "-n": "--parallel",
  "--parallel": "--parallel",
  "-p": "--port",
  "--port": "--port",
  "--max-entries": "--max-entries",
  "--max-delete": "--max-delete",
};

/** Rewrites the old tool's long flags: `-host` (and `-host=IP`) to `--host-ip`, `--num N` (and `--num=N`) to `-n`'s `--parallel`. */
export function normalizeOldFlags(args: string[]): string[] {
  return args.map((a) => {
    if (a === "-host") return "--host-ip";
    if (a.startsWith("-host=")) return `--host-ip=${a.slice(6)}`;
    if (a === "--num") return "--parallel";
    if (a.startsWith("--num=")) return `--parallel=${a.slice(6)}`;
    return a;
  });
}

/** `HOST[:PORT]:/remote/path`, with `[v6]` hosts; undefined when `text` is not of that form. */
export function parseRemoteSpec(
  text: string,
): { host: string; port?: string; path: string } | undefined {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^:/[\]\s]+)(?::(\d+))?:(\/.*)$/.exec(text);
  if (m === null) return undefined;
  const host = m[1].startsWith("[") ? m[1].slice(1, -1) : m[1];
  return { host, port: m[2], path: m[3] };
}

/** Parses the arguments of hsync; throws `UsageError` with one line naming the bad value. */
export function parseClientArgs(argv: string[]): ClientCommand {
  let parsed;
  try {
    parsed = parseArgs({
      args: joinNegativeValues(normalizeOldFlags(argv), VALUE_FLAGS),
      options: OPTIONS,
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    throw new UsageError(cleanParseError(error));
  }
  const { values: v, positionals } = parsed;
  if (v.help) return { kind: "help" };
  if (v.version) return { kind: "version" };

  const sub = positionals[0];
  if (sub === "echo-config" || sub === "keygen") {
    if (positionals.length > 1) {
      throw new UsageError(
        `Unexpected argument "${positionals[1]}" after ${sub}`,
      );
    }
    return sub === "keygen"
      ? {
        kind: "keygen",
        force: v.force ?? false,
        configFile: v.config,
        ...(v.public === undefined ? {} : { publicOf: v.public }),
      }
      : { kind: "echo-config", configFile: v.config };
  }

  const last = positionals[positionals.length - 1];
  if (
    v.push ||
    (positionals.length > 1 && parseRemoteSpec(positionals[0]) === undefined &&
      parseRemoteSpec(last) !== undefined)
  ) {
    return parsePush(v, positionals);
  }

  let remotePaths = v.input ?? [];
  let localPath = v.output;
  let host = flagHost(v);
  let port = flagPort(v);
  if (positionals.length > 0) {
    // HOST:/a [HOST:/b ...] [LOCAL]: every argument but a last local one is remote.
    const lastIsLocal = positionals.length > 1 &&
      parseRemoteSpec(positionals[positionals.length - 1]) === undefined;
    const remotes = lastIsLocal ? positionals.slice(0, -1) : positionals;
    const specs = remotes.map((text) => {
      const spec = parseRemoteSpec(text);
      if (spec === undefined) {
        throw new UsageError(
          `Unexpected argument "${text}": expected HOST[:PORT]:/remote/path, or use -i`,
        );
      }
      return { text, ...spec };
    });
    if (remotePaths.length > 0) {
      throw new UsageError(
        `Both -i "${remotePaths[0]}" and "${
          specs[0].text
        }" name a remote path: give one`,
      );
    }
    if (!lastIsLocal && specs.length > 1) {
      throw new UsageError(
        `Both "${specs[0].text}" and "${
          specs[specs.length - 1].text
        }" are remote: hsync copies between this machine and one server`,
      );
    }
    const other = specs.find((p) =>
      p.host !== specs[0].host || p.port !== specs[0].port
    );
    if (other !== undefined) {
      throw new UsageError(
        `"${
          specs[0].text
        }" and "${other.text}" name different servers: hsync copies between this machine and one server`,
      );
    }
    if (lastIsLocal && localPath !== undefined) {
      throw new UsageError(
        `Both -o "${localPath}" and "${
          positionals[positionals.length - 1]
        }" name a local path: give one`,
      );
    }
    remotePaths = specs.map((p) => p.path);
    host = host ?? specs[0].host;
    port = port ??
      (specs[0].port && checkPort(`"${specs[0].text}"`, specs[0].port));
    if (lastIsLocal) localPath = positionals[positionals.length - 1];
  }
  if (remotePaths.length === 0) {
    throw new UsageError(
      "Missing the remote path: give -i REMOTE_PATH or HOST:/remote/path",
    );
  }
  for (const p of remotePaths) checkRemotePath(p);
  checkSourceNames(remotePaths);
  const remotePath = remotePaths[0];
  if (v.sync && remotePaths.length > 1) {
    throw new UsageError("--sync follows one remote path: give one");
  }
  if (v.force) throw new UsageError("--force only goes with keygen");
  if (v.public !== undefined) {
    throw new UsageError("--public only goes with keygen");
  }
  if ((v["from-now"] || v["ignore-exists"]) && !v.sync) {
    throw new UsageError("--from-now only goes with --sync");
  }
  if (v["special-modes"] && !v.preserve && !v.archive) {
    throw new UsageError("--special-modes only goes with -P (--preserve)");
  }
  const copy = copyFlags(v);
  const mirror = mirrorFlags(v);
  if (v.sync && (mirror.delete || mirror.dryRun)) {
    throw new UsageError("--delete and --dry-run do not go with --sync");
  }
  if (v.sync && (copy.links || copy.hardLinks || copy.sparse)) {
    throw new UsageError(
      "--sync follows files only: -a, -l, -H and -S do not go with it (use -P for modes)",
    );
  }
  const { maxEntries, parallel } = counts(v);
  return {
    kind: "pull",
    remotePath,
    localPath: localPath ?? ".",
    scpStyle: positionals.length > 0,
    host,
    port,
    parallel,
    configFile: v.config,
    sync: v.sync ?? false,
    fromNow: (v["from-now"] || v["ignore-exists"]) ?? false,
    verify: v.verify ?? false,
    checksum: v.checksum ?? false,
    include: v.include ?? [],
    exclude: v.exclude ?? [],
    select: selectFlags(v),
    mirror,
    remotePaths,
    preserve: (v.preserve || v.archive) ?? false,
    specialModes: v["special-modes"] ?? false,
    copy,
    maxEntries,
    tls: v.tls ?? false,
    quiet: v.quiet ?? false,
    debug: v.debug ?? false,
    noWait: v["no-wait"] ?? false,
    json: v.json ?? false,
    bwlimit: bwlimitOf(v),
  };
}

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS }>>[
  "values"
];

/** `--include-regex` and the others, each expression compiled once to check it. */
function selectFlags(v: Values): SelectFlags {
  for (const flag of ["include-regex", "exclude-regex"] as const) {
    for (const re of v[flag] ?? []) {
      try {
        new RegExp(re);
      } catch (error) {
        throw new UsageError(
          `Invalid value "${re}" for --${flag}: ${
            error instanceof Error
              ? error.message.replace(
                /^Invalid regular expression: \/.*\/[a-z]*: /,
                "",
              )
              : String(error)
          }`,
        );
      }
    }
  }
  return {
    includeRegex: v["include-regex"] ?? [],
    excludeRegex: v["exclude-regex"] ?? [],
    includeFrom: v["include-from"] ?? [],
    excludeFrom: v["exclude-from"] ?? [],
    filesFrom: v["files-from"],
  };
}

/** `--delete`, `--max-delete` and `--dry-run`, checked. */
function mirrorFlags(v: Values): MirrorFlags {
  const text = v["max-delete"];
  if (
    text !== undefined &&
    (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text)))
  ) {
    throw badFlagValue(
      "--max-delete",
      "a number of deletions (0 or more)",
      text,
    );
  }
  if (text !== undefined && !v.delete) {
    throw new UsageError("--max-delete only goes with --delete");
  }
  return {
    delete: v.delete ?? false,
    maxDelete: text === undefined ? undefined : Number(text),
    dryRun: v["dry-run"] ?? false,
  };
}

/**
 * Several sources each go inside the destination under their own name: two
 * with the same name would land on each other, so they are refused before
 * anything moves. Glob patterns are checked once expanded.
 */
export function checkSourceNames(paths: string[]): void {
  const seen = new Map<string, string>();
  for (const p of paths) {
    if (/[*?[]/.test(p)) continue;
    const name = p.replace(/\/+$/, "").split("/").pop() ?? "";
    const first = seen.get(name);
    if (first !== undefined) {
      throw new UsageError(
        `"${first}" and "${p}" have the same name "${name}": each source goes inside the destination under its own name, so give them one at a time`,
      );
    }
    seen.set(name, p);
  }
}

/** `-a`, `-l`, `-H`, `-S` and `--unsafe-links`, checked. */
function copyFlags(v: Values): CopyFlags {
  const links = (v.links || v.archive) ?? false;
  if (v["unsafe-links"] && !links) {
    throw new UsageError("--unsafe-links only goes with -l (--links) or -a");
  }
  return {
    links,
    hardLinks: (v["hard-links"] || v.archive) ?? false,
    sparse: (v.sparse || v.archive) ?? false,
    unsafeLinks: v["unsafe-links"] ?? false,
  };
}

/** A remote path must be absolute and hold no NUL. */
function checkRemotePath(remotePath: string): void {
  if (!remotePath.startsWith("/")) {
    throw new UsageError(
      `Remote path "${remotePath}" is not absolute: it must start with /`,
    );
  }
  if (remotePath.includes("\0")) {
    throw new UsageError("Remote path contains a NUL byte");
  }
}

/** `-host`, checked. */
function flagHost(v: Values): string | undefined {
  const text = v["host-ip"];
  return text === undefined ? undefined : checkHost("-host", text);
}

/** `-p`, checked. */
function flagPort(v: Values): string | undefined {
  return v.port === undefined ? undefined : checkPort("-p", v.port);
}

/** `--bwlimit RATE`, checked. */
function bwlimitOf(v: Values): number | undefined {
  const text = v.bwlimit;
  if (text === undefined) return undefined;
  const rate = parseRate(text);
  if (rate === undefined) {
    throw new UsageError(
      `Invalid value "${text}" for --bwlimit: expected bytes per second above 0, with K, M or G for 1024, 1024² or 1024³ (500K, 1.5M, 10M)`,
    );
  }
  return rate;
}

/** `--max-entries` and `-n`, checked. */
function counts(v: Values): { maxEntries: number; parallel: number } {
  const maxEntries = v["max-entries"] === undefined
    ? DEFAULT_MAX_ENTRIES
    : Number(v["max-entries"]);
  if (
    !/^\d+$/.test(v["max-entries"] ?? "1") || maxEntries < 1 ||
    !Number.isSafeInteger(maxEntries)
  ) {
    throw badFlagValue(
      "--max-entries",
      "a positive number of entries",
      v["max-entries"] ?? "",
    );
  }
  const parallel = v.parallel === undefined ? 8 : Number(v.parallel);
  if (!/^\d+$/.test(v.parallel ?? "8") || parallel < 1) {
    throw badFlagValue(
      "-n",
      "a positive number of files in parallel",
      v.parallel ?? "",
    );
  }
  if (parallel > 1024) {
    throw badFlagValue(
      "-n",
      "at most 1024 files in parallel",
      v.parallel ?? "",
    );
  }
  return { maxEntries, parallel };
}

/**
 * `LOCAL... HOST[:PORT]:/remote/path` (the side with `HOST:` is the remote
 * one), or `--push -i LOCAL -o /remote/path`.
 */
function parsePush(v: Values, positionals: string[]): PushCommand {
  let sources: string[];
  let remotePath: string;
  let host = flagHost(v);
  let port = flagPort(v);
  const scpStyle = positionals.length > 0;
  if (scpStyle) {
    if (v.input !== undefined || v.output !== undefined) {
      throw new UsageError(
        `Give the paths of a push either as LOCAL... HOST:/remote/path or with -i and -o, not both`,
      );
    }
    if (positionals.length < 2) {
      throw new UsageError(
        `Missing the remote path: give LOCAL_PATH... HOST[:PORT]:/remote/path`,
      );
    }
    const spec = parseRemoteSpec(positionals[positionals.length - 1]);
    if (spec === undefined) {
      throw new UsageError(
        `Unexpected argument "${
          positionals[positionals.length - 1]
        }": expected HOST[:PORT]:/remote/path last`,
      );
    }
    sources = positionals.slice(0, -1);
    const remote = sources.find((p) => parseRemoteSpec(p) !== undefined);
    if (remote !== undefined) {
      throw new UsageError(
        `Both "${remote}" and "${
          positionals[positionals.length - 1]
        }" are remote: hsync copies between this machine and one server`,
      );
    }
    remotePath = spec.path;
    host = host ?? spec.host;
    port = port ??
      (spec.port &&
        checkPort(`"${positionals[positionals.length - 1]}"`, spec.port));
  } else {
    if (v.input === undefined || v.input.length === 0) {
      throw new UsageError("Missing the local path: give --push -i LOCAL_PATH");
    }
    if (v.output === undefined) {
      throw new UsageError(
        "Missing the remote path: give --push -o REMOTE_PATH",
      );
    }
    sources = v.input;
    remotePath = v.output;
  }
  checkRemotePath(remotePath);
  for (const source of sources) {
    if (source === "") throw new UsageError("A local path is empty");
  }
  checkSourceNames(sources);
  const pullOnly: Array<[boolean | undefined, string]> = [
    [v.sync, "--sync"],
    [v["from-now"] || v["ignore-exists"], "--from-now"],
    [v["special-modes"], "--special-modes"],
    [v.force, "--force"],
    [v.public !== undefined, "--public"],
  ];
  for (const [given, flag] of pullOnly) {
    if (given) throw new UsageError(`${flag} does not go with a push`);
  }
  const { maxEntries, parallel } = counts(v);
  return {
    kind: "push",
    sources,
    remotePath,
    scpStyle,
    host,
    port,
    parallel,
    configFile: v.config,
    verify: v.verify ?? false,
    checksum: v.checksum ?? false,
    include: v.include ?? [],
    exclude: v.exclude ?? [],
    select: selectFlags(v),
    mirror: mirrorFlags(v),
    preserve: (v.preserve || v.archive) ?? false,
    copy: copyFlags(v),
    maxEntries,
    tls: v.tls ?? false,
    quiet: v.quiet ?? false,
    debug: v.debug ?? false,
    noWait: v["no-wait"] ?? false,
    json: v.json ?? false,
    bwlimit: bwlimitOf(v),
  };
}

/** Turns node:util's parse errors into one short line that names the flag. */
export function cleanParseError(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  const unknown = /Unknown option '([^']+)'/.exec(text);
  if (unknown) return `Unknown option "${unknown[1]}"`;
  const missing = /Option '(?:-\w, )?(--?[\w-]+)[^']*' argument missing/.exec(
    text,
  );
  if (missing) return `Option "${missing[1]}" needs a value`;
  const noArg = /Option '([^']+)' does not take an argument/.exec(text);
  if (noArg) return `Option "${noArg[1]}" does not take a value`;
  const first = text.split("\n")[0];
  return first.replace(/\. To specify a positional argument.*$/, "");
}

/** What a pull and a follow take from the command line alike. */
export function transferOptions(cmd: PullCommand): {
  remotePath: string;
  localPath: string;
  scpPlacement: boolean;
  parallelFiles: number;
  include: string[];
  exclude: string[];
  preserve: boolean;
  specialModes: boolean;
  maxEntries: number;
} & Partial<CopyFlags> {
  return {
    remotePath: cmd.remotePath,
    localPath: cmd.localPath,
    scpPlacement: cmd.scpStyle,
    parallelFiles: cmd.parallel,
    include: cmd.include,
    exclude: cmd.exclude,
    preserve: cmd.preserve,
    specialModes: cmd.specialModes,
    maxEntries: cmd.maxEntries,
    ...cmd.copy,
  };
}
