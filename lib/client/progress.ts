/** Turns pull events into a live bar (terminal), periodic plain lines (logs, pipes) or nothing (--quiet), and the final summary line. */
import type { PullEvent, PullSummary } from "./transfer.ts";
import { printable } from "./printable.ts";

/** Where the reporter writes: a function taking text, or a byte stream. */
export type Sink = ((text: string) => void) | WritableStream<Uint8Array>;

/** Options of {@linkcode createReporter}. */
export interface ReporterOptions {
  /** Output (stderr in hsync); lib/ never writes to the terminal itself. */
  write: Sink;
  /** Draw a live bar (true) or print a plain line now and then (false). */
  isTerminal: boolean;
  /** Print nothing at all. */
  quiet?: boolean;
  /** Milliseconds between plain lines (default 5000). */
  intervalMs?: number;
  /** Width of the terminal in columns (default 100). */
  columns?: number;
  /** Clock in milliseconds (default `performance.now`). */
  now?: () => number;
}

/** Receives pull events; `stop()` ends the bar or the timer (calling it twice is harmless). */
export interface Reporter {
  onEvent(event: PullEvent): void;
  stop(): void;
}

/** Counters shown by the bar and the plain lines. */
export interface ProgressState {
  bytesDone: number;
  bytesTotal: number;
  filesDone: number;
  filesTotal: number;
  /** True once the listing is complete (the totals will not grow). */
  totalFinal: boolean;
  /** Bytes per second over the last few seconds. */
  rate: number;
  failed: number;
}

/** Creates the reporter for one pull (the bar's library is loaded only for a terminal). */
export async function createReporter(
  options: ReporterOptions,
): Promise<Reporter> {
  if (options.quiet) return { onEvent() {}, stop() {} };
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
  let stopped = false;
  const columns = options.columns ?? 100;

  if (options.isTerminal) {
    const { default: cliProgress } = await import("cli-progress");
    // cli-progress only handles drawing and throttling; the line is ours.
    const stream = {
      isTTY: true,
      columns,
      write(text: string) {
        write(text);
        return true;
      },
    };
    const bar = new cliProgress.SingleBar({
      stream,
      format: () => formatBarLine(state, Math.min(columns, 100) - 1),
      gracefulExit: false,
      hideCursor: false,
      linewrap: true,
      clearOnComplete: true,
      fps: 5,
      etaBuffer: 50,
    });
    let started = false;
    const update = () => {
      state.rate = meter.rate;
      if (!started) {
        started = true;
        bar.start(Math.max(1, state.bytesTotal), state.bytesDone);
      } else {
        bar.setTotal(Math.max(1, state.bytesTotal));
        bar.update(state.bytesDone);
      }
    };
    return {
      onEvent(event) {
        if (stopped) return;
        if (apply(state, meter, event)) update();
        const line = eventLine(event);
        if (line !== undefined) write(`\x1b[1G\x1b[0K${line}\n`);
      },
      stop() {
        if (stopped) return;
        stopped = true;
        if (started) bar.stop();
      },
    };
  }

  const timer = setInterval(() => {
    state.rate = meter.rate;
    if (state.bytesTotal > 0 || state.filesTotal > 0) {
      write(`hsync: ${formatProgressLine(state)}\n`);
    }
  }, options.intervalMs ?? 5000);
  Deno.unrefTimer(timer);
  return {
    onEvent(event) {
      if (stopped) return;
      apply(state, meter, event);
      const line = eventLine(event);
      if (line !== undefined) write(`${line}\n`);
    },
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
    },
  };
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
      // Bytes found on disk from an interrupted pull are done, not a transfer rate.
      if (!event.resumed) meter.add(event.bytes);
      return true;
    case "done":
      state.filesDone++;
      return true;
    case "failure":
      state.failed++;
      return true;
    default:
      return false;
  }
}

/** Lines printed as they happen (failures are listed again by the caller at the end). */
function eventLine(event: PullEvent): string | undefined {
  if (event.type === "warning") {
    return `hsync: warning: ${printable(event.message)}`;
  }
  if (event.type === "deleted") {
    return `hsync: deleted ${printable(event.path)}`;
  }
  return undefined;
}

/** `[#####-----]  45% 1.2 GiB/2.7 GiB 350.2 MB/s ETA 0:04 files 12/40`, cut to `width`. */
export function formatBarLine(state: ProgressState, width = 99): string {
  const fraction = state.bytesTotal > 0
    ? Math.min(1, state.bytesDone / state.bytesTotal)
    : 0;
  const cells = 20;
  const full = Math.round(fraction * cells);
  const bar = "#".repeat(full) + "-".repeat(cells - full);
  const line = `[${bar}] ${formatProgressLine(state)}`;
  return line.length > width ? line.slice(0, width) : line;
}

/** `45% 1.2 GiB/2.7 GiB 350.2 MB/s ETA 0:04 files 12/40` (`+` after totals still growing). */
export function formatProgressLine(state: ProgressState): string {
  const more = state.totalFinal ? "" : "+";
  const percent = state.bytesTotal > 0
    ? Math.min(100, Math.floor(state.bytesDone / state.bytesTotal * 100))
    : 0;
  const eta = state.rate > 0 && state.totalFinal
    ? formatDuration((state.bytesTotal - state.bytesDone) / state.rate)
    : "-:--";
  const failed = state.failed > 0 ? ` failed ${state.failed}` : "";
  return `${String(percent).padStart(3)}% ${formatBytes(state.bytesDone)}/${
    formatBytes(state.bytesTotal)
  }${more} ${
    formatRate(state.rate)
  } ETA ${eta} files ${state.filesDone}/${state.filesTotal}${more}${failed}`;
}

/** The final line: `hsync: 41 files, 3.0 MiB in 0.42 s (7.49 MB/s), 0 skipped, 0 failed`. */
export function formatSummary(summary: PullSummary): string {
  const seconds = Math.max(summary.seconds, 0);
  const rate = seconds > 0 ? summary.bytes / seconds : 0;
  return `hsync: ${summary.files} ${summary.files === 1 ? "file" : "files"}, ${
    formatBytes(summary.bytes)
  } in ${formatSeconds(seconds)} (${
    formatRate(rate)
  }), ${summary.skipped} skipped, ${summary.failed} failed${
    notTransferred(summary) > 0
      ? `, ${notTransferred(summary)} not transferred`
      : ""
  }${summary.deleted ? `, ${summary.deleted} deleted` : ""}`;
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
 * The lines that end a run with failures or omissions: each failure and
 * each named omission, then how many entries the server's rules withheld.
 */
export function formatOutcomes(summary: PullSummary): string[] {
  const lines = summary.failures.map((f) =>
    `hsync: failed: ${printable(f.path)}: ${printable(f.message)}`
  );
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

/** `0 B`, `1023 B`, `1.0 KiB`, `12.3 MiB`, `1.50 GiB`. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = Math.max(0, bytes);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) return `${Math.round(value)} B`;
  return `${value < 10 ? value.toFixed(2) : value.toFixed(1)} ${units[unit]}`;
}

/** Decimal megabytes per second, as rsync and curl print them: `350.2 MB/s`. */
export function formatRate(bytesPerSecond: number): string {
  const mb = Math.max(0, bytesPerSecond) / 1e6;
  return `${mb < 10 ? mb.toFixed(2) : mb.toFixed(1)} MB/s`;
}

/** `0.42 s`, `12.3 s`, `754 s`. */
export function formatSeconds(seconds: number): string {
  if (seconds < 10) return `${seconds.toFixed(2)} s`;
  if (seconds < 100) return `${seconds.toFixed(1)} s`;
  return `${Math.round(seconds)} s`;
}

/** `0:04`, `12:30`, `2:03:04`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "-:--";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
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

  /** Bytes per second over the window (0 before any time has passed). */
  get rate(): number {
    const t = this.#now();
    const [t0, b0] = this.#samples[0];
    const elapsed = (t - t0) / 1000;
    return elapsed > 0 ? Math.max(0, (this.#total - b0) / elapsed) : 0;
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
