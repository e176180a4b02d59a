/**
 * The lock of a destination directory: one hsync at a time writes into it.
 * A `flock` on `DIR/.hsync-lock`, which the kernel releases when the process
 * ends however it ends, so no kill leaves a stale lock; the file names the
 * holder's pid for the one line a waiting run prints, and is removed by the
 * holder when it is done.
 */
import { join } from "node:path";
import { removeIfPresentSync } from "../shared/atomic_file.ts";
import {
  checkName,
  checkOpened,
  createChecked,
  fileIdOf,
  openChecked,
} from "../shared/checked_open.ts";
import { DestinationBusy, LocalPathError } from "../shared/errors.ts";
import { LOCK_NAME } from "../shared/own_names.ts";
import { sleep } from "../shared/sleep.ts";

/** How often a waiting run tries the lock again (polled, so an abort stops the wait at once). */
const RETRY_MS = 200;

/** Options of {@linkcode lockDestination}. */
export interface LockOptions {
  /** False: throw {@linkcode DestinationBusy} instead of waiting. */
  wait: boolean;
  /** Called once when the lock is held by another process and this run waits. */
  onWait?: (dir: string, pid: number | undefined) => void;
  /** Stops the wait (the lock is then not taken: the abort's reason is thrown). */
  signal?: AbortSignal;
}

/** A held destination lock; `release` removes the lock file and unlocks. */
export interface DestinationLock {
  release(): void;
}

/**
 * Takes the lock of `dir` (which must exist), waiting for another holder or
 * not as `options` say. The lock file is never opened through a symlink (it
 * is refused with {@linkcode LocalPathError}). A holder removes the name
 * before it unlocks, so a run that got the lock of a removed file sees the
 * name gone or new and tries again.
 */
export async function lockDestination(
  dir: string,
  options: LockOptions,
): Promise<DestinationLock> {
  const path = join(dir, LOCK_NAME);
  let told = false;
  while (true) {
    options.signal?.throwIfAborted();
    const file = openLockFile(path);
    if (file === undefined) continue;
    // No hsync can write there either: each file then fails on its own, in one line.
    if (file === "unwritable") return { release() {} };
    let held = false;
    try {
      if (!await file.tryLock(true)) {
        const pid = holderPid(file);
        if (!options.wait) throw new DestinationBusy(dir, pid);
        if (!told) options.onWait?.(dir, pid);
        told = true;
        await sleep(RETRY_MS, options.signal);
        continue;
      }
      try {
        checkOpened(file, path);
      } catch {
        // The previous holder removed this file: its name is free, or another's now.
        continue;
      }
      file.truncateSync(0);
      file.writeSync(new TextEncoder().encode(`${Deno.pid}\n`));
      held = true;
      const id = fileIdOf(file.statSync());
      return {
        release() {
          try {
            checkName(path, id);
            removeIfPresentSync(path);
          } catch {
            // Not ours any more (or gone): the name is left alone.
          }
          file.close();
        },
      };
    } finally {
      if (!held) file.close();
    }
  }
}

/**
 * The lock file at `path`, created when absent; undefined when it vanished
 * in between (try again); `"unwritable"` when the directory refuses a new
 * file (read-only, no permission).
 */
function openLockFile(path: string): Deno.FsFile | undefined | "unwritable" {
  try {
    return createChecked(path);
  } catch (error) {
    // A failed open (not a check of what was opened) carries its cause.
    if (error instanceof LocalPathError && error.cause !== undefined) {
      return "unwritable";
    }
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
  }
  try {
    return openChecked(path, { write: true });
  } catch (error) {
    if (error instanceof LocalPathError && error.cause !== undefined) {
      return error.cause instanceof Deno.errors.NotFound
        ? undefined
        : "unwritable";
    }
    throw error;
  }
}

/** The pid the holder wrote, when there is one. */
function holderPid(file: Deno.FsFile): number | undefined {
  try {
    const buffer = new Uint8Array(32);
    file.seekSync(0, Deno.SeekMode.Start);
    const n = file.readSync(buffer) ?? 0;
    const pid = Number(new TextDecoder().decode(buffer.subarray(0, n)).trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}
