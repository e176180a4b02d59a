/** The text of one progress line (bar, phase, bytes, rate, ETA, files, name) cut to a terminal's width, and the number formats it and the summary use. */

import type { HashPhase } from "./transfer.ts";

/** Counters shown by the bar and the plain lines. */
export interface ProgressState {
  bytesDone: number;
  bytesTotal: number;
  filesDone: number;
  filesTotal: number;
  /** True once the listing is complete (the totals will not grow). */
  totalFinal: boolean;
  /** Bytes per second over the last few seconds (this run's bytes only). */
  rate: number;
  failed: number;
  /**
   * Hashing that is not a transfer (`--checksum` comparing, `--verify`
   * checking what arrived): shown instead of the bytes while it runs.
   */
  hashing?: { phase: HashPhase; done: number; total: number };
  /** The entry last finished (shortened or left out when the line is narrow). */
  name?: string;
}

/** Columns of a terminal when it cannot be asked (not a terminal, or the query fails). */
export const DEFAULT_COLUMNS = 80;

/**
 * The longest line for a terminal `columns` wide: one less, because a line
 * that fills the last column makes some terminals wrap (and every redraw
 * then adds a screen line).
 */
export function lineWidthFor(columns: number): number {
  return Math.max(10, Math.floor(columns) - 1);
}

/**
 * `[#####-----]  45% 1.2 GiB/2.7 GiB 350.2 MB/s ETA 0:04 files 12/40 NAME`,
 * never wider than `width` columns: the name is shortened in the middle, then
 * the fields that matter least are dropped (name, bar, files, rate).
 */
export function formatBarLine(state: ProgressState, width = 79): string {
  const f = fieldsOf(state);
  // Richest first; the first that fits is used.
  const layouts: Array<Array<string | undefined>> = [
    [f.bar(20), f.phase, f.percent, f.bytes, f.rate, f.eta, f.files, f.failed],
    [f.bar(10), f.phase, f.percent, f.bytes, f.rate, f.eta, f.files, f.failed],
    [f.phase, f.percent, f.bytes, f.rate, f.eta, f.files, f.failed],
    [f.phase, f.percent, f.bytes, f.eta, f.files, f.failed],
    [f.phase, f.percent, f.bytes, f.eta, f.failed],
    [f.phase, f.percent, f.eta],
    [f.phase, f.percent],
    [f.percent],
  ];
  for (const [i, layout] of layouts.entries()) {
    const line = layout.filter((x) => x !== undefined).join(" ");
    const free = width - displayWidth(line) - 1;
    if (i === 0 && state.name !== undefined && free >= 12) {
      return `${line} ${shortenMiddle(state.name, free)}`;
    }
    if (displayWidth(line) <= width) return line;
  }
  return cutToWidth(f.percent, width);
}

/** `45% 1.2 GiB/2.7 GiB 350.2 MB/s ETA 0:04 files 12/40` (`+` after totals still growing), for plain lines. */
export function formatProgressLine(state: ProgressState): string {
  const f = fieldsOf(state);
  return [f.phase, f.percent, f.bytes, f.rate, f.eta, f.files, f.failed]
    .filter((x) => x !== undefined).join(" ");
}

function fieldsOf(state: ProgressState) {
  const more = state.totalFinal ? "" : "+";
  const h = state.hashing;
  const [done, total] = h ? [h.done, h.total] : [
    state.bytesDone,
    state.bytesTotal,
  ];
  const fraction = total > 0 ? Math.min(1, Math.max(0, done / total)) : 0;
  // The ETA of a transfer needs the final total; hashing has no rate of its own.
  const eta = !h && state.rate > 0 && state.totalFinal
    ? formatDuration((state.bytesTotal - state.bytesDone) / state.rate)
    : "-:--";
  return {
    bar(cells: number): string {
      const full = Math.round(fraction * cells);
      return `[${"#".repeat(full)}${"-".repeat(cells - full)}]`;
    },
    phase: h?.phase,
    percent: `${String(Math.floor(fraction * 100)).padStart(3)}%`,
    bytes: h
      ? `${formatBytes(done)}/${formatBytes(total)}`
      : `${formatBytes(done)}/${formatBytes(total)}${more}`,
    rate: h ? undefined : formatRate(state.rate),
    eta: h ? undefined : `ETA ${eta}`,
    files: `files ${state.filesDone}/${state.filesTotal}${more}`,
    failed: state.failed > 0 ? `failed ${state.failed}` : undefined,
  };
}

/** Columns `text` takes on a terminal (wide East Asian characters take two, combining marks none). */
export function displayWidth(text: string): number {
  let width = 0;
  for (const c of text) width += charWidth(c.codePointAt(0)!);
  return width;
}

/** `text` in at most `width` columns, its middle replaced by `…` when it does not fit. */
export function shortenMiddle(text: string, width: number): string {
  if (displayWidth(text) <= width) return text;
  if (width <= 1) return width === 1 ? "…" : "";
  const chars = [...text];
  const room = width - 1;
  const head = cutToWidth(text, Math.ceil(room / 2));
  let used = displayWidth(head);
  let tail = "";
  for (let i = chars.length - 1; i >= 0; i--) {
    const w = charWidth(chars[i].codePointAt(0)!);
    if (used + w > room) break;
    tail = chars[i] + tail;
    used += w;
  }
  return `${head}…${tail}`;
}

function cutToWidth(text: string, width: number): string {
  let out = "";
  let used = 0;
  for (const c of text) {
    const w = charWidth(c.codePointAt(0)!);
    if (used + w > width) break;
    out += c;
    used += w;
  }
  return out;
}

function charWidth(code: number): number {
  // Combining marks and zero-width characters take no column.
  if (
    (code >= 0x300 && code <= 0x36f) || (code >= 0x200b && code <= 0x200f) ||
    (code >= 0xfe00 && code <= 0xfe0f)
  ) return 0;
  const wide = (code >= 0x1100 && code <= 0x115f) ||
    (code >= 0x2e80 && code <= 0xa4cf) || (code >= 0xac00 && code <= 0xd7a3) ||
    (code >= 0xf900 && code <= 0xfaff) || (code >= 0xfe30 && code <= 0xfe4f) ||
    (code >= 0xff00 && code <= 0xff60) || (code >= 0xffe0 && code <= 0xffe6) ||
    (code >= 0x1f300 && code <= 0x1faff) ||
    (code >= 0x20000 && code <= 0x3fffd);
  return wide ? 2 : 1;
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
