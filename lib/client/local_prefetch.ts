/**
 * The local side of a push, read ahead while its first round trips are out
 * (the lease, the destination's stat, a listing): each entry of the trees
 * `lstat`ed and their small files read whole, in the walk's own order, up
 * to a budget. When the answers come, the walk takes what it needs from
 * here instead of the disk and Deno's permission checks, and the first
 * bundles go at once (a push of 2,000 files of 4 KiB spent 170 ms reading
 * them after a lease that had taken 120 ms at a 50 ms round trip).
 *
 * Only what the walk would do anyway is done: nothing is followed (a
 * symbolic link is left to the walk) and nothing but a regular file is
 * opened ({@linkcode readSmallLocal}). Each entry is taken once, and only by
 * the same inode; a file read here is sent as it was when read, as if the
 * walk had come by then.
 */
import { posix } from "node:path";
import { Breather } from "../shared/breather.ts";
import type { FileId } from "../shared/checked_open.ts";
import { sleep } from "../shared/sleep.ts";
import type { PathFilter } from "./filters.ts";
import { readSmallLocal, type SmallRead, walkedOf } from "./local_read.ts";
import { SMALL_FILE_BYTES } from "./plan.ts";
import type { PushSource } from "./push_sources.ts";

/** Most bytes of small files held read ahead. */
export const PREFETCH_BYTES = 16 * 1024 * 1024;
/** Most entries `lstat`ed ahead. */
export const PREFETCH_ENTRIES = 50_000;
/**
 * Longest stretch (ms) of reading ahead without a turn of the event loop,
 * so that the requests it runs beside are sent and answered at once. A
 * turn (lib/shared/breather.ts) takes 10-17 us; an asynchronous `lstat`,
 * the turn before, took about 0.2 ms and did not always let the network be
 * polled; `setImmediate` takes microseconds but Deno polls the network only
 * every hundred or so of them (a fetch took 120 turns to complete).
 */
const TURN_MS = 1;

/** What to read ahead. */
export interface PrefetchOptions {
  /** Files of at most this many bytes are read whole (the bundles' size). */
  smallBytes: number;
  /** Whether small files are read at all (not when they go in ranges, as with `--verify`). */
  readFiles: boolean;
  /** Whether the walk takes the entry at `parts` (relative to its tree); a directory it leaves out is not gone into. */
  wanted(parts: readonly string[], isDir: boolean): boolean;
  /** Budgets (tests make them small). */
  maxBytes?: number;
  maxEntries?: number;
}

/** A small file read ahead: its bytes and its `fstat` after they were read. */
export type ReadAhead = Extract<SmallRead, { kind: "read" }>;

/** Entries and small files of local trees read ahead of the walk. */
export class LocalPrefetch {
  readonly #o: PrefetchOptions;
  readonly #infos = new Map<string, Deno.FileInfo>();
  readonly #files = new Map<string, ReadAhead>();
  #bytes = 0;
  #entries = 0;
  #stopped = false;
  readonly #breather = new Breather(TURN_MS);

  constructor(options: PrefetchOptions) {
    this.#o = options;
  }

  /**
   * Reads ahead in the trees at `roots`, one after the other, until done,
   * out of budget, stopped or aborted; begins after a turn of the event loop
   * (the requests the caller starts meanwhile go first). Never throws.
   */
  async run(roots: readonly string[], signal?: AbortSignal): Promise<void> {
    const stop = () => this.stop();
    signal?.addEventListener("abort", stop);
    try {
      await sleep(0);
      for (const root of roots) {
        if (signal?.aborted || !await this.#walk(root)) break;
      }
    } finally {
      signal?.removeEventListener("abort", stop);
      this.#breather.close();
    }
  }

  /** Runs `work` while the local trees among `sources` are read ahead, and stops reading (waiting for it) when `work` ends, whichever way. */
  async during<T>(
    sources: readonly PushSource[],
    signal: AbortSignal | undefined,
    work: () => Promise<T>,
  ): Promise<T> {
    const trees = sources.filter((s) => s.isDir).map((s) => s.path);
    const reading = this.run(trees, signal);
    try {
      return await work();
    } finally {
      this.stop();
      await reading;
    }
  }

  /** No more reading ahead (the walk starts): what was read stays to be taken. */
  stop(): void {
    this.#stopped = true;
  }

  /** The `lstat` of `path` read ahead (once), if any. */
  lstat(path: string): Deno.FileInfo | undefined {
    const info = this.#infos.get(path);
    if (info !== undefined) this.#infos.delete(path);
    return info;
  }

  /** The bytes of the file `path` read ahead (once), if it was the inode `id`. */
  file(path: string, id: FileId): ReadAhead | undefined {
    const got = this.#files.get(path);
    if (got === undefined) return undefined;
    this.#files.delete(path);
    this.#bytes -= got.data.length;
    return got.info.dev === id.dev && got.info.ino === id.ino ? got : undefined;
  }

  /** False once reading ahead must end (out of budget, or stopped). */
  async #walk(root: string): Promise<boolean> {
    const o = this.#o;
    const maxEntries = o.maxEntries ?? PREFETCH_ENTRIES;
    const maxBytes = o.maxBytes ?? PREFETCH_BYTES;
    // Depth first in the walk's order: a directory's entries right after it.
    const stack = [{
      dir: root,
      parts: [] as string[],
      names: namesIn(root),
      next: 0,
    }];
    while (stack.length > 0) {
      if (this.#stopped || this.#entries >= maxEntries) return false;
      const top = stack[stack.length - 1];
      const name = top.names[top.next++];
      if (name === undefined) {
        stack.pop();
        continue;
      }
      const path = posix.join(top.dir, name);
      const parts = [...top.parts, name];
      await this.#breather.breathe();
      let info: Deno.FileInfo;
      try {
        info = Deno.lstatSync(path);
      } catch {
        continue;
      }
      this.#infos.set(path, info);
      this.#entries++;
      if (info.isDirectory) {
        if (o.wanted(parts, true)) {
          stack.push({ dir: path, parts, names: namesIn(path), next: 0 });
        }
      } else if (
        o.readFiles && info.isFile && info.size <= o.smallBytes &&
        o.wanted(parts, false)
      ) {
        if (this.#bytes + info.size > maxBytes) return false;
        this.#read(path, info);
      }
    }
    return true;
  }

  #read(path: string, info: Deno.FileInfo): void {
    try {
      const got = readSmallLocal(path, walkedOf(info), this.#o.smallBytes);
      if (got.kind !== "read") return;
      this.#files.set(path, got);
      this.#bytes += got.data.length;
    } catch {
      // The walk reads it again and tells why it cannot.
    }
  }
}

/**
 * The reading ahead of a push: the entries its walk takes (by `filter`) and
 * the small files it sends in bundles (none in a dry run, nor with
 * `--verify`, which sends every file in ranges).
 */
export function forPush(
  filter: PathFilter,
  options: { verify?: boolean; dryRun?: boolean },
): LocalPrefetch {
  return new LocalPrefetch({
    smallBytes: SMALL_FILE_BYTES,
    readFiles: !options.verify && !options.dryRun,
    wanted: (parts, isDir) => filter.takes(parts, isDir),
  });
}

/** The names in `dir`, sorted as the walk takes them (none when it cannot be read: the walk tells why). */
function namesIn(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  } catch {
    return [];
  }
}
