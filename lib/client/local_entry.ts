/**
 * What one entry of a pushed local tree is, decided once: a directory or a
 * regular file to send (a symbolic link followed to one, without `-l`), a
 * symbolic link to make as a link (`-l`), or something that cannot be sent
 * and is named with why (never left out in silence).
 */
import { linkStaysInside } from "../shared/link_target.ts";
import { reason } from "../shared/errors.ts";
import { mtimeMs } from "../shared/file_identity.ts";

/** What a local entry is for a push. */
export type LocalEntry =
  /** A directory or regular file: `path` is where it is read (a followed link resolved), `info` its `stat`. */
  | { kind: "dir" | "file"; path: string; info: Deno.FileInfo }
  /** `-l`: a symbolic link to make with this text; `mtime` its own (ms). */
  | { kind: "symlink"; target: string; mtime: number }
  /** Not sent, and not a failure of the transfer: the reason, for the user. */
  | { kind: "omit"; message: string }
  /** Cannot be read (a failure). */
  | { kind: "fail"; message: string };

/** How entries are taken. */
export interface LocalEntryOptions {
  /** `-l`: symbolic links are links; otherwise they are followed. */
  links: boolean;
  /** With `links`: links leading outside the copy are made too. */
  unsafeLinks: boolean;
  /** `dev:ino` of the directories being walked into: a link to one of them is a loop. */
  ancestors: ReadonlySet<string>;
  /** The entry's `lstat` when it was read ahead. */
  known?: Deno.FileInfo;
}

/** The `dev:ino` key of a file (hard links and loops are told by it). */
export function inodeKey(info: Deno.FileInfo): string {
  return `${info.dev}:${info.ino}`;
}

/**
 * Classifies the entry `name` at `local`, `rel` being its path inside the
 * pushed tree (what a link's text must stay inside).
 */
export function localEntry(
  local: string,
  name: string,
  rel: string,
  options: LocalEntryOptions,
): LocalEntry {
  let info: Deno.FileInfo;
  try {
    info = options.known ?? Deno.lstatSync(local);
  } catch (error) {
    // readDir gives U+FFFD for bytes that are not UTF-8: no API opens that name.
    if (error instanceof Deno.errors.NotFound && name.includes("\uFFFD")) {
      return {
        kind: "omit",
        message: "Its name is not valid UTF-8: it cannot be opened",
      };
    }
    return {
      kind: "fail",
      message: `Cannot read ${JSON.stringify(local)}: ${reason(error)}`,
    };
  }
  let path = local;
  if (info.isSymlink) {
    if (options.links) {
      return linkEntry(local, rel, options.unsafeLinks, mtimeMs(info));
    }
    try {
      path = Deno.realPathSync(local);
      info = Deno.statSync(path);
    } catch (error) {
      return { kind: "omit", message: unfollowable(error) };
    }
  }
  if (info.isDirectory) {
    if (options.ancestors.has(inodeKey(info))) {
      return {
        kind: "omit",
        message: "It is a symbolic link that leads round in a loop",
      };
    }
    return { kind: "dir", path, info };
  }
  if (info.isFile) return { kind: "file", path, info };
  return {
    kind: "omit",
    message: `It is ${
      kindOf(info)
    }: only regular files, directories and symbolic links are pushed`,
  };
}

/** `-l`: a link's text, refused when it leads outside the copy (unless `unsafe`). */
function linkEntry(
  local: string,
  rel: string,
  unsafe: boolean,
  mtime: number,
): LocalEntry {
  let target: string;
  try {
    target = Deno.readLinkSync(local);
  } catch (error) {
    return {
      kind: "omit",
      message: `It is a symbolic link that cannot be read: ${reason(error)}`,
    };
  }
  if (!unsafe && !linkStaysInside(rel, target)) {
    return {
      kind: "omit",
      message: `It is a symbolic link to ${
        JSON.stringify(target)
      }, which leads outside the copy (--unsafe-links makes it anyway)`,
    };
  }
  return { kind: "symlink", target, mtime };
}

function unfollowable(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) {
    return "It is a symbolic link that leads nowhere";
  }
  if (error instanceof Deno.errors.FilesystemLoop) {
    return "It is a symbolic link that leads round in a loop";
  }
  return `It is a symbolic link that cannot be followed: ${reason(error)}`;
}

function kindOf(info: Deno.FileInfo): string {
  if (info.isFifo) return "a FIFO";
  if (info.isSocket) return "a socket";
  if (info.isCharDevice || info.isBlockDevice) return "a device";
  return "a special file";
}
