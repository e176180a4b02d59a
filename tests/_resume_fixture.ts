/** Test fixture for resume and verify tests: the real hsyncd handler on loopback, with faults injected per file request and the bytes served counted. */
import { join } from "node:path";
import defaults from "../hsync.ini" with { type: "text" };
import { clientSettings, loadConfig } from "../lib/shared/config.ts";
import { pull, type PullEvent, type PullOptions } from "../lib/client/pull.ts";
import { realHandler } from "./_real_server.ts";

/** One `GET /v1/file` request as the server saw it. */
export interface FileRequest {
  /** 0-based over the server's life. */
  n: number;
  path: string;
  range: string | null;
  ifRange: string | null;
  status: number;
}

/** What to do to the body of one file response. */
export interface BodyFault {
  /** Hand out this many body bytes, then nothing more until released or cancelled. */
  stallAfter?: number;
  /** Flip the bits of the body byte at this offset (from the body's start). */
  corruptAt?: number;
}

/** A running controlled server, stopped by `await using`. */
export interface ControlledServer extends AsyncDisposable {
  baseUrl: string;
  port: number;
  /** Body bytes of file responses handed to the connection since the last `resetCounts()`. */
  readonly served: number;
  /** File requests since the last `resetCounts()`. */
  readonly fileRequests: FileRequest[];
  /** Hash requests since the last `resetCounts()`. */
  readonly hashRequests: number;
  /** Decides the fault of each file response; none by default. */
  onFile?: (request: FileRequest) => BodyFault | undefined;
  /** Replaces the answer to a hash request (the n-th, 0-based over the server's life). */
  onHash?: (n: number) => Response | undefined;
  /** Listing requests since the server started: the `after` of each (null without). */
  readonly listAfters: Array<string | null>;
  /** Paths asked for in bundle requests since the server started. */
  readonly bundlePaths: string[];
  /** Every request since the server started: its endpoint and the client's port (one per connection). */
  readonly requests: Array<{ endpoint: string; port: number }>;
  /** Cuts the n-th listing (0-based) after this many lines: its body ends in an error. */
  onList?: (n: number) => number | undefined;
  /** Replaces the bytes of a bundle response (the whole body, buffered). */
  onBundle?: (body: Uint8Array<ArrayBuffer>) => Uint8Array<ArrayBuffer>;
  resetCounts(): void;
  /** Ends every stalled body with an error. */
  releaseStalls(): void;
  close(): Promise<void>;
}

/** Serves `root` with the real handler (Only_allowed_path = root) on an ephemeral loopback port. */
export async function startControlledServer(
  root: string,
): Promise<ControlledServer> {
  const { handler, hsyncDir } = await realHandler(root);
  const stalls = new Set<() => void>();
  let served = 0;
  let fileRequests: FileRequest[] = [];
  let hashRequests = 0;
  let fileCount = 0;
  let hashCount = 0;
  const listAfters: Array<string | null> = [];
  const bundlePaths: string[] = [];
  const requests: Array<{ endpoint: string; port: number }> = [];
  const self: ControlledServer = {
    listAfters,
    bundlePaths,
    requests,
    baseUrl: "",
    port: 0,
    get served() {
      return served;
    },
    get fileRequests() {
      return fileRequests;
    },
    get hashRequests() {
      return hashRequests;
    },
    resetCounts() {
      served = 0;
      fileRequests = [];
      hashRequests = 0;
    },
    releaseStalls() {
      for (const release of [...stalls]) release();
    },
    close: async () => {},
    [Symbol.asyncDispose]: async () => {},
  };
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request, info) => {
      const url = new URL(request.url);
      requests.push({
        endpoint: url.pathname,
        port: (info.remoteAddr as Deno.NetAddr).port,
      });
      if (url.pathname === "/v1/hash") {
        hashRequests++;
        const replaced = self.onHash?.(hashCount++);
        if (replaced !== undefined) return replaced;
      }
      if (url.pathname === "/v1/bundle") {
        const asked = await request.clone().json().catch(() => ({}));
        if (Array.isArray(asked.paths)) bundlePaths.push(...asked.paths);
      }
      let cut: number | undefined;
      if (url.pathname === "/v1/list") {
        cut = self.onList?.(listAfters.length);
        listAfters.push(url.searchParams.get("after"));
      }
      const response = await handler(request, info);
      if (cut !== undefined && response.body !== null) {
        return new Response(cutLines(response.body, cut), {
          status: response.status,
          headers: response.headers,
        });
      }
      if (url.pathname === "/v1/bundle" && self.onBundle && response.ok) {
        const body = new Uint8Array(await response.arrayBuffer());
        return new Response(self.onBundle(body), {
          status: response.status,
          headers: response.headers,
        });
      }
      if (url.pathname !== "/v1/file" || request.method !== "GET") {
        return response;
      }
      const record: FileRequest = {
        n: fileCount++,
        path: url.searchParams.get("path") ?? "",
        range: request.headers.get("range"),
        ifRange: request.headers.get("if-range"),
        status: response.status,
      };
      fileRequests.push(record);
      if (response.body === null) return response;
      const fault = self.onFile?.(record) ?? {};
      const length = Number(response.headers.get("content-length"));
      const body = wrapBody(
        response.body,
        length,
        fault,
        (n) => served += n,
        stalls,
      );
      return new Response(body, {
        status: response.status,
        headers: response.headers,
      });
    },
  );
  const port = server.addr.port;
  const close = async () => {
    self.releaseStalls();
    await server.shutdown();
    await Deno.remove(hsyncDir, { recursive: true }).catch(() => {});
  };
  return Object.assign(self, {
    baseUrl: `http://127.0.0.1:${port}`,
    port,
    close,
    [Symbol.asyncDispose]: close,
  });
}

/** The first `lines` lines of an NDJSON body, then an error (the connection is cut). */
function cutLines(
  body: ReadableStream<Uint8Array>,
  lines: number,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  let left = lines;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (left === 0) {
        await reader.cancel().catch(() => {});
        controller.error(new Error("listing cut"));
        return;
      }
      const { done, value } = await reader.read();
      if (done) {
        controller.close();
        return;
      }
      const text = decoder.decode(value, { stream: true });
      let end = 0;
      while (left > 0 && end < text.length) {
        end = text.indexOf("\n", end) + 1;
        if (end === 0) end = text.length;
        else left--;
      }
      controller.enqueue(encoder.encode(text.slice(0, end)));
    },
    cancel() {
      return reader.cancel().catch(() => {});
    },
  }, { highWaterMark: 0 });
}

/**
 * The body as sent, with `fault` applied: at most `length` bytes (its
 * `content-length`), as `Deno.serve` sends of a file body that reads on past
 * its range.
 */
function wrapBody(
  body: ReadableStream<Uint8Array>,
  length: number,
  fault: BodyFault,
  count: (n: number) => void,
  stalls: Set<() => void>,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let sent = 0;
  let release: (() => void) | undefined;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (fault.stallAfter !== undefined && sent >= fault.stallAfter) {
        await new Promise<void>((resolve) => {
          release = () => {
            stalls.delete(release!);
            resolve();
          };
          stalls.add(release);
        });
        await reader.cancel().catch(() => {});
        try {
          controller.error(new Error("stalled body released"));
        } catch {
          // already cancelled
        }
        return;
      }
      const { done, value } = await reader.read();
      if (done || sent >= length) {
        if (!done) await reader.cancel().catch(() => {});
        controller.close();
        return;
      }
      let chunk = value.subarray(0, length - sent);
      if (
        fault.stallAfter !== undefined && sent + chunk.length > fault.stallAfter
      ) chunk = chunk.subarray(0, fault.stallAfter - sent);
      const at = fault.corruptAt;
      if (at !== undefined && at >= sent && at < sent + chunk.length) {
        chunk = chunk.slice();
        chunk[at - sent] ^= 0xff;
      }
      sent += chunk.length;
      count(chunk.length);
      if (chunk.length > 0) controller.enqueue(chunk);
    },
    cancel() {
      release?.();
      return reader.cancel().catch(() => {});
    },
  }, { highWaterMark: 0 });
}

/** Deterministic bytes that differ per seed and per position. */
export function bytes(size: number, seed: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** True when both hold the same bytes. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a).equals(Buffer.from(b));
}

/** Bytes a journal records as on disk, flushed or not (0 when there is none). */
export async function journalCovered(journalPath: string): Promise<number> {
  try {
    const j = JSON.parse(await Deno.readTextFile(journalPath));
    let n = 0;
    for (const [a, b] of [...j.done, ...(j.unflushed ?? [])]) n += b - a;
    return n;
  } catch {
    return 0;
  }
}

/** Names below `root` that hsync uses for unfinished work (part files, journals, their temporary files). */
export async function leftovers(root: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(dir: string, rel: string) {
    for await (const e of Deno.readDir(dir)) {
      const r = rel === "" ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory) await walk(join(dir, e.name), r);
      else if (/\.hsync-(part|journal)/.test(e.name)) out.push(r);
    }
  }
  await walk(root, "");
  return out.sort();
}

/**
 * `pull()` with test settings (1 MiB parts, at most 4, 5 s timeout, 2 retries,
 * 1 ms first back-off, overridable by ini key) and every event recorded (and
 * passed on to `options.onEvent`).
 */
export async function runPull(
  options: Partial<PullOptions> & {
    baseUrl: string;
    remotePath: string;
    localPath: string;
  },
  settings: Record<string, string> = {},
): Promise<{ summary: Awaited<ReturnType<typeof pull>>; events: PullEvent[] }> {
  const config = await loadConfig({ defaults, hsyncDir: "/nonexistent-hsync" });
  const events: PullEvent[] = [];
  const summary = await pull({
    settings: clientSettings(config, "hscp", {
      Min_part_size: "1M",
      Max_part_num: "4",
      Data_timeout: "5",
      Max_timeout_retry: "2",
      ...settings,
    }),
    parallelFiles: 4,
    retryBaseMs: 1,
    ...options,
    onEvent: (e) => {
      events.push(e);
      options.onEvent?.(e);
    },
  });
  return { summary, events };
}
