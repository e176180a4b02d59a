/**
 * The token of a push's lease, chosen by the client and kept on disk while
 * the push runs (`$HSYNC_DIR/leases/`), so that a push killed, or stopped
 * before its lease's answer came, leaves its token behind: the same push run
 * again takes the lease back at once (hsyncd renews a lease for its token)
 * instead of waiting for it to lapse (30 s). A record is locked (`flock`)
 * while its push runs, and the kernel unlocks it however the process ends;
 * one found locked is another push of the same destination running now,
 * whose lease is left to it.
 *
 * Records left behind are pruned by the next push that ends (whatever its
 * destination) once they are a day old: a token is worth keeping only while
 * its lease may still be held (30 s unless renewed), and a push that failed
 * before its lease's answer (an unreachable server) left one each time.
 *
 * Best effort throughout: without a usable `$HSYNC_DIR` a push still gets a
 * token of its own, only not kept.
 */
import { join } from "node:path";
import { removeIfPresentSync } from "../shared/atomic_file.ts";
import {
  checkName,
  createChecked,
  fileIdOf,
  openChecked,
} from "../shared/checked_open.ts";
import { LEASE_TOKEN, newLeaseToken } from "../shared/lease_token.ts";
import { writeAllSync } from "../shared/write_all.ts";

/** Most bytes of a record read back. */
const RECORD_MAX_BYTES = 8192;
/** Age (of its last write) past which an unlocked record is pruned. */
export const STALE_RECORD_MS = 24 * 60 * 60 * 1000;
/** Most records one push prunes (the rest wait for the next). */
const PRUNED_AT_MOST = 100;

/** The token a push asks its lease with. */
export interface LeaseRecord {
  readonly token: string;
  /** Whether the token was left by an earlier push of the destination that did not give its lease back. */
  readonly reclaimed: boolean;
  /**
   * The push is done with the record: `released` (the server answered the
   * lease's release, or nothing was held) removes it, else it is kept for
   * the next push of the destination. Unlocks it; once.
   */
  end(released: boolean): void;
}

/** The record of the lease of `path` on `host` under `dir` (`$HSYNC_DIR/leases`; none when undefined). */
export function leaseRecord(
  dir: string | undefined,
  host: string,
  path: string,
): LeaseRecord {
  const fresh: LeaseRecord = {
    token: newLeaseToken(),
    reclaimed: false,
    end() {},
  };
  if (dir === undefined) return fresh;
  const dest = `${host}:${path}`;
  const name = join(dir, `${nameHash(dest)}.lease`);
  let file: Deno.FsFile;
  try {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    file = openRecord(name);
  } catch {
    return fresh;
  }
  try {
    if (!file.tryLockSync(true)) {
      // Another push of this destination runs now and keeps its record.
      file.close();
      return fresh;
    }
    const left = tokenIn(file, dest);
    const token = left ?? fresh.token;
    file.truncateSync(0);
    file.seekSync(0, Deno.SeekMode.Start);
    writeAllSync(
      file,
      new TextEncoder().encode(JSON.stringify({ dest, token }) + "\n"),
    );
    const id = fileIdOf(file.statSync());
    let ended = false;
    return {
      token,
      reclaimed: left !== undefined,
      end(released: boolean) {
        if (ended) return;
        ended = true;
        try {
          if (released) {
            checkName(name, id);
            removeIfPresentSync(name);
          }
        } catch {
          // Not ours any more, or gone: left alone.
        } finally {
          file.close();
        }
        pruneStale(dir, name);
      },
    };
  } catch {
    file.close();
    return fresh;
  }
}

/**
 * Removes records of `dir` (but `own`) last written {@linkcode STALE_RECORD_MS}
 * ago or more, each only while this process holds its lock: one a push
 * runs with now is left to it. Never follows a link; errors skip a record.
 */
function pruneStale(dir: string, own: string): void {
  const now = Date.now();
  let pruned = 0;
  let entries: Deno.DirEntry[];
  try {
    entries = Array.from(Deno.readDirSync(dir));
  } catch {
    return;
  }
  for (const entry of entries) {
    if (pruned >= PRUNED_AT_MOST) return;
    if (!entry.isFile || !entry.name.endsWith(".lease")) continue;
    const path = join(dir, entry.name);
    if (path === own) continue;
    try {
      const info = Deno.lstatSync(path);
      const written = info.mtime?.getTime() ?? now;
      if (!info.isFile || now - written < STALE_RECORD_MS) continue;
      // Read-only: the lock is all it is opened for.
      using file = openChecked(path, { expected: fileIdOf(info) });
      if (!file.tryLockSync(true)) continue;
      checkName(path, fileIdOf(info));
      removeIfPresentSync(path);
      pruned++;
    } catch {
      // Gone, replaced or unreadable meanwhile: left to the next push.
    }
  }
}

/** The record at `name`, made when absent; never through a symbolic link. */
function openRecord(name: string): Deno.FsFile {
  try {
    return createChecked(name);
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
  }
  return openChecked(name, { write: true });
}

/** The token a record for `dest` holds, when it holds a well-formed one. */
function tokenIn(file: Deno.FsFile, dest: string): string | undefined {
  const buffer = new Uint8Array(RECORD_MAX_BYTES);
  let n = 0;
  while (n < buffer.length) {
    const got = file.readSync(buffer.subarray(n));
    if (got === null || got === 0) break;
    n += got;
  }
  try {
    const record = JSON.parse(new TextDecoder().decode(buffer.subarray(0, n)));
    // A name shared by two destinations (a hash collision) is not reclaimed.
    if (record?.dest === dest && LEASE_TOKEN.test(record?.token)) {
      return record.token;
    }
  } catch {
    // Empty (a push killed while writing it) or not a record: a new token.
  }
  return undefined;
}

/** A file name for `dest`: its 64-bit FNV-1a hash in hex (any length of path fits). */
function nameHash(dest: string): string {
  let hash = 0xcbf29ce484222325n;
  for (const byte of new TextEncoder().encode(dest)) {
    hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return hash.toString(16).padStart(16, "0");
}
