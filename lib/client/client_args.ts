/** Parses the hsync command line (old single-dash flags included) into a command, without touching Deno.args. */
import { parseArgs } from "node:util";
import { UsageError } from "../shared/errors.ts";
import { hasGlob } from "../shared/wire.ts";
import {
  checkPort,
  joinNegativeValues,
  renameFlags,
} from "../shared/flag_values.ts";
import {
  bwlimitOf,
  checkRemotePath,
  type CopyFlags,
  copyFlags,
  counts,
  flagHost,
  flagPort,
  type MirrorFlags,
  mirrorFlags,
  OPTIONS,
  type SelectFlags,
  selectFlags,
  type Values,
} from "./client_flags.ts";

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
  return renameFlags(args, { "-host": "--host-ip", "--num": "--parallel" });
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

/** Whether the remote paths make a run of several sources (more than one, or a glob): the destination is then a directory they go inside. */
export function isMultiSource(remotePaths: readonly string[]): boolean {
  return remotePaths.length > 1 || remotePaths.some(hasGlob);
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
