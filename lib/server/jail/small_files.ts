/**
 * Small files read synchronously by the jail, many in one go (the bundle's
 * fast path): the same rules and the same identity proof as a check and an
 * open, taken one directory section at a time; anything unusual is declined
 * so the caller takes the asynchronous path, which gives the precise answer.
 */
import { closeSync, fstatSync, openSync, type Stats } from "node:fs";
import { readFully } from "../../shared/fd_read.ts";
import type { CwdAnchor, Inside } from "./cwd_anchor.ts";
import { toFileInfo } from "../../shared/node_stats.ts";
import { OPEN_FLAGS } from "./opened_file.ts";
import { join, splitRequest } from "./request_path.ts";
import type { JailRules } from "./rules.ts";

/** A whole small file read by `readSmallSync`. */
export interface SmallFile {
  /** `fstat` of the opened file, taken before its bytes were read. */
  info: Deno.FileInfo;
  data: Uint8Array;
}

/** What one request learnt of parent directories: (path as asked, kernel path) -> whether the rules allow what is below it. */
export type SmallReadCache = Map<string, boolean>;

/** A cache for `readSmallSync`, valid for one request. */
export function newSmallReadCache(): SmallReadCache {
  return new Map();
}

/** A small file opened by `readSmallBatchSync`, its bytes not read yet. */
interface SmallOpen {
  fd: number;
  stats: Stats;
}

/** Reads small files under the rules, through the anchor. */
export class SmallFileReads {
  #rules: JailRules;
  #anchor: CwdAnchor;

  constructor(rules: JailRules, anchor: CwdAnchor) {
    this.#rules = rules;
    this.#anchor = anchor;
  }

  /**
   * Reads consecutive small files in order until one is declined or
   * `maxTotal` bytes have been read; returns the ones read (a prefix of
   * `requestPaths`). See `PathGuard.readSmallBatchSync`.
   */
  read(
    requestPaths: readonly string[],
    maxBytes: number,
    maxTotal: number,
    cache: SmallReadCache,
  ): SmallFile[] {
    const opened: SmallOpen[] = [];
    try {
      this.#openSmallBatch(requestPaths, maxBytes, maxTotal, cache, opened);
    } catch {
      // Whatever was proven before the failure stands; the rest goes the long way.
    }
    try {
      let total = 0;
      for (const item of opened) total += item.stats.size;
      // One buffer for the whole batch: each file's bytes are a view of it.
      const slab = new Uint8Array(total);
      const files: SmallFile[] = [];
      let at = 0;
      for (const item of opened) {
        const data = slab.subarray(at, at + item.stats.size);
        let whole: boolean;
        try {
          whole = readFully(item.fd, data);
        } catch {
          whole = false;
        }
        // Shrank or failed: the long way reports it; the files before it stand.
        if (!whole) break;
        files.push({ info: toFileInfo(item.stats), data });
        at += data.length;
      }
      return files;
    } finally {
      for (const item of opened) closeSync(item.fd);
    }
  }

  /**
   * Opens consecutive small files with the proof of `openFile`, one
   * directory section at a time, into `opened`; stops at the first path that
   * must go the long way or at `maxTotal` bytes.
   */
  #openSmallBatch(
    requestPaths: readonly string[],
    maxBytes: number,
    maxTotal: number,
    cache: SmallReadCache,
    opened: SmallOpen[],
  ): void {
    let total = 0;
    let i = 0;
    while (i < requestPaths.length && total < maxTotal) {
      const first = splitRequest(requestPaths[i]);
      if (first === undefined) return;
      const dirPath = first.dir;
      let stop = false;
      this.#anchor.run(dirPath, (at) => {
        const key = `${dirPath}\0${at.real}`;
        let allowed = cache.get(key);
        if (allowed === undefined) {
          // Both forms: the directory as asked and as the kernel reached it.
          allowed = this.#rules.refusal(
                dirPath,
                dirPath,
                this.#rules.configuredRoots,
              ) === undefined &&
            this.#rules.refusal(at.real, dirPath, this.#rules.realRoots) ===
              undefined;
          cache.set(key, allowed);
        }
        while (i < requestPaths.length && total < maxTotal) {
          const next = splitRequest(requestPaths[i]);
          if (next === undefined || next.dir !== dirPath) return;
          const got = allowed ? this.#openSmall(at, next, maxBytes) : undefined;
          if (got === undefined) {
            stop = true;
            return;
          }
          opened.push(got);
          total += got.stats.size;
          i++;
        }
      });
      if (stop) return;
    }
  }

  /** Opens one small file of the entered directory with the proof; undefined (nothing left open) when it must go the long way. */
  #openSmall(
    at: Inside,
    request: { path: string; name: string },
    maxBytes: number,
  ): SmallOpen | undefined {
    const realPath = join(at.real, request.name);
    // Below an allowed directory only the child's own path and name can still be refused.
    if (
      this.#rules.childRefused(request.path, request.name) ||
      this.#rules.childRefused(realPath, request.name)
    ) return undefined;
    let fd = -1;
    try {
      fd = openSync(realPath, OPEN_FLAGS);
      const stats = fstatSync(fd);
      if (!stats.isFile() || stats.size > maxBytes) {
        closeSync(fd);
        return undefined;
      }
      const now = at.lstat(request.name);
      if (!now.isFile || now.dev !== stats.dev || now.ino !== stats.ino) {
        closeSync(fd);
        return undefined;
      }
      return { fd, stats };
    } catch {
      if (fd >= 0) closeSync(fd);
      return undefined;
    }
  }
}
