/**
 * hsync's flags: the table node:util parses them by, and the value of each
 * checked and turned into the setting it stands for; one line naming the
 * flag and the value (`UsageError`) when it is not one.
 */
import type { parseArgs } from "node:util";
import { UsageError } from "../shared/errors.ts";
import { badFlagValue, checkHost, checkPort } from "../shared/flag_values.ts";
import { DEFAULT_MAX_ENTRIES } from "./listing.ts";
import { parseRate } from "./bandwidth.ts";

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

/** Every option of hsync, for node:util's `parseArgs`. */
export const OPTIONS = {
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

/** The values `parseArgs` gives for {@linkcode OPTIONS}. */
export type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS }>>[
  "values"
];

/** `--include-regex` and the others, each expression compiled once to check it. */
export function selectFlags(v: Values): SelectFlags {
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
export function mirrorFlags(v: Values): MirrorFlags {
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

/** `-a`, `-l`, `-H`, `-S` and `--unsafe-links`, checked. */
export function copyFlags(v: Values): CopyFlags {
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
export function checkRemotePath(remotePath: string): void {
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
export function flagHost(v: Values): string | undefined {
  const text = v["host-ip"];
  return text === undefined ? undefined : checkHost("-host", text);
}

/** `-p`, checked. */
export function flagPort(v: Values): string | undefined {
  return v.port === undefined ? undefined : checkPort("-p", v.port);
}

/** `--bwlimit RATE`, checked. */
export function bwlimitOf(v: Values): number | undefined {
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
export function counts(v: Values): { maxEntries: number; parallel: number } {
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
