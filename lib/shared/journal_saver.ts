/** Keeps the journal of one part file up to date while chunks are written into it, with bounded loss on a kill and flushes that never stall the transfer. */
import { type FileId, openChecked } from "./checked_open.ts";
import type { WrittenRanges } from "./chunk_writer.ts";
import {
  encodeJournal,
  type JournalData,
  type RemoteIdentity,
  replaceJournal,
} from "./journal.ts";
import { RangeSet } from "./range_set.ts";

/** How often the saver looks at the bytes written (milliseconds). */
const TICK_MS = 10;
/** Unsaved bytes that trigger a save before the interval ends: at least this... */
const MIN_UNSAVED_BYTES = 1024 * 1024;
/** ...or this fraction of what the journal already holds, so a kill loses a bounded share. */
const UNSAVED_FRACTION = 1 / 64;
/** Disk write speed assumed before the first flush is measured (50 MB/s, a slow disk). */
const ASSUMED_FLUSH_BYTES_PER_MS = 50_000;

/** What a {@linkcode JournalSaver} keeps the journal of. */
export interface JournalSaverOptions {
  /** The journal's path. */
  journal: string;
  /** The part file's path. */
  part: string;
  /** The part file's inode: the handle flushed must be that file. */
  partId: FileId;
  /** The identity (size included) of the file the part belongs to. */
  identity: RemoteIdentity;
  /** What reached the part file, kept up to date by the writers. */
  written: WrittenRanges;
  /** Longest time in milliseconds between saves while bytes arrive. */
  intervalMs: number;
  /** Ranges already known to be flushed (from the journal resumed). */
  flushed?: RangeSet;
}

/**
 * Keeps the journal of one part file while its chunks are written. Every
 * tick it reads how far each chunk has written; the journal records those
 * bytes as unflushed at least every interval (sooner once many are unsaved,
 * so a kill loses a bounded share of what arrived). At most once an interval
 * it flushes the part file (fdatasync) and only then claims what was written
 * before the flush. A flush that would outlast the rest of the transfer is
 * not started: waiting for the disk would only delay the end, and the
 * unflushed ranges are checked by SHA-256 if a resume ever needs them.
 */
export class JournalSaver {
  readonly #o: JournalSaverOptions;
  readonly #written: WrittenRanges;
  readonly #file: Deno.FsFile;
  /** Claimed: flushed to disk. */
  #flushed: RangeSet;
  #timer?: ReturnType<typeof setInterval>;
  #ticking?: Promise<void>;
  #flushing?: Promise<void>;
  #writing: Promise<void> = Promise.resolve();
  /** The journal as last replaced, open for saves in place, and its length. */
  #inPlace?: { file: Deno.FsFile; length: number };
  #savedWritten: number;
  #savedAt = performance.now();
  #flushedAt = performance.now();
  /** Bytes per millisecond of the last flush (a slow disk's rate before one). */
  #flushRate = ASSUMED_FLUSH_BYTES_PER_MS;
  readonly #startedAt = performance.now();
  readonly #startCovered: number;
  #closed = false;

  private constructor(options: JournalSaverOptions, file: Deno.FsFile) {
    this.#o = options;
    this.#written = options.written;
    this.#file = file;
    this.#flushed = options.flushed ?? new RangeSet();
    this.#savedWritten = this.#written.covered;
    this.#startCovered = this.#written.covered;
  }

  /** Opens the part file (checked to be `partId`) for flushing. */
  static open(options: JournalSaverOptions): JournalSaver {
    const file = openChecked(options.part, { expected: options.partId });
    return new JournalSaver(options, file);
  }

  /** Starts saving in the background. */
  start(): void {
    this.#timer = setInterval(() => {
      this.#ticking ??= this.#tick().catch(() => {
        // A failed save leaves the previous journal, which is still true; the next tick tries again.
      }).finally(() => this.#ticking = undefined);
    }, Math.max(1, Math.min(TICK_MS, this.#o.intervalMs)));
  }

  /** Stops the background work and waits for what is in progress. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#ticking;
    await this.#flushing;
  }

  /**
   * Replaces the journal: the flushed ranges as claims, the rest of what was
   * written as unflushed. Only a journal with new claims needs to reach the
   * disk itself (`sync`); the others are hints, checked before use.
   */
  write(sync = false): Promise<void> {
    const next = this.#writing.then(async () => {
      if (this.#closed) return;
      this.#written.probe();
      const unflushed = new RangeSet(this.#written.toArray());
      for (const range of this.#flushed.toArray()) unflushed.remove(range);
      const data: JournalData = {
        remote: this.#o.identity,
        done: this.#flushed.toArray(),
      };
      if (unflushed.covered > 0) data.unflushed = unflushed.toArray();
      const covered = this.#written.covered;
      const bytes = encodeJournal(data);
      const place = this.#inPlace;
      if (!sync && place !== undefined && place.length === bytes.length) {
        // Creating and renaming a file can stall for milliseconds while the
        // disk is busy; overwriting one page in place does not. A torn page
        // reads as no journal, and what it adds is checked before use.
        await place.file.seek(0, Deno.SeekMode.Start);
        let off = 0;
        while (off < bytes.length) {
          off += await place.file.write(bytes.subarray(off));
        }
      } else {
        this.#closeInPlace();
        const file = await replaceJournal(this.#o.journal, data, { sync });
        this.#inPlace = { file, length: bytes.length };
      }
      this.#savedWritten = covered;
      this.#savedAt = performance.now();
    });
    this.#writing = next.catch(() => {});
    return next;
  }

  /** Flushes the part file, then claims everything written before the flush. */
  async flushAndWrite(): Promise<void> {
    await this.#flush();
    await this.write(true);
  }

  /** Stops saving for good and closes the handles (the journal stays on disk). */
  close(): void {
    this.#closed = true;
    this.#closeInPlace();
    try {
      this.#file.close();
    } catch {
      // already closed
    }
  }

  #closeInPlace(): void {
    try {
      this.#inPlace?.file.close();
    } catch {
      // already closed
    }
    this.#inPlace = undefined;
  }

  async #flush(): Promise<void> {
    this.#written.probe();
    const snapshot = this.#written.toArray();
    const bytes = this.#written.covered - this.#flushed.covered;
    const t0 = performance.now();
    await this.#file.syncData();
    const now = performance.now();
    if (bytes > 0) this.#flushRate = bytes / Math.max(1, now - t0);
    this.#flushed = new RangeSet(snapshot);
    this.#flushedAt = now;
  }

  async #tick(): Promise<void> {
    this.#written.probe();
    const now = performance.now();
    const written = this.#written.covered;
    const unflushed = written - this.#flushed.covered;
    if (
      this.#flushing === undefined && unflushed > 0 &&
      now - this.#flushedAt >= this.#o.intervalMs &&
      this.#flushPays(unflushed)
    ) {
      this.#flushing = this.#flush().then(() => this.write(true)).catch(() => {
        // The claims stay as they were; the next interval tries again.
      }).finally(() => this.#flushing = undefined);
    }
    const unsaved = written - this.#savedWritten;
    if (
      unsaved > 0 && (now - this.#savedAt >= this.#o.intervalMs ||
        unsaved >= Math.max(MIN_UNSAVED_BYTES, written * UNSAVED_FRACTION))
    ) await this.write();
  }

  /** False when flushing `unflushed` bytes would take longer than half of what the transfer still needs. */
  #flushPays(unflushed: number): boolean {
    const written = this.#written.covered;
    const rate = (written - this.#startCovered) /
      Math.max(1, performance.now() - this.#startedAt);
    if (rate <= 0) return true;
    const remainingMs = (this.#o.identity.size - written) / rate;
    return unflushed / this.#flushRate < remainingMs / 2;
  }
}
