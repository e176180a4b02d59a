/** The log of hsyncd: one access line per request plus lifecycle lines, to a rotated file or a stream. */
import {
  configure,
  dispose,
  getLogger,
  getStreamSink,
  type LogRecord,
  type Sink,
} from "@logtape/logtape";
import { getRotatingFileSink } from "@logtape/file";
import { dirname } from "node:path";
import { ConfigError } from "./errors.ts";
import type { AccessLogEntry } from "./server.ts";

/** Options of {@linkcode openServerLog}. */
export interface ServerLogOptions {
  /** Log file, rotated by size; without one, lines go to `stream`. */
  file?: string;
  /** Size at which the file is rotated (`Log_max_bytes`). */
  maxBytes: number;
  /** Rotated files kept (`Log_keep`); 0 keeps none. */
  keep: number;
  /** Destination without a file (the caller passes stderr); it is not closed. */
  stream?: WritableStream<Uint8Array>;
  /** Most milliseconds a line waits in the buffer before it is written. Default 1000. */
  flushIntervalMs?: number;
}

/** The server's log. */
export interface ServerLog {
  /** The log file, or undefined when lines go to the stream. */
  readonly file?: string;
  /** One line for one answered request. */
  access(entry: AccessLogEntry): void;
  /** A lifecycle line. */
  info(message: string): void;
  /** A line that needs the operator's attention. */
  warn(message: string): void;
  /** A failure. */
  error(message: string): void;
  /** Writes out what is buffered and closes the file. */
  close(): Promise<void>;
}

const CATEGORY = "hsyncd";

/**
 * Opens the log (logtape is configured process-wide, so there is one at a
 * time). Throws {@linkcode ConfigError} when the file cannot be opened.
 */
export async function openServerLog(
  options: ServerLogOptions,
): Promise<ServerLog> {
  let sink: Sink;
  if (options.file !== undefined) {
    try {
      await Deno.mkdir(dirname(options.file), { recursive: true });
      sink = getRotatingFileSink(options.file, {
        formatter: formatRecord,
        maxSize: options.maxBytes,
        maxFiles: options.keep,
        // A buffer larger than a quarter of the file would overshoot the size limit.
        bufferSize: Math.max(
          1,
          Math.min(8192, Math.floor(options.maxBytes / 4)),
        ),
        flushInterval: options.flushIntervalMs ?? 1000,
        nonBlocking: true,
      });
    } catch (error) {
      throw new ConfigError(
        `Cannot open log file "${options.file}": ${reason(error)}`,
      );
    }
  } else {
    sink = getStreamSink(options.stream ?? new WritableStream(), {
      formatter: formatRecord,
      closeStream: false,
    });
  }
  await configure({
    reset: true,
    sinks: { out: sink },
    loggers: [
      { category: CATEGORY, sinks: ["out"], lowestLevel: "info" },
      { category: ["logtape", "meta"], sinks: ["out"], lowestLevel: "warning" },
    ],
  });
  const logger = getLogger(CATEGORY);
  return {
    file: options.file,
    access: (entry) => logger.info("{access}", { access: entry }),
    info: (line) => logger.info("{line}", { line }),
    warn: (line) => logger.warn("{line}", { line }),
    error: (line) => logger.error("{line}", { line }),
    close: () => dispose(),
  };
}

/**
 * One access line: `TIME REMOTE METHOD TARGET STATUS BYTES MSms`, with `-`
 * for an unknown size, e.g.
 * `2026-11-23T10:00:00.000Z 127.0.0.1 GET /v1/file?path=%2Fa 206 1048576 12ms`.
 */
export function formatAccessLine(entry: AccessLogEntry): string {
  return [
    entry.time.toISOString(),
    oneWord(entry.remote),
    oneWord(entry.method),
    oneWord(target(entry.url)),
    entry.status,
    entry.bytes ?? "-",
    `${Math.round(entry.ms)}ms`,
  ].join(" ");
}

const LEVELS: Record<string, string> = {
  trace: "TRACE",
  debug: "DEBUG",
  info: "INFO",
  warning: "WARN",
  error: "ERROR",
  fatal: "FATAL",
};

/** Lifecycle lines: `TIME LEVEL MESSAGE`; access lines as {@linkcode formatAccessLine}. */
function formatRecord(record: LogRecord): string {
  const access = record.properties.access as AccessLogEntry | undefined;
  if (access !== undefined) return formatAccessLine(access) + "\n";
  const line = record.properties.line ?? record.message.join("");
  const text = String(line).replace(/[\r\n]+/g, " ");
  return `${new Date(record.timestamp).toISOString()} ${
    LEVELS[record.level]
  } ${text}\n`;
}

/** Path and query of a URL (the scheme and host add nothing to a server's own log). */
function target(url: string): string {
  if (!/^[a-z]+:\/\//i.test(url)) return url;
  try {
    const u = new URL(url);
    return u.pathname + u.search;
  } catch {
    return url;
  }
}

/** Keeps a field one word, so every request is exactly one line. */
function oneWord(text: string): string {
  return text === ""
    ? "-"
    : text.replace(/[\s\p{Cc}]/gu, (c) => encodeURIComponent(c));
}

function reason(error: unknown): string {
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.NotFound) return "no such directory";
  return error instanceof Error ? error.message : String(error);
}
