/**
 * Uploads in progress on hsyncd (push): for each target, its
 * `NAME.hsync-part` and the same journal a pull keeps (the source's
 * identity and the byte ranges flushed), who is writing it, and the commit
 * that verifies and renames it into place. Everything on disk goes through
 * the write jail (lib/server/jail/write_jail.ts).
 */
import { createHash } from "node:crypto";
import { closeSync, fchmodSync, fstatSync, ftruncateSync } from "node:fs";
import type { ByteRange } from "../shared/byte_range.ts";
import { HttpError } from "../shared/errors.ts";
import { etagFor, modeBits, mtimeMs } from "../shared/file_identity.ts";
import { decodeJournal, encodeJournal } from "../shared/journal.ts";
import { journalNameFor, partNameFor } from "../shared/part_file.ts";
import { RangeSet } from "../shared/range_set.ts";
import type {
  CommitRequest,
  CommitResult,
  SourceId,
  UploadStatus,
} from "../shared/wire.ts";
import { fsFailureStatus } from "./error_status.ts";
import type { WriteJail, WriteTarget } from "./jail/write_jail.ts";
import { setMtimeMsOnce, withMtimeMs } from "../shared/fd_times.ts";
import { BodyRefused } from "./request_body.ts";
import { type Pour, pourRange } from "./range_pour.ts";

/** Longest a journal may be (far more than any real list of ranges). */
const MAX_JOURNAL_BYTES = 1024 * 1024;
/** Bytes read at a time when a commit verifies a part's SHA-256. */
const HASH_CHUNK = 1024 * 1024;
/** Bytes written to an upload after which it is flushed and recorded at once. */
const FLUSH_BYTES = 32 * 1024 * 1024;
/**
 * How long a push keeps a path after its last request: another run gets 409
 * meanwhile. A running push sends a request every few milliseconds; a
 * killed one frees the path this long after (at once when it was killed in
 * the middle of a request).
 */
const SESSION_IDLE_MS = 10_000;
/** Longest a written range waits for its flush (then it is recorded). */
const FLUSH_MS = 500;

/** Options of {@linkcode Uploads}. */
export interface UploadsOptions {
  jail: WriteJail;
  /** How long a session keeps a path after its last request (another session gets 409 meanwhile). */
  sessionIdleMs?: number;
  /** The clock (ms). */
  now?: () => number;
  /** The server's umask (what modes are masked with unless `preserve`). */
  umask?: number;
}

/** One upload in memory. */
interface Upload {
  target: WriteTarget;
  size: number;
  source: SourceId;
  /** Ranges flushed to disk (and recorded in the journal). */
  held: RangeSet;
  /** Ranges written but not flushed yet: recorded once a flush covers them. */
  pending: RangeSet;
  /** A flush waiting to run (a timer), and the one running. */
  flushTimer?: ReturnType<typeof setTimeout>;
  flushing?: Promise<void>;
  session?: string;
  lastActive: number;
  /** Requests writing it now. */
  writing: number;
  /** Journal saves, one after the other. */
  saving: Promise<void>;
}

/** Who is asking, and for which version of the file. */
export interface UploadClaim {
  size: number;
  source: SourceId;
  /** The `x-hsync-upload-session` of the request (one per hsync run). */
  session?: string;
}

/** The uploads of one server. */
export class Uploads {
  #jail: WriteJail;
  #idleMs: number;
  #now: () => number;
  #umask: number;
  #live = new Map<string, Upload>();

  constructor(options: UploadsOptions) {
    this.#jail = options.jail;
    this.#idleMs = options.sessionIdleMs ?? SESSION_IDLE_MS;
    this.#now = options.now ?? Date.now;
    this.#umask = options.umask ?? 0o022;
  }

  /** The umask modes of pushed files are masked with (unless `preserve`). */
  get umask(): number {
    return this.#umask;
  }

  /** Frees `target` from `session` when that push's request broke (its client went away) and nothing else of it is writing. */
  release(target: WriteTarget, session: string | undefined): void {
    const u = this.#live.get(keyOf(target));
    if (u !== undefined && u.session === session && u.writing === 0) {
      u.session = undefined;
    }
  }

  /** Whether another push session is writing `target`, or wrote it lately (its upload must not be pulled from under it). */
  busyFor(target: WriteTarget, session: string | undefined): boolean {
    const u = this.#live.get(keyOf(target));
    return u !== undefined && u.session !== undefined &&
      u.session !== session &&
      (u.writing > 0 || this.#now() - u.lastActive < this.#idleMs);
  }

  /** What is held of an upload of `target` (what was written is flushed first), or undefined when nothing is. */
  async status(target: WriteTarget): Promise<UploadStatus | undefined> {
    const u = this.#load(target);
    if (u === undefined) return undefined;
    await this.#flush(u);
    return statusOf(u);
  }

  /**
   * Whether every byte of `claim`'s upload of `target` is written (held, or
   * written and waiting for its flush): a commit of it would take it.
   */
  complete(target: WriteTarget, claim: UploadClaim): boolean {
    const u = this.#load(target);
    return u !== undefined && u.size === claim.size &&
      u.source === claim.source &&
      new RangeSet([...u.held.toArray(), ...u.pending.toArray()])
        .isComplete(u.size);
  }

  /**
   * Writes the bytes of `range` into the target's part file as `pour`
   * hands them over, in order, `restart` first dropping what was held. The
   * range is recorded as held once a flush (`fdatasync`) covers it: at once
   * past {@linkcode FLUSH_BYTES} written since the last one, else within
   * {@linkcode FLUSH_MS}, and always before a status or a commit answers.
   * When `pour` fails, the bytes it had handed over count all the same
   * (they are the range's first bytes: a cut-off range is resumed after
   * them), unless it failed with `BodyRefused` (a body longer than its
   * range, or whose bytes are not the ones signed): what it wrote then
   * counts for nothing, even where an earlier range had been held.
   */
  async write(
    target: WriteTarget,
    claim: UploadClaim & { restart?: boolean },
    range: ByteRange,
    pour: Pour,
  ): Promise<UploadStatus> {
    if (
      !(range.start >= 0 && range.end > range.start &&
        range.end <= claim.size)
    ) {
      throw new HttpError(
        416,
        "bad_range",
        `Cannot write bytes ${range.start}-${range.end - 1} of ${
          JSON.stringify(target.path)
        }: the file has ${claim.size} bytes`,
      );
    }
    const u = this.#take(target, claim, claim.restart === true);
    u.writing++;
    try {
      const part = partNameFor(target.name);
      const fd = this.#jail.openWriteDescriptor(target, part, true);
      const { written, error } = await pourRange(
        fd,
        range,
        pour,
        (failure) => diskFailure(target.path, failure),
      ).finally(() => closeSync(fd));
      if (error !== undefined) {
        const wrote = { start: range.start, end: range.start + written };
        if (error instanceof BodyRefused) await this.#forget(u, wrote);
        else if (written > 0) {
          u.pending.add(wrote);
          this.#flushSoon(u);
        }
        throw error;
      }
    } finally {
      u.writing--;
      u.lastActive = this.#now();
    }
    u.pending.add(range);
    if (u.pending.covered >= FLUSH_BYTES) await this.#flush(u);
    else this.#flushSoon(u);
    return statusOf(u);
  }

  /** Forgets `range` of `u` (held or waiting for its flush): its bytes are not the ones sent. */
  async #forget(u: Upload, range: ByteRange): Promise<void> {
    if (range.end <= range.start) return;
    // A flush under way would record it again as it ends.
    while (u.flushing !== undefined) await u.flushing.catch(() => {});
    u.pending.remove(range);
    u.held.remove(range);
    if (this.#live.get(keyOf(u.target)) === u) await this.#save(u);
  }

  /** Flushes `u`'s part file and records what it covers, after {@linkcode FLUSH_MS} unless a flush comes first. */
  #flushSoon(u: Upload): void {
    if (u.flushTimer !== undefined) return;
    u.flushTimer = setTimeout(() => {
      u.flushTimer = undefined;
      this.#flush(u).catch(() => {
        // The next write, status or commit tries again and answers the failure.
      });
    }, FLUSH_MS);
  }

  /**
   * Flushes the part file (`fdatasync` through a descriptor proven to be
   * it) and moves what was written to held, then saves the journal: the
   * journal never claims a byte that is not on the disk.
   */
  async #flush(u: Upload): Promise<void> {
    clearTimeout(u.flushTimer);
    u.flushTimer = undefined;
    while (u.flushing !== undefined) await u.flushing;
    if (u.pending.covered === 0) return;
    const covered = u.pending.toArray();
    u.pending = new RangeSet();
    u.flushing = (async () => {
      try {
        const part = partNameFor(u.target.name);
        const { file } = await this.#jail.open(u.target, part, false);
        try {
          await file.syncData();
        } finally {
          file.close();
        }
      } catch (error) {
        for (const r of covered) u.pending.add(r);
        throw diskFailure(u.target.path, error);
      }
      for (const r of covered) u.held.add(r);
      // Committed or dropped meanwhile: its journal is gone for good.
      if (this.#live.get(keyOf(u.target)) === u) await this.#save(u);
    })();
    try {
      await u.flushing;
    } finally {
      u.flushing = undefined;
    }
  }

  /**
   * Gives a complete upload its final name: every byte held for this
   * source, the SHA-256 checked when asked (a mismatch drops the part and
   * answers 422), mode and mtime set, renamed over the target (a file or link
   * there replaced, never followed), journal removed. `hash` runs the
   * verification (the caller bounds hash work).
   */
  async commit(
    target: WriteTarget,
    request: CommitRequest & { session?: string },
    hash: <T>(job: () => Promise<T>) => Promise<T> = (job) => job(),
  ): Promise<CommitResult> {
    const part = partNameFor(target.name);
    // Holes are never sent: they count as held, and stay holes on disk.
    const holes = new RangeSet(
      (request.holes ?? []).map(([start, end]) => ({ start, end })),
    );
    let u = this.#load(target);
    if (u === undefined && holes.isComplete(request.size)) {
      u = this.#take(target, request, false);
    }
    // Another push writing it is told so before anything about its bytes.
    if (u !== undefined) {
      this.#own(u, request.session);
      // A flush running now would save the journal again after the commit.
      while (u.flushing !== undefined) await u.flushing.catch(() => {});
      // What was written is complete once written (a pull places without a
      // flush too): nothing to wait for, the journal goes with the commit.
      u.held = new RangeSet([...u.held.toArray(), ...u.pending.toArray()]);
      u.pending = new RangeSet();
      clearTimeout(u.flushTimer);
      u.flushTimer = undefined;
    }
    if (
      u === undefined || u.size !== request.size ||
      u.source !== request.source ||
      !new RangeSet([...u.held.toArray(), ...holes.toArray()])
        .isComplete(request.size)
    ) {
      throw new HttpError(
        409,
        "incomplete",
        `Cannot commit ${
          JSON.stringify(target.path)
        }: the server does not hold all ${request.size} bytes of this version (ask GET /v1/upload for what it holds)`,
      );
    }
    u.writing++;
    try {
      // (node's futimes, on a descriptor, cannot set a time before 1970.)
      if (request.sha256 === undefined && request.mtime >= 0) {
        return this.#commitNow(target, request);
      }
      const { file, info } = await this.#jail.open(target, part, true);
      try {
        // Through the proven handle; a part shorter than its size (holes at
        // its end) is extended, and the bytes added read as zeros.
        if ((await file.stat()).size !== request.size) {
          await file.truncate(request.size);
        }
        let sha256: string | undefined;
        if (request.sha256 !== undefined) {
          sha256 = await hash(() => sha256OfFile(file, request.size));
          if (sha256 !== request.sha256) {
            this.#drop(u);
            throw new HttpError(
              422,
              "verify_failed",
              `Cannot commit ${
                JSON.stringify(target.path)
              }: its SHA-256 on the server is not the one sent; the upload was dropped, send it again`,
            );
          }
        }
        this.#setMode(target, part, info, this.#modeOf(request));
        await file.utime(new Date(), new Date(request.mtime));
        const now = this.#place(target, info);
        if (now === undefined) throw changedInCommit(target);
        const result: CommitResult = statOf(now);
        if (sha256 !== undefined) result.sha256 = sha256;
        return result;
      } finally {
        file.close();
      }
    } finally {
      u.writing--;
      u.lastActive = this.#now();
    }
  }

  /**
   * A commit with no SHA-256 to check (and a time from 1970 on), in one
   * synchronous stretch through one proven descriptor: a Deno handle waits
   * for a thread of its own at each step (open, stat, utime), and a file
   * pushed in ranges is committed by its last PUT, one per file.
   */
  #commitNow(target: WriteTarget, request: CommitRequest): CommitResult {
    const fd = this.#jail.openWriteDescriptor(
      target,
      partNameFor(target.name),
      true,
    );
    try {
      const info = fstatSync(fd);
      // A part shorter than its size (holes at its end) is extended.
      if (info.size !== request.size) ftruncateSync(fd, request.size);
      fchmodSync(fd, this.#modeOf(request));
      setMtimeMsOnce(fd, request.mtime);
      const now = withMtimeMs(
        fd,
        request.mtime,
        this.#place(target, info),
        () => this.#jail.lstat(target, target.name),
      );
      if (now === undefined) throw changedInCommit(target);
      return statOf(now);
    } finally {
      closeSync(fd);
    }
  }

  /** The mode a commit gives the file: no special bits, at most the umask's unless `preserve`. */
  #modeOf(request: CommitRequest): number {
    return request.mode & (request.preserve ? 0o777 : 0o777 & ~this.#umask);
  }

  /**
   * The complete part (the inode `expect`) renamed over the target, its
   * journal removed and the upload forgotten; the entry now at the name
   * (undefined: gone already).
   */
  #place(
    target: WriteTarget,
    expect: { dev: number; ino: number },
  ): Deno.FileInfo | undefined {
    this.#jail.rename(target, partNameFor(target.name), target.name, expect);
    this.#jail.remove(target, journalNameFor(target.name));
    this.#live.delete(keyOf(target));
    return this.#jail.lstat(target, target.name);
  }

  /** Sets `mode` through a descriptor proven to be `name` (a mode set by name would follow a link planted there). */
  #setMode(
    target: WriteTarget,
    name: string,
    expect: { dev: number; ino: number },
    mode: number,
  ): void {
    const fd = this.#jail.openDescriptor(target, name, expect);
    try {
      fchmodSync(fd, mode);
    } finally {
      closeSync(fd);
    }
  }

  /** The upload of `target` for this claim, taken by its session: a new one, or the one held (409 when another session or another version holds it). */
  #take(target: WriteTarget, claim: UploadClaim, restart: boolean): Upload {
    let u = this.#load(target);
    if (
      u !== undefined &&
      (restart || u.size !== claim.size || u.source !== claim.source)
    ) {
      this.#own(u, claim.session);
      if (!restart) {
        throw new HttpError(
          409,
          "source_changed",
          `Cannot write ${
            JSON.stringify(target.path)
          }: the server holds part of another version of this file; send it with restart=1 to start over`,
        );
      }
      this.#drop(u);
      u = undefined;
    }
    if (u === undefined) {
      // A part nothing records is no one's: its bytes would show through
      // the holes of a commit (`-S`), which are never written.
      this.#jail.remove(target, partNameFor(target.name));
      u = {
        target,
        size: claim.size,
        source: claim.source,
        held: new RangeSet(),
        pending: new RangeSet(),
        lastActive: this.#now(),
        writing: 0,
        saving: Promise.resolve(),
      };
      this.#live.set(keyOf(target), u);
    }
    this.#own(u, claim.session);
    return u;
  }

  /** Makes `session` the writer of `u`, or 409 while another session is writing it or wrote it lately. */
  #own(u: Upload, session: string | undefined): void {
    if (
      u.session !== undefined && session !== u.session &&
      (u.writing > 0 || this.#now() - u.lastActive < this.#idleMs)
    ) {
      throw new HttpError(
        409,
        "upload_in_progress",
        `Cannot write ${
          JSON.stringify(u.target.path)
        }: another push of it is in progress, retry later`,
      );
    }
    u.session = session;
    u.lastActive = this.#now();
  }

  /** The upload of `target` from memory, or from its journal beside a part file. */
  #load(target: WriteTarget): Upload | undefined {
    const key = keyOf(target);
    const live = this.#live.get(key);
    if (live !== undefined) return live;
    const bytes = this.#jail.read(
      target,
      journalNameFor(target.name),
      MAX_JOURNAL_BYTES,
    );
    const data = bytes === undefined
      ? undefined
      : decodeJournal(new TextDecoder().decode(bytes));
    const part = this.#jail.lstat(target, partNameFor(target.name));
    if (data === undefined || part === undefined || !part.isFile) {
      return undefined;
    }
    const held = new RangeSet(data.done);
    // Only what the part file still has: a shorter part holds less.
    held.remove({ start: part.size, end: Number.MAX_SAFE_INTEGER });
    const u: Upload = {
      target,
      size: data.remote.size,
      source: data.remote.etag,
      held,
      pending: new RangeSet(),
      lastActive: 0,
      writing: 0,
      saving: Promise.resolve(),
    };
    this.#live.set(key, u);
    return u;
  }

  /** Records what `u` holds in its journal (after the bytes were flushed), saves in order. */
  #save(u: Upload): Promise<void> {
    const data = encodeJournal({
      remote: { size: u.size, mtime: 0, etag: u.source },
      done: u.held.toArray(),
    });
    u.saving = u.saving.then(() => {
      this.#jail.replace(u.target, journalNameFor(u.target.name), data);
    });
    return u.saving;
  }

  /** Forgets an upload and removes its part and journal. */
  #drop(u: Upload): void {
    clearTimeout(u.flushTimer);
    u.flushTimer = undefined;
    u.pending = new RangeSet();
    this.#live.delete(keyOf(u.target));
    this.#jail.remove(u.target, partNameFor(u.target.name));
    this.#jail.remove(u.target, journalNameFor(u.target.name));
  }
}

/** A write or flush that failed: what it means to a client (a full disk: 507), naming the requested path only. */
function diskFailure(path: string, error: unknown): unknown {
  if (error instanceof HttpError) return error;
  const fs = fsFailureStatus(error);
  if (fs === undefined) return error;
  return new HttpError(
    fs.status,
    fs.code,
    `Cannot write ${JSON.stringify(path)}: ${fs.reason}`,
  );
}

/** The final name was gone right after a commit renamed the part there (409: the client asks again). */
function changedInCommit(target: WriteTarget): HttpError {
  return new HttpError(
    409,
    "changed",
    `Cannot commit ${
      JSON.stringify(target.path)
    }: it changed while being committed, retry`,
  );
}

function keyOf(target: WriteTarget): string {
  return `${target.dir}\0${target.name}`;
}

function statusOf(u: Upload): UploadStatus {
  return {
    size: u.size,
    source: u.source,
    held: u.held.toArray().map(({ start, end }): [number, number] => [
      start,
      end,
    ]),
  };
}

function statOf(info: Deno.FileInfo): CommitResult {
  return {
    type: "file",
    size: info.size,
    mtime: mtimeMs(info),
    mode: modeBits(info),
    etag: etagFor(info),
  };
}

/** SHA-256 of the first `size` bytes of an open file. */
async function sha256OfFile(file: Deno.FsFile, size: number): Promise<string> {
  const digest = createHash("sha256");
  await file.seek(0, Deno.SeekMode.Start);
  const buffer = new Uint8Array(Math.min(HASH_CHUNK, Math.max(size, 1)));
  let left = size;
  while (left > 0) {
    const n = await file.read(
      left < buffer.length ? buffer.subarray(0, left) : buffer,
    );
    if (n === null || n === 0) {
      throw new HttpError(
        409,
        "changed",
        "Cannot verify the upload: its part file is shorter than its size",
      );
    }
    digest.update(buffer.subarray(0, n));
    left -= n;
  }
  return digest.digest("hex");
}
