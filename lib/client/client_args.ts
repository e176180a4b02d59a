/** Parses the hsync command line (old single-dash flags included) into a command, without touching Deno.args. */
import { parseArgs } from "node:util";
import { UsageError } from "../shared/errors.ts";
import { DEFAULT_MAX_ENTRIES } from "./listing.ts";

/** Usage text of `hsync --help`. */
export const CLIENT_USAGE = `Usage:
  hsync -i REMOTE_PATH [-o LOCAL_PATH] [-host IP] [-p PORT] [options]
  hsync HOST[:PORT]:/remote/path... LOCAL_PATH [options]
  hsync LOCAL_PATH... HOST[:PORT]:/remote/path [options]
  hsync --push -i LOCAL_PATH -o REMOTE_PATH [-host IP] [-p PORT] [options]
  hsync echo-config [-c INI]
  hsync keygen [--force] [-c INI]

Pull a file or a directory tree from hsyncd, or push local files and trees to
it, fast, resumable and verified. An interrupted pull (Ctrl-C, a kill, a crash,
a broken network) keeps its data in NAME.hsync-part with a journal beside it
(NAME.hsync-journal); running the same command again fetches only the missing
bytes, or starts a file over when it changed on the server. A push is resumed
the same way from what the server holds. A file gets its final name only when
complete.

Options:
  -i, --input PATH        remote path (absolute, on the server; repeatable:
                          each goes inside the destination under its own
                          name); *, ?, [...] and ** in it are expanded on
                          the server
  -o, --output PATH       local destination (default: the current directory):
                          a path ending in / gets the remote entry inside it;
                          a remote file also goes inside an existing
                          directory; a remote directory is otherwise copied
                          to PATH itself (so reruns sync the same copy)
  -host, --host-ip IP     server address (default from hsync.ini, 127.0.0.1)
  -p, --port PORT         server port (default 10808)
  -n, --parallel N        files transferred in parallel (default 8; not
                          rsync's --dry-run)
  -c, --config INI        configuration file (see hsync echo-config)
      --sync              pull, then follow remote changes ([hsync] section)
      --from-now          with --sync: skip existing content, follow new data
                          (also accepted as --ignore-exists)
      --verify            after each file, compare its SHA-256 with the
                          server's; parts that differ are fetched once more,
                          then the file fails (it never gets its final name)
      --checksum          decide "identical, skip" by SHA-256 from the server
                          instead of size + modification time
      --include GLOB      transfer only matching relative paths (repeatable);
                          a pattern without / matches a name at any depth,
                          a leading / anchors it at the transfer root, a
                          trailing / matches directories only, ** crosses
                          directories; a match on a directory counts for
                          everything below it
      --exclude GLOB      skip matching relative paths (repeatable)
      --include-regex RE  like --include with a JavaScript regular expression
                          searched in the relative path (repeatable)
      --exclude-regex RE  like --exclude with a regular expression
      --include-from FILE --include for each line of FILE (- for stdin)
      --exclude-from FILE --exclude for each line of FILE
      --files-from FILE   only the relative paths listed in FILE, one per
                          line (- for stdin); a directory brings all below it
      --delete            after a transfer without failures, delete what the
                          destination has and the source does not (only
                          inside the destination, never through a link,
                          never what --include/--exclude leave out; on a
                          push, on the server, with the same rights as a
                          write)
      --max-delete N      with --delete: more than N deletions means none,
                          one line and exit code 2
      --dry-run           list, compare and print what would be transferred,
                          skipped and deleted; write nothing; exit 0 (-n
                          keeps its old meaning: files in parallel)
  -P, --preserve          set permission bits exactly as the source has them
                          (without -P: the source's bits masked by the
                          receiving side's umask, as cp and scp do; mtime is
                          always kept); setuid, setgid, sticky and
                          write-for-others bits sent by the server are
                          dropped, and the destination directory itself is
                          never changed. (-P is not rsync's --partial: hsync
                          always keeps partial files.)
      --special-modes     with -P: apply those bits too (trust the server)
  -a, --archive           -P -l -H -S: a faithful copy of the tree
  -l, --links             copy symbolic links as links (without it a link is
                          followed when it leads inside the served paths)
  -H, --hard-links        names of one file stay names of one file
  -S, --sparse            holes stay holes: long zero runs are neither sent
                          nor written
      --unsafe-links      with -l: also create links whose target is absolute
                          or leads outside the copy (refused by default, each
                          named; a push's server refuses them always)
      --push              push: -i names the local path, -o the remote one
                          (the side written HOST:/path is the remote one);
                          a remote path ending in /, an existing remote
                          directory or several local paths get each local
                          path inside it under its own name
      --max-entries N     stop with exit code 3 when a listing holds more
                          than N entries (default 10000000)
      --tls               use HTTPS (or Tls = yes in hsync.ini)
      --quiet             no progress output (the summary line still prints)
      --debug             stack traces and request details on errors
  -h, --help              this text
      --version           print the version

Redirects are never followed: a server answering one stops the run (exit 3).

Exit codes: 0 success, 1 usage or configuration error, 2 some entries failed
or were not transferred (each named, or counted when the server's rules
withhold them; the rest completed), 3 the server could not be reached, refused, redirected
or sent more than --max-entries entries.`;

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
  | { kind: "keygen"; force: boolean; configFile?: string }
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
  debug: { type: "boolean" },
  force: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean" },
} as const;

/** Rewrites the old single-dash long flag `-host` (and `-host=IP`) to `--host-ip`. */
export function normalizeOldFlags(args: string[]): string[] {
  return args.map((a) => {
    if (a === "-host") return "--host-ip";
    if (a.startsWith("-host=")) return `--host-ip=${a.slice(6)}`;
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
      args: normalizeOldFlags(argv),
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
      ? { kind: "keygen", force: v.force ?? false, configFile: v.config }
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
  let host = v["host-ip"];
  let port = v.port;
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
    port = port ?? specs[0].port;
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
    throw new UsageError(
      `Invalid value "${text}" for --max-delete: expected a whole number of at least 0`,
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

/** `--max-entries` and `-n`, checked. */
function counts(v: Values): { maxEntries: number; parallel: number } {
  const maxEntries = v["max-entries"] === undefined
    ? DEFAULT_MAX_ENTRIES
    : Number(v["max-entries"]);
  if (
    !/^\d+$/.test(v["max-entries"] ?? "1") || maxEntries < 1 ||
    !Number.isSafeInteger(maxEntries)
  ) {
    throw new UsageError(
      `Invalid value "${
        v["max-entries"]
      }" for --max-entries: expected a whole number of at least 1`,
    );
  }
  const parallel = v.parallel === undefined ? 8 : Number(v.parallel);
  if (
    !/^\d+$/.test(v.parallel ?? "8") || parallel < 1 || parallel > 1024
  ) {
    throw new UsageError(
      `Invalid value "${v.parallel}" for -n: expected a whole number from 1 to 1024`,
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
  let host = v["host-ip"];
  let port = v.port;
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
    port = port ?? spec.port;
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
