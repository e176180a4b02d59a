/**
 * The names hsync keeps for itself beside what it receives (a part file, its
 * journal, a destination's lock), as far as they need no hash: loaded by
 * anything that only looks at names (lib/shared/part_file.ts makes the files).
 */
import { MAX_NAME_BYTES, utf8Longer } from "./name_bytes.ts";

/** Suffix of partial data files. */
export const PART_SUFFIX = ".hsync-part";
/** Suffix of journal files. */
export const JOURNAL_SUFFIX = ".hsync-journal";

/**
 * Name of the lock file a pull keeps in its destination directory while it
 * writes there (lib/client/dest_lock.ts): never listed, pushed, deleted or
 * written as a transferred entry.
 */
export const LOCK_NAME = ".hsync-lock";

/** True for the names hsync keeps for itself: partial data, journals and the destination lock. */
export function isHsyncOwnName(name: string): boolean {
  return name.endsWith(PART_SUFFIX) || name.endsWith(JOURNAL_SUFFIX) ||
    name === LOCK_NAME;
}

/**
 * `name` + `suffix` when that fits in a file name (255 bytes): hsync's own
 * name (`suffix`: part, journal) for the entry `name`; undefined when that
 * name is shortened with a hash (`ownNameFor` in lib/shared/part_file.ts).
 */
export function unshortenedOwnName(
  name: string,
  suffix: string,
): string | undefined {
  const whole = name + suffix;
  return utf8Longer(whole, MAX_NAME_BYTES) ? undefined : whole;
}

/** `path` cut after its last `/`: the directory part (with the `/`, or empty) and the last name. */
export function splitLastName(path: string): [string, string] {
  const slash = path.lastIndexOf("/");
  return [path.slice(0, slash + 1), path.slice(slash + 1)];
}
