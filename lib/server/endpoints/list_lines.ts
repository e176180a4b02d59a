/** What one entry of a directory walked by `/v1/list` becomes: its line (an entry, or an omission and why) and the way down into it. */
import { LOCK_NAME } from "../../shared/own_names.ts";
import type { EntryType, ListEntry, ListLine } from "../../shared/wire.ts";
import type {
  DirectoryFailure,
  DirEntryInfo,
  PathGuard,
} from "../jail/path_guard.ts";
import { hasHoles, statEntry } from "./_checked.ts";

/** What a listing was asked to tell (its query). */
export interface ListOptions {
  /** `links=1`: a symlink that passes is listed as a symlink with its text, not followed. */
  links: boolean;
  /** `hardlinks=1`: a file with more than one name carries an `inode` tag. */
  hardLinks: boolean;
}

/** A directory found by the walk: where the kernel has it, where the listing shows it, and what it was. */
export interface WalkedDir {
  /** The kernel's path of the directory. */
  real: string;
  /** Its path relative to the listed directory (`""` for that one). */
  rel: string;
  /** `lstat` of the directory when it was found: it must still be that very directory when entered. */
  info: Deno.FileInfo;
  /** A directory above itself (a bind mount): entered, it is not read but reported. */
  loop?: boolean;
}

/** One entry described: its line (none when it is simply gone), and the directory to walk when it is one. */
export interface Described {
  line?: ListLine;
  descend?: WalkedDir;
}

/** The messages of omission lines: one sentence each, never where a link leads. */
export const OMISSION_MESSAGES = {
  withheld: "Withheld by the server's rules",
  link:
    "Symbolic link leads outside the served paths, to a refused entry or nowhere",
  loop: "Symbolic link loops back to a directory above it",
  name: "Name is not valid UTF-8: the server cannot open it",
  entry: "Entry cannot be looked at",
  mountLoop:
    "Directory is a directory above it, mounted again: not walked twice",
} as const;

/** The tag of one file (device and inode): the walk's loop check and `ListEntry.inode`. */
export function identity(info: Deno.FileInfo): string {
  return `${info.dev}:${info.ino ?? 0}`;
}

/** The listing path of `name` in the directory listed at `dirRel`. */
function relOf(dirRel: string, name: string): string {
  return dirRel === "" ? name : `${dirRel}/${name}`;
}

/** The kernel path of `name` in the directory at `dirReal`. */
function realOf(dirReal: string, name: string): string {
  return dirReal === "/" ? `/${name}` : `${dirReal}/${name}`;
}

/**
 * The omission line a walked directory gets when its names cannot be read,
 * before anything inside it (the listed directory itself is `.`). One that
 * vanished gets one too: its line was sent, and an empty directory would
 * stand for it in silence.
 */
export function unreadableLine(rel: string, why: DirectoryFailure): ListLine {
  const message = why === "denied"
    ? "Directory cannot be read: permission denied"
    : why === "changed"
    ? "Directory changed while being read: it was not listed"
    : why === "missing"
    ? "Directory vanished before it was read"
    : "Directory cannot be read";
  return { omitted: "unreadable", path: rel === "" ? "." : rel, message };
}

/**
 * Describes the entry `name` of the walked directory `dir`, whose `lstat`
 * (through the jail) is `info`. The rules come first, so a refused entry is
 * withheld without a word on what it is; a symlink is followed by the jail
 * (`PathGuard.followLink`) and listed only when it leads to an allowed entry
 * inside the served paths. `above` tells whether a directory is being walked
 * (an ancestor: a link to it is a loop). `"changed"` when `dir` is no longer
 * that very directory.
 */
export function describeEntry(
  guard: PathGuard,
  dir: WalkedDir,
  name: string,
  info: DirEntryInfo,
  options: ListOptions,
  above: (info: Deno.FileInfo) => boolean,
): Described | "changed" {
  const rel = relOf(dir.rel, name);
  // The lock of a pull writing here now: no client may copy it as data.
  if (name === LOCK_NAME) return {};
  if (!guard.allowsEntry(dir.real, name)) {
    return {
      line: { omitted: "withheld", message: OMISSION_MESSAGES.withheld },
    };
  }
  if (info === "missing") {
    // readDir spells bytes that are not UTF-8 as U+FFFD, and that name then
    // leads nowhere: the entry exists, but the runtime cannot open it.
    if (!name.includes("\uFFFD")) return {};
    return {
      line: { omitted: "name", path: rel, message: OMISSION_MESSAGES.name },
    };
  }
  if (info === "failed") {
    return {
      line: {
        omitted: "unreadable",
        path: rel,
        message: OMISSION_MESSAGES.entry,
      },
    };
  }
  if (info.isSymlink) {
    return describeLink(guard, dir, name, rel, options, above);
  }
  if (!info.isFile && !info.isDirectory) {
    return {
      line: {
        omitted: "special",
        path: rel,
        message: `Not a regular file: ${specialKind(info)}`,
      },
    };
  }
  const type = info.isFile ? "file" : "dir";
  const line = entryLine(rel, info, type, options);
  if (type === "file") return { line };
  const descend: WalkedDir = { real: realOf(dir.real, name), rel, info };
  // A directory that is its own ancestor (mounted again below itself): its
  // line, and when entered it says it is not walked twice.
  if (above(info)) descend.loop = true;
  return { line, descend };
}

function describeLink(
  guard: PathGuard,
  dir: WalkedDir,
  name: string,
  rel: string,
  options: ListOptions,
  above: (info: Deno.FileInfo) => boolean,
): Described | "changed" {
  const followed = guard.followLink(
    { realPath: dir.real, info: dir.info },
    name,
  );
  if (followed === undefined) return "changed";
  if (followed.kind === "missing") return {};
  if (followed.kind === "refused") {
    return {
      line: { omitted: "link", path: rel, message: OMISSION_MESSAGES.link },
    };
  }
  const { target } = followed;
  if (options.links) {
    // Listed as the link itself, never walked into: what it leads to is
    // listed (or not) where it is.
    const line: ListEntry = {
      path: rel,
      ...statEntry(followed.link, "symlink"),
      target: followed.text,
    };
    return { line };
  }
  if (target.type === "dir" && above(target.info)) {
    return {
      line: { omitted: "link", path: rel, message: OMISSION_MESSAGES.loop },
    };
  }
  const line = entryLine(rel, target.info, target.type, options);
  if (target.type === "file") return { line };
  return { line, descend: { real: target.realPath, rel, info: target.info } };
}

/** The line of a file or directory listed at `rel`, described by `info`. */
function entryLine(
  rel: string,
  info: Deno.FileInfo,
  type: EntryType,
  options: ListOptions,
): ListEntry {
  const line: ListEntry = { path: rel, ...statEntry(info, type) };
  if (type !== "file") return line;
  if (options.hardLinks && (info.nlink ?? 1) > 1) line.inode = identity(info);
  if (hasHoles(info)) line.sparse = true;
  return line;
}

function specialKind(info: Deno.FileInfo): string {
  if (info.isFifo) return "FIFO";
  if (info.isSocket) return "socket";
  if (info.isBlockDevice) return "block device";
  if (info.isCharDevice) return "character device";
  return "unknown kind";
}
