/** The log of hsyncd: one access line per request plus lifecycle lines, to a rotated file or a stream. */
import {
  configure,
  dispose,
  getLogger,
  getStreamSink,
  type LogRecord,
  type Sink,
} from "@logtape/logtape";
import { dirname } from "node:path";
import { ConfigError } from "../shared/errors.ts";
import { writeAllSync } from "../shared/write_all.ts";
import type { AccessLogEntry } from "./handler.ts";

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
  /**
   * Told in one line when the file stops taking lines (for instance a
   * symlink was planted at its name at a rotation); lines are dropped until
   * it takes them again. Not told again until it did.
   */
  onWriteError?: (line: string) => void;
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
      sink = rotatingFileSink(options.file, {
        maxBytes: options.maxBytes,
        keep: options.keep,
        // A buffer larger than a quarter of the file would overshoot the size limit.
        bufferSize: Math.max(
          1,
          Math.min(8192, Math.floor(options.maxBytes / 4)),
        ),
        flushIntervalMs: options.flushIntervalMs ?? 1000,
        onWriteError: options.onWriteError,
      });
    } catch (error) {
      throw new ConfigError(
        `Cannot open log file "${options.file}": ${logFileProblem(error)}`,
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

/** Why the log file cannot be opened or rotated, in a few words (the shared `reason()` says "no such file or directory"; here it is the directory that is missing). */
function logFileProblem(error: unknown): string {
  if (error instanceof NotTheFile) return error.message;
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.NotFound) return "no such directory";
  return error instanceof Error ? error.message : String(error);
}

/** The name is not the regular file a log may be written to; the message completes `Cannot open log file "X": ...`. */
class NotTheFile extends Error {}

/**
 * Throws {@linkcode ConfigError} when `path` exists and is not a regular file
 * (a symlink, a FIFO...), so `hsyncd start` refuses before detaching.
 */
export async function checkLogFileName(path: string): Promise<void> {
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.lstat(path);
  } catch {
    return; // Absent (created later) or unreadable: the server's open says why.
  }
  const problem = nameProblem(stat);
  if (problem !== undefined) {
    throw new ConfigError(`Cannot open log file "${path}": ${problem}`);
  }
}

/** Appends `text` to the log file without following a symlink planted at its name. */
export function appendLogLine(path: string, text: string): void {
  const file = openLogFile(path);
  try {
    writeAllSync(file, new TextEncoder().encode(text));
  } finally {
    file.close();
  }
}

function nameProblem(stat: Deno.FileInfo): string | undefined {
  if (stat.isSymlink) return "it is a symbolic link";
  if (!stat.isFile) return "it is not a regular file";
  if ((stat.nlink ?? 1) > 1) return `it has ${stat.nlink} hard links`;
  return undefined;
}

/**
 * Opens the log for appending, creating it (`0644`) when absent. Deno's open
 * follows a symlink even with O_NOFOLLOW, so a new file is created with
 * `createNew` (which fails on any name that exists, a symlink included), and
 * an existing one is checked before and after opening: the name must be a
 * regular file with one link, and the handle that very file (device and
 * inode). Throws {@linkcode NotTheFile} otherwise, having written nothing.
 */
function openLogFile(path: string): Deno.FsFile {
  try {
    return proven(
      path,
      Deno.openSync(path, { append: true, createNew: true, mode: 0o644 }),
    );
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
  }
  // Looked at before opening too: opening a planted FIFO would hang.
  const problem = nameProblem(Deno.lstatSync(path));
  if (problem !== undefined) throw new NotTheFile(problem);
  return proven(path, Deno.openSync(path, { append: true }));
}

/** `file` when it is the regular file now at `path`; else closes it and throws {@linkcode NotTheFile}. */
function proven(path: string, file: Deno.FsFile): Deno.FsFile {
  let problem: string | undefined;
  try {
    const opened = file.statSync();
    let named: Deno.FileInfo | undefined;
    try {
      named = Deno.lstatSync(path);
    } catch {
      named = undefined;
    }
    problem = named === undefined
      ? "it was removed while it was opened"
      : nameProblem(named) ??
        (opened.dev === named.dev && opened.ino === named.ino && opened.isFile
          ? undefined
          : "it was replaced while it was opened");
  } catch (error) {
    file.close();
    throw error;
  }
  if (problem !== undefined) {
    file.close();
    throw new NotTheFile(problem);
  }
  return file;
}

/** Options of {@linkcode rotatingFileSink}. */
interface RotatingOptions {
  maxBytes: number;
  keep: number;
  bufferSize: number;
  flushIntervalMs: number;
  onWriteError?: (line: string) => void;
}

/** logtape's marker for a sink that formats a record at once (no snapshot needed). */
const IMMEDIATE = Symbol.for("LogTape.sinkSnapshotPolicy.immediate");

/**
 * A size-rotated log file: lines are buffered, written at `bufferSize` bytes
 * or every `flushIntervalMs`; a write that would pass `maxBytes` first
 * renames FILE.N to FILE.N+1 (up to `keep`) and FILE to FILE.1 (renames
 * move a symlink, never its target), then opens FILE again through
 * {@linkcode openLogFile}. Throws when the file cannot be opened at first.
 */
function rotatingFileSink(
  path: string,
  options: RotatingOptions,
): Sink & AsyncDisposable {
  let file: Deno.FsFile | undefined = openLogFile(path);
  let size = file.statSync().size;
  let buffer = "";
  let failing = false;
  let disposed = false;
  let active: Promise<void> | undefined;
  let timer: ReturnType<typeof setInterval> | undefined;
  const encoder = new TextEncoder();

  function rotate(): void {
    file?.close();
    file = undefined;
    if (options.keep <= 0) {
      try {
        Deno.removeSync(path);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    } else {
      for (let i = options.keep - 1; i > 0; i--) {
        try {
          Deno.renameSync(`${path}.${i}`, `${path}.${i + 1}`);
        } catch {
          // A gap in the series is fine.
        }
      }
      try {
        Deno.renameSync(path, `${path}.1`);
      } catch (error) {
        // Removed by someone else: there is nothing to keep.
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    }
    size = 0;
  }

  async function flush(): Promise<void> {
    if (buffer === "") return;
    const bytes = encoder.encode(buffer);
    buffer = "";
    let doing = "write";
    try {
      if (
        file !== undefined && size > 0 && size + bytes.length > options.maxBytes
      ) {
        rotate();
      }
      if (file === undefined) {
        doing = "open";
        file = openLogFile(path);
        size = file.statSync().size;
        doing = "write";
      }
      writeAllSync(file, bytes);
      size += bytes.length;
      await file.sync();
      failing = false;
    } catch (error) {
      if (!failing) {
        options.onWriteError?.(
          `Cannot ${doing} log file "${path}": ${
            logFileProblem(error)
          }; its lines are dropped until it can be written`,
        );
      }
      failing = true;
    }
  }

  function schedule(): void {
    if (active !== undefined || disposed) return;
    active = flush().finally(() => {
      active = undefined;
      if (!disposed && buffer !== "") schedule();
    });
  }

  const sink = (record: LogRecord) => {
    if (disposed) return;
    buffer += formatRecord(record);
    if (buffer.length >= options.bufferSize) schedule();
    else if (timer === undefined) {
      timer = setInterval(schedule, options.flushIntervalMs);
      Deno.unrefTimer(timer);
    }
  };
  Object.defineProperty(sink, IMMEDIATE, { value: true });
  return Object.assign(sink, {
    async [Symbol.asyncDispose]() {
      disposed = true;
      clearInterval(timer);
      if (active !== undefined) await active;
      await flush();
      file?.close();
      file = undefined;
    },
  });
}
