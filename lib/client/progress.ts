/** Turns pull and push events into a live bar (terminal), periodic plain lines (logs, pipes) or nothing (--quiet), and the lines that end a run. */
import type { PullEvent, PullSummary } from "./transfer.ts";
import { printable } from "./printable.ts";
import {
  DEFAULT_COLUMNS,
  formatBarLine,
  formatBytes,
  formatProgressLine,
  formatRate,
  formatSeconds,
  lineWidthFor,
  type ProgressState,
} from "./progress_line.ts";

export {
  formatBarLine,
  formatBytes,
  formatDuration,
  formatProgressLine,
  formatRate,
  formatSeconds,
  type ProgressState,
} from "./progress_line.ts";

/** Where the reporter writes: a function taking text, or a byte stream. */
export type Sink = ((text: string) => void) | WritableStream<Uint8Array>;

/** Options of {@linkcode createReporter}. */
export interface ReporterOptions {
  /** Output (stderr in hsync); lib/ never writes to the terminal itself. */
  write: Sink;
  /** Draw a live bar (true) or print a plain line now and then (false). */
  isTerminal: boolean;
  /** No bar and no progress lines; warnings and failures still print. */
  quiet?: boolean;
  /** Milliseconds between plain lines (default 5000). */
  intervalMs?: number;
  /**
   * Width of the terminal in columns, or how to ask it (asked at every
   * redraw, so a resized terminal gets a line that fits); default 80.
   */
  columns?: number | (() => number);
  /** Clock in milliseconds (default `performance.now`). */
  now?: () => number;
}

/** What a run moved, as its events told it (the summary and an interrupted run use it). */
export interface RunTally {
  /** Bytes that arrived (pull) or were sent (push) in this run. */
  transferred: number;
  /** Bytes found already there from an interrupted earlier run (not moved again). */
  resumed: number;
  /** Bytes of holes (`-S`): neither moved nor written. */
  holes: number;
  /** Bytes of files not complete yet that stay for the next run to resume from. */
  kept: number;
}

/** Receives events; `stop()` clears the bar and draws no more (calling it twice is harmless). */
export interface Reporter {
  onEvent(event: PullEvent): void;
  /** Clears the bar for good; warnings and failures still print (an interrupted run needs them). */
  stop(): void;
  /** This run's bytes so far. */
  tally(): RunTally;
}

/** Milliseconds between two redraws of the bar (5 per second). */
const REDRAW_MS = 200;

/** Creates the reporter for one pull or push. */
export function createReporter(
  options: ReporterOptions,
): Promise<Reporter> {
  const write = toWriter(options.write);
  const now = options.now ?? (() => performance.now());
  const meter = new RateMeter(now);
  const state: ProgressState = {
    bytesDone: 0,
    bytesTotal: 0,
    filesDone: 0,
    filesTotal: 0,
    totalFinal: false,
    rate: 0,
    failed: 0,
  };
  const tally = new Tally();
  const columns = typeof options.columns === "function"
    ? options.columns
    : () => options.columns as number | undefined ?? DEFAULT_COLUMNS;
  const common = (event: PullEvent) => {
    tally.add(event);
    return apply(state, meter, event);
  };
  // Without a bar: counted, and its line (if any) printed as it is.
  const plain = (event: PullEvent) => {
    common(event);
    const line = eventLine(event);
    if (line !== undefined) write(`${line}\n`);
  };

  if (options.quiet) {
    return Promise.resolve({
      onEvent: plain,
      stop() {},
      tally: () => tally.value(),
    });
  }

  if (options.isTerminal) {
    const bar = new TerminalBar(write, () => {
      state.rate = meter.rate;
      return formatBarLine(state, lineWidthFor(columns()));
    }, now);
    return Promise.resolve({
      onEvent(event) {
        if (common(event)) bar.changed();
        const line = eventLine(event);
        if (line !== undefined) bar.above(line);
      },
      stop: () => bar.stop(),
      tally: () => tally.value(),
    });
  }

  let stopped = false;
  const timer = setInterval(() => {
    state.rate = meter.rate;
    if (state.bytesTotal > 0 || state.filesTotal > 0 || state.hashing) {
      write(`hsync: ${formatProgressLine(state)}\n`);
    }
  }, options.intervalMs ?? 5000);
  Deno.unrefTimer(timer);
  return Promise.resolve({
    onEvent: plain,
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
    },
    tally: () => tally.value(),
  });
}

/**
 * The live bar: one line redrawn in place (carriage return, the line, erase
 * to its end), never wider than the terminal, so a redraw never adds a
 * screen line. Lines printed meanwhile go above it.
 */
class TerminalBar {
  readonly #write: (text: string) => void;
  readonly #line: () => string;
  readonly #now: () => number;
  #shown = false;
  #stopped = false;
  #dirty = false;
  #last = -Infinity;
  #timer?: ReturnType<typeof setInterval>;

  constructor(
    write: (text: string) => void,
    line: () => string,
    now: () => number,
  ) {
    this.#write = write;
    this.#line = line;
    this.#now = now;
  }

  /** Something shown changed: redraw now, or at the next tick when one was drawn just now. */
  changed(): void {
    if (this.#stopped) return;
    this.#dirty = true;
    if (this.#now() - this.#last >= REDRAW_MS) this.#draw();
    if (this.#timer === undefined) {
      // Also redraws without events, so the rate and ETA of a stalled transfer move.
      const timer = setInterval(() => {
        if (this.#dirty || this.#now() - this.#last >= 1000) this.#draw();
      }, REDRAW_MS);
      Deno.unrefTimer(timer);
      this.#timer = timer;
    }
  }

  /** Prints `text` as a line of its own above the bar. */
  above(text: string): void {
    this.#write(`\r\x1b[K${text}\n`);
    if (this.#shown && !this.#stopped) this.#draw();
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#timer);
    // Nothing of the bar stays on the screen (nor the `^C` the terminal echoed after it).
    if (this.#shown) this.#write("\r\x1b[K");
  }

  #draw(): void {
    this.#dirty = false;
    this.#last = this.#now();
    this.#shown = true;
    this.#write(`\r${this.#line()}\x1b[K`);
  }
}

/** Updates the counters; true when something shown changed. */
function apply(
  state: ProgressState,
  meter: RateMeter,
  event: PullEvent,
): boolean {
  switch (event.type) {
    case "total":
      state.filesTotal = event.files;
      state.bytesTotal = event.bytes;
      state.totalFinal = event.final;
      return true;
    case "progress":
      state.bytesDone += event.bytes;
      // Bytes found on disk from an interrupted earlier run, and holes, are done, not a transfer rate.
      if (!event.resumed && !event.holes) meter.add(event.bytes);
      return true;
    case "hashing": {
      let h = state.hashing;
      if (h === undefined || h.phase !== event.phase) {
        h = state.hashing = { phase: event.phase, done: 0, total: 0 };
      }
      h.total += event.total ?? 0;
      h.done += event.bytes;
      if (h.done >= h.total) state.hashing = undefined;
      return true;
    }
    case "done":
    case "skip":
      if (event.type === "done") state.filesDone++;
      state.name = printable(event.path);
      return true;
    case "failure":
      state.failed++;
      return true;
    default:
      return false;
  }
}

/** Bytes moved, resumed, left as holes and kept, from the events of one run. */
class Tally {
  #transferred = 0;
  #resumed = 0;
  #holes = 0;
  #progress = 0;
  #completed = 0;

  add(event: PullEvent): void {
    if (event.type === "progress") {
      this.#progress += event.bytes;
      if (event.resumed) this.#resumed += event.bytes;
      else if (event.holes) this.#holes += event.bytes;
      else this.#transferred += event.bytes;
    } else if (event.type === "done") this.#completed += event.bytes;
  }

  value(): RunTally {
    return {
      transferred: Math.max(0, this.#transferred),
      resumed: Math.max(0, this.#resumed),
      holes: Math.max(0, this.#holes),
      kept: Math.max(0, this.#progress - this.#completed),
    };
  }
}

/** Lines printed as they happen, above the bar, also with `--quiet`. */
function eventLine(event: PullEvent): string | undefined {
  switch (event.type) {
    case "warning":
      return `hsync: warning: ${printable(event.message)}`;
    case "failure":
      return `hsync: failed: ${printable(event.path)}: ${
        printable(event.message)
      }`;
    case "deleted":
      return `hsync: deleted ${printable(event.path)}`;
    default:
      return undefined;
  }
}

/**
 * The summary line: `hsync: 41 files, 3.0 MiB in 0.42 s (7.49 MB/s), 0
 * skipped, 0 failed`. With `run` (the reporter's tally) the bytes and the
 * rate are those moved in this run, the bytes already there and the holes
 * left as holes are told apart (`(12.0 MiB resumed, 1.0 GiB of holes)`), and
 * an interrupted run says what it kept.
 */
export function formatSummary(
  summary: PullSummary,
  run?: RunTally & { interrupted?: boolean },
): string {
  const seconds = Math.max(summary.seconds, 0);
  const bytes = run?.transferred ?? summary.bytes;
  const rate = seconds > 0 ? bytes / seconds : 0;
  const told = [
    ...(run && run.resumed > 0 ? [`${formatBytes(run.resumed)} resumed`] : []),
    ...(run && run.holes > 0 ? [`${formatBytes(run.holes)} of holes`] : []),
  ];
  const resumed = told.length > 0 ? ` (${told.join(", ")})` : "";
  const kept = run?.interrupted
    ? `, ${formatBytes(run.kept)} kept for resume`
    : "";
  return `hsync: ${run?.interrupted ? "interrupted: " : ""}${summary.files} ${
    summary.files === 1 ? "file" : "files"
  }, ${formatBytes(bytes)}${resumed} in ${formatSeconds(seconds)} (${
    formatRate(rate)
  }), ${summary.skipped} skipped, ${summary.failed} failed${
    notTransferred(summary) > 0
      ? `, ${notTransferred(summary)} not transferred`
      : ""
  }${summary.deleted ? `, ${summary.deleted} deleted` : ""}${kept}`;
}

/**
 * The line of a `--dry-run` plan event (for standard output: it is what the
 * run was asked for); undefined for any other event.
 */
export function planLine(event: PullEvent): string | undefined {
  if (event.type !== "plan") return undefined;
  const size = event.action === "transfer"
    ? ` (${formatBytes(event.bytes)})`
    : "";
  return `would ${event.action} ${printable(event.path)}${size}`;
}

/** Entries asked for that were left out (named or withheld), not counting failures. */
export function notTransferred(summary: PullSummary): number {
  return (summary.omissions?.length ?? 0) + (summary.withheld ?? 0);
}

/**
 * The lines before the summary of a run with omissions: each named
 * omission, then how many entries the server's rules withheld (failures
 * were printed as they happened, and are listed by name after the summary).
 */
export function formatOutcomes(summary: PullSummary): string[] {
  const lines: string[] = [];
  for (const o of summary.omissions ?? []) {
    lines.push(
      `hsync: not transferred: ${printable(o.path)}: ${printable(o.message)}`,
    );
  }
  if ((summary.withheld ?? 0) > 0) {
    lines.push(
      `hsync: not transferred: ${summary.withheld} ${
        summary.withheld === 1 ? "entry" : "entries"
      } withheld by the server's rules`,
    );
  }
  return lines;
}

/** Names listed at most by {@linkcode formatFailedList}. */
export const FAILED_LIST_MAX = 20;

/**
 * The last lines of a run with failures: what failed, by name, one a line
 * (at most `max`, then how many more); none without failures.
 */
export function formatFailedList(
  summary: PullSummary,
  max = FAILED_LIST_MAX,
): string[] {
  const names = summary.failures.map((f) => f.path);
  if (names.length === 0) return [];
  const lines = [`hsync: failed (${names.length}):`];
  // Every line keeps the program's prefix, as each line of hsync's stderr does.
  for (const name of names.slice(0, max)) {
    lines.push(`hsync:   ${printable(name)}`);
  }
  if (names.length > max) lines.push(`hsync:   and ${names.length - max} more`);
  return lines;
}

/** Bytes per second over a sliding window of a few seconds. */
export class RateMeter {
  readonly #now: () => number;
  readonly #windowMs: number;
  #samples: Array<[number, number]> = [];
  #total = 0;

  constructor(now: () => number, windowMs = 5000) {
    this.#now = now;
    this.#windowMs = windowMs;
    this.#samples.push([now(), 0]);
  }

  /** Records `bytes` more at the current time. */
  add(bytes: number): void {
    this.#total += bytes;
    const t = this.#now();
    const last = this.#samples[this.#samples.length - 1];
    // One sample per 100 ms keeps the window small however many events come.
    if (t - last[0] < 100 && this.#samples.length > 1) last[1] = this.#total;
    else this.#samples.push([t, this.#total]);
    while (
      this.#samples.length > 2 && t - this.#samples[1][0] > this.#windowMs
    ) this.#samples.shift();
  }

  /** Bytes per second over the window (0 before half a second has passed). */
  get rate(): number {
    const t = this.#now();
    const [t0, b0] = this.#samples[0];
    const elapsed = (t - t0) / 1000;
    // Less than half a second of data says nothing about the rate.
    return elapsed >= 0.5 ? Math.max(0, (this.#total - b0) / elapsed) : 0;
  }
}

function toWriter(sink: Sink): (text: string) => void {
  if (typeof sink === "function") return sink;
  const writer = sink.getWriter();
  const encoder = new TextEncoder();
  return (text) => {
    writer.write(encoder.encode(text)).catch(() => {});
  };
}
