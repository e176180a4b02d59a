/** The local path a remote root is copied to (path rules only: no write, nothing loaded that writes, so a pull can ask its first requests before its engine is loaded). */
import { join, posix } from "node:path";

/**
 * The local path a remote root is copied to. A file goes into an existing
 * directory (cp, scp); anything goes into a path ending in `/`. Otherwise a
 * directory is copied to that path itself, so the same command run twice
 * syncs the same copy instead of nesting a second one, unless `scp` asks for
 * scp's rule for directories too.
 */
export function destinationOf(
  localPath: string,
  remotePath: string,
  options: { remoteIsDir: boolean; scp?: boolean },
): string {
  const base = posix.basename(remotePath);
  const into = localPath.endsWith("/") ||
    ((!options.remoteIsDir || options.scp === true) && isDirectory(localPath));
  return into && base !== "" ? join(localPath, base) : localPath;
}

/** Whether `path` is a directory now (following links); false when it cannot be read. */
export function isDirectory(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}
