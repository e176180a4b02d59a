/** Change feed behind `GET /v1/watch`: inotify (Deno.watchFs) per watched root, stat-poll fallback, and cursors that miss nothing. */
import { basename, dirname, relative, sep } from "node:path";
import type { WatchResult } from "../shared/wire.ts";

/** Options of {@linkcode WatchHub}. */
export interface WatchHubOptions {
  /** Distinct changed paths remembered per root; a cursor older than the oldest forgotten change gets `rescan`. */
  maxEvents?: number;
  /** A root nobody waited on for this long is closed (its cursors then get `rescan`). */
  idleCloseMs?: number;
  /** Creates a file-system watcher; defaults to Deno.watchFs. Throwing selects the stat-poll fallback. */
  watchFs?: (
    path: string,
    recursive: boolean,
  ) => AsyncIterable<Deno.FsEvent> & {
    close(): void;
  };
  /**
   * The file-system type a path lives on (`ext4`, `nfs4`...), undefined when
   * unknown; defaults to reading `/proc/self/mountinfo`. On a network file
   * system inotify only sees this machine's writes, so those roots are
   * stat-polled instead.
   */
  fsTypeOf?: (path: string) => string | undefined;
}

/** File systems written by other machines: inotify would miss their changes. */
const NETWORK_FS =
  /^(nfs\d?|cifs|smb\d?|smbfs|9p|lustre|gpfs|beegfs|ceph|glusterfs|ocfs2|gfs2|afs|fuse\.(sshfs|glusterfs|ceph|cephfs|s3fs|rclone|gcsfuse|goofys|beegfs|lizardfs|moosefs|juicefs))$/;

/**
 * A watched root: the last change of each path, numbered. A path that changes
 * a thousand times a second is one entry, so a busy log costs O(1) per event
 * and a poll costs O(paths changed since its cursor).
 */
class Root {
  readonly id: string;
  seq = 0;
  /** Cursors older than this were forgotten (evicted paths): they get `rescan`. */
  floor = 0;
  waiters = new Set<() => void>();
  lastUsed = Date.now();
  pollMs = 0;
  /** Path -> seq of its last change; insertion order is seq order (delete, then set). */
  #latest = new Map<string, number>();
  /** Seqs in increasing order, with the path of each; stale entries are skipped and compacted away. */
  #logSeq: number[] = [];
  #logPath: string[] = [];
  #closers: Array<() => void> = [];
  #maxPaths: number;

  constructor(
    readonly path: string,
    readonly isDir: boolean,
    maxPaths: number,
  ) {
    this.id = crypto.randomUUID().slice(0, 8);
    this.#maxPaths = maxPaths;
  }

  record(path: string): void {
    this.seq++;
    this.#latest.delete(path);
    this.#latest.set(path, this.seq);
    this.#logSeq.push(this.seq);
    this.#logPath.push(path);
    if (this.#latest.size > this.#maxPaths) {
      const [oldest, seq] = this.#latest.entries().next().value!;
      this.#latest.delete(oldest);
      this.floor = seq;
    }
    if (this.#logSeq.length > 2 * this.#latest.size + 1024) this.#compact();
    for (const wake of this.waiters) wake();
  }

  /** Paths whose last change is after `since` (each once, oldest change first). */
  changedSince(since: number): string[] {
    const seqs = this.#logSeq;
    let lo = 0;
    let hi = seqs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (seqs[mid] <= since) lo = mid + 1;
      else hi = mid;
    }
    const out: string[] = [];
    for (let i = lo; i < seqs.length; i++) {
      const p = this.#logPath[i];
      if (this.#latest.get(p) === seqs[i]) out.push(p);
    }
    return out;
  }

  #compact(): void {
    this.#logSeq = [...this.#latest.values()];
    this.#logPath = [...this.#latest.keys()];
  }

  onClose(fn: () => void): void {
    this.#closers.push(fn);
  }

  close(): void {
    for (const fn of this.#closers) fn();
    this.#closers = [];
    for (const wake of this.waiters) wake();
  }
}

/** Serves long-polls on watched roots; one watcher per root, shared by every client. */
export class WatchHub {
  #roots = new Map<string, Root>();
  #options: Required<WatchHubOptions>;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  constructor(options: WatchHubOptions = {}) {
    this.#options = {
      maxEvents: options.maxEvents ?? 100_000,
      idleCloseMs: options.idleCloseMs ?? 120_000,
      watchFs: options.watchFs ??
        ((path, recursive) => Deno.watchFs(path, { recursive })),
      fsTypeOf: options.fsTypeOf ?? fsTypeFromMountinfo,
    };
  }

  /**
   * Waits until something under `realPath` changes after `cursor`, or
   * `timeoutMs` passes. Without a (valid, current) cursor it answers at once
   * with a fresh cursor and `rescan: true`: the caller scans, then polls with
   * that cursor, so nothing that happens during its scan is missed.
   * `pollMs` is the stat-poll interval used where inotify is unavailable.
   */
  async wait(
    realPath: string,
    isDir: boolean,
    cursor: string | null,
    options: { timeoutMs: number; pollMs: number; signal?: AbortSignal },
  ): Promise<WatchResult> {
    if (this.#closed) return { cursor: "closed.0", changed: [], rescan: true };
    const root = this.#root(realPath, isDir, options.pollMs);
    root.lastUsed = Date.now();
    const [id, seqText] = (cursor ?? "").split(".");
    const since = Number(seqText);
    const fresh = () => ({
      cursor: `${root.id}.${root.seq}`,
      changed: [] as string[],
      rescan: true,
    });
    if (
      id !== root.id || !Number.isSafeInteger(since) || since > root.seq ||
      since < root.floor
    ) {
      return fresh();
    }

    if (root.seq === since) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          root.waiters.delete(done);
          options.signal?.removeEventListener("abort", done);
          resolve();
        };
        const timer = setTimeout(done, options.timeoutMs);
        root.waiters.add(done);
        options.signal?.addEventListener("abort", done);
      });
      root.lastUsed = Date.now();
      if (this.#roots.get(realPath) !== root) return fresh();
    }
    if (since < root.floor) return fresh();
    return {
      cursor: `${root.id}.${root.seq}`,
      changed: root.changedSince(since),
      rescan: false,
    };
  }

  /** True once {@linkcode close} was called (the server is stopping). */
  get closed(): boolean {
    return this.#closed;
  }

  /** Stops every watcher and wakes every poll (each then answers at once). */
  close(): void {
    this.#closed = true;
    clearInterval(this.#sweeper);
    for (const root of this.#roots.values()) root.close();
    this.#roots.clear();
  }

  #root(realPath: string, isDir: boolean, pollMs: number): Root {
    let root = this.#roots.get(realPath);
    if (root !== undefined && root.isDir === isDir) return root;
    root?.close();
    if (this.#sweeper === undefined && !this.#closed) {
      // Started with the first root, so an unused hub holds no timer.
      this.#sweeper = setInterval(() => this.#sweep(), 10_000);
      this.#sweeper.unref();
    }
    root = new Root(realPath, isDir, this.#options.maxEvents);
    this.#roots.set(realPath, root);
    if (!this.#closed) this.#start(root, pollMs);
    return root;
  }

  #start(root: Root, pollMs: number): void {
    // A file is watched through its directory, so a rotation (rename away,
    // create anew) is seen; a directory is watched recursively.
    const target = root.isDir ? root.path : dirname(root.path);
    const name = basename(root.path);
    const type = this.#options.fsTypeOf(target);
    if (type !== undefined && NETWORK_FS.test(type)) {
      this.#startPolling(root, pollMs);
      return;
    }
    let watcher: ReturnType<NonNullable<WatchHubOptions["watchFs"]>>;
    try {
      watcher = this.#options.watchFs(target, root.isDir);
    } catch {
      this.#startPolling(root, pollMs);
      return;
    }
    root.onClose(() => {
      try {
        watcher.close();
      } catch {
        // already closed
      }
    });
    (async () => {
      try {
        for await (const event of watcher) {
          if (event.kind === "access") continue;
          for (const p of event.paths) {
            if (root.isDir) {
              const rel = relative(root.path, p);
              if (rel === "" || rel.startsWith("..")) continue;
              root.record(rel.split(sep).join("/"));
            } else if (basename(p) === name && dirname(p) === target) {
              root.record("");
            }
          }
        }
      } catch {
        // The watcher failed (e.g. the root went away): fall back to polling.
        if (this.#roots.get(root.path) === root) {
          this.#startPolling(root, pollMs);
        }
      }
    })();
  }

  #startPolling(root: Root, pollMs: number): void {
    root.pollMs = pollMs;
    let previous = new Map<string, string>();
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      if (stopped) return;
      const now = await snapshot(root.path, root.isDir);
      for (const [p, sig] of now) if (previous.get(p) !== sig) root.record(p);
      for (const p of previous.keys()) if (!now.has(p)) root.record(p);
      previous = now;
      if (!stopped) timer = setTimeout(tick, root.pollMs);
    };
    root.onClose(() => {
      stopped = true;
      clearTimeout(timer);
    });
    snapshot(root.path, root.isDir).then((s) => {
      previous = s;
      timer = setTimeout(tick, root.pollMs);
    });
  }

  #sweep(): void {
    const now = Date.now();
    for (const [path, root] of this.#roots) {
      if (
        root.waiters.size === 0 &&
        now - root.lastUsed > this.#options.idleCloseMs
      ) {
        root.close();
        this.#roots.delete(path);
      }
    }
  }
}

/** size:mtime:ino of every regular file (and directory) under a root, for the stat-poll fallback. */
async function snapshot(
  root: string,
  isDir: boolean,
): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const sig = (i: Deno.FileInfo) => `${i.size}:${i.mtime?.getTime()}:${i.ino}`;
  if (!isDir) {
    try {
      out.set("", sig(await Deno.stat(root)));
    } catch {
      // gone: reported as a removal
    }
    return out;
  }
  const walk = async (dir: string, rel: string) => {
    let entries: AsyncIterable<Deno.DirEntry>;
    try {
      entries = Deno.readDir(dir);
      for await (const e of entries) {
        const r = rel === "" ? e.name : `${rel}/${e.name}`;
        const full = `${dir}/${e.name}`;
        if (e.isDirectory) {
          out.set(r, "dir");
          await walk(full, r);
        } else if (e.isFile) {
          try {
            out.set(r, sig(await Deno.lstat(full)));
          } catch {
            // vanished between readDir and stat
          }
        }
      }
    } catch {
      // unreadable directory: nothing to report under it
    }
  };
  await walk(root, "");
  return out;
}

/**
 * The type of the file system holding `path`, from the longest matching
 * mount point in `/proc/self/mountinfo`; undefined when that cannot be read
 * (not Linux) or parsed.
 */
export function fsTypeFromMountinfo(
  path: string,
  mountinfo?: string,
): string | undefined {
  let text = mountinfo;
  if (text === undefined) {
    try {
      text = Deno.readTextFileSync("/proc/self/mountinfo");
    } catch {
      return undefined;
    }
  }
  let best: { point: string; type: string } | undefined;
  for (const line of text.split("\n")) {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER
    const dash = line.indexOf(" - ");
    if (dash < 0) continue;
    const point = line.slice(0, dash).split(" ")[4]?.replace(
      /\\([0-7]{3})/g,
      (_, o) => String.fromCharCode(parseInt(o, 8)),
    );
    const type = line.slice(dash + 3).split(" ")[0];
    if (point === undefined || type === undefined || type === "") continue;
    const inside = point === "/" || path === point ||
      path.startsWith(point.endsWith("/") ? point : `${point}/`);
    if (inside && (best === undefined || point.length >= best.point.length)) {
      best = { point, type };
    }
  }
  return best?.type;
}
