/** What the endpoints do with paths the jail checked: their wire form, that one is a file, a path relative to one, a directory made when missing, and one entry's refusal among many. */
import { HttpError } from "../../shared/errors.ts";
import { etagFor, modeBits, mtimeMs } from "../../shared/file_identity.ts";
import {
  relativeComponents,
  RelativePathError,
} from "../../shared/relative_path.ts";
import type { EntryType, StatEntry } from "../../shared/wire.ts";
import type { CheckedPath } from "../jail/path_guard.ts";
import type { WriteJail } from "../jail/write_jail_api.ts";
import { errorStatus } from "../error_status.ts";

/** The wire form of an entry (`/v1/stat`, a listing line). */
export function statEntry(info: Deno.FileInfo, type: EntryType): StatEntry {
  return {
    type,
    size: type === "dir" ? 0 : info.size,
    mtime: mtimeMs(info),
    mode: modeBits(info),
    etag: etagFor(info),
  };
}

/** A file with fewer 512-byte blocks on disk than its size needs: it has holes (`sparse` of a stat or a listing line). */
export function hasHoles(info: Deno.FileInfo): boolean {
  return info.size > 0 && info.blocks !== null && info.blocks * 512 < info.size;
}

/** 400 `not_a_file` unless the checked path is a regular file. */
export function requireFile(checked: CheckedPath): void {
  if (checked.type !== "file") {
    throw new HttpError(
      400,
      "not_a_file",
      `Cannot read ${JSON.stringify(checked.path)}: it is a directory`,
    );
  }
}

/**
 * The components of a path relative to a root (a bundle's, or a listing's
 * `after`), by the one rule of shared/relative_path.ts; a refusal is a 400
 * (`code`) naming `action`.
 */
export function checkRelative(
  rel: string,
  action = "bundle",
  code = "bad_path",
): string[] {
  try {
    return relativeComponents(rel);
  } catch (error) {
    if (!(error instanceof RelativePathError)) throw error;
    throw new HttpError(
      400,
      code,
      `Cannot ${action} ${JSON.stringify(rel)}: ${error.why}`,
    );
  }
}

/**
 * `attempt()`, and with `parents` once more after the directory of
 * `requestPath` was made through the jail (as `POST /v1/mkdir` makes it,
 * level by level) when it found no such directory (404): a push's file in a
 * new tree needs no `mkdir` before it.
 */
export function withParents<T>(
  jail: WriteJail,
  parents: boolean,
  requestPath: string,
  attempt: () => T,
): T {
  try {
    return attempt();
  } catch (error) {
    if (!parents || !(error instanceof HttpError) || error.status !== 404) {
      throw error;
    }
  }
  jail.makeDirs(requestPath.slice(0, requestPath.lastIndexOf("/")));
  return attempt();
}

/**
 * One entry's refusal in an answer about many (a bundle's file, a
 * directory of a `/v1/mkdir` array): its code and message. Anything that
 * is not a refusal (it would be a 500) is thrown.
 */
export function refusalOf(
  path: string,
  error: unknown,
): { path: string; error: string; message: string } {
  const { status, body } = errorStatus(error);
  if (status === 500) throw error;
  return { path, error: body.error, message: body.message };
}
