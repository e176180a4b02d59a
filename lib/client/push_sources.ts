/**
 * The local sources of a push and where each goes on the server: every
 * path checked before anything is sent, and scp's rule for going inside a
 * remote directory or becoming the path itself.
 */
import { posix, resolve } from "node:path";
import { reason } from "../shared/errors.ts";

/** A local path that cannot be pushed (exit code 1, nothing sent). */
export class SourceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SourceError";
  }
}

/** One local path given on the command line, checked. */
export interface PushSource {
  /** As given. */
  given: string;
  /** Where it is read from (symbolic links of the path itself resolved, as scp does). */
  path: string;
  /** The name it gets inside a remote directory: the last component as given. */
  name: string;
  isDir: boolean;
}

/**
 * Checks every local path before anything is sent: it exists, is a regular
 * file or a directory, and (with several) no two share a name. Throws
 * {@linkcode SourceError} naming the path and the cause.
 */
export function checkSources(given: readonly string[]): PushSource[] {
  const sources: PushSource[] = [];
  const seen = new Map<string, string>();
  for (const path of given) {
    const q = JSON.stringify(path);
    let info: Deno.FileInfo;
    try {
      info = Deno.statSync(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new SourceError(`Local path ${q} does not exist`);
      }
      throw new SourceError(`Cannot read local path ${q}: ${reason(error)}`);
    }
    if (!info.isFile && !info.isDirectory) {
      throw new SourceError(
        `Local path ${q} is not a regular file or directory`,
      );
    }
    const name = posix.basename(resolve(path));
    const other = seen.get(name);
    if (other !== undefined) {
      throw new SourceError(
        `Local paths ${JSON.stringify(other)} and ${q} have the same name ${
          JSON.stringify(name)
        }: they would go to the same remote path`,
      );
    }
    seen.set(name, path);
    let real: string;
    try {
      real = Deno.realPathSync(path);
    } catch (error) {
      throw new SourceError(`Cannot read local path ${q}: ${reason(error)}`);
    }
    sources.push({ given: path, path: real, name, isDir: info.isDirectory });
  }
  return sources;
}

/** An absolute remote path without a trailing slash (`/` stays `/`). */
export function normalizeRemote(path: string): string {
  const p = posix.normalize(path);
  return p.length > 1 && p.endsWith("/") ? p.slice(0, -1) : p;
}

/**
 * Whether sources go inside `remotePath` under their own names (scp's
 * rule): it ends in `/`, several sources are pushed, or it is an existing
 * directory and the source is a file or the scp-style form was used. With
 * `--push -o`, a directory is otherwise copied to the path itself (merged
 * into), so the same command run twice syncs the same copy.
 */
export function goesInside(
  remotePath: string,
  options: {
    several: boolean;
    remoteIsDir: boolean;
    sourceIsDir: boolean;
    scp: boolean;
  },
): boolean {
  return remotePath.endsWith("/") || options.several ||
    (options.remoteIsDir && (!options.sourceIsDir || options.scp));
}
