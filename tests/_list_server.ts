/**
 * A fake hsyncd for pull tests of faithful copies (issue 19): it serves a
 * tree described in memory, speaking the contract of lib/shared/wire.ts
 * (`/v1/health`, `/v1/stat`, `/v1/list` with `links=1`, `hardlinks=1`,
 * `after` and omission lines, `/v1/file` with `Range` and `If-Range`,
 * `/v1/bundle`, `/v1/extents`, `/v1/hash`), and counts the file bytes it
 * sends.
 */
import defaults from "../hsync.ini" with { type: "text" };
import { pull, type PullEvent, type PullOptions } from "../lib/client/pull.ts";
import { encodeFrames } from "../lib/shared/bundle_codec.ts";
import { clientSettings, loadConfig } from "../lib/shared/config.ts";
import type {
  BundleHeader,
  BundleRequest,
  Extents,
  ListEntry,
  ListOmission,
} from "../lib/shared/wire.ts";

/** A file's bytes: read as ranges, so a file of 1 GiB takes no memory. */
export interface FakeContent {
  size: number;
  read(start: number, end: number): Uint8Array<ArrayBuffer>;
  /** Where its data is (for `/v1/extents`); all of it when absent. */
  data?: Array<[number, number]>;
}

/** A served entry (a file's bytes in `content`). */
export interface FakeEntry {
  path: string;
  type: "file" | "dir" | "symlink";
  mode?: number;
  mtime?: number;
  content?: FakeContent;
  target?: string;
  inode?: string;
  sparse?: boolean;
}

/** A line of the fake listing: an entry, or an omission sent as it is. */
export type FakeLine = FakeEntry | ListOmission;

/** Content of the given bytes. */
export function bytesContent(data: Uint8Array): FakeContent {
  return {
    size: data.length,
    read: (start, end) => new Uint8Array(data.subarray(start, end)),
  };
}

/** `size` bytes of zeros except `pieces` (offset, bytes), with the pieces as data extents rounded out to 4 KiB. */
export function sparseContent(
  size: number,
  pieces: Array<[number, Uint8Array]>,
): FakeContent {
  const data: Array<[number, number]> = pieces.map(([at, bytes]) => [
    Math.floor(at / 4096) * 4096,
    Math.min(size, Math.ceil((at + bytes.length) / 4096) * 4096),
  ]);
  return {
    size,
    data,
    read(start, end) {
      const out = new Uint8Array(end - start);
      for (const [at, bytes] of pieces) {
        for (let i = 0; i < bytes.length; i++) {
          const p = at + i;
          if (p >= start && p < end) out[p - start] = bytes[i];
        }
      }
      return out;
    },
  };
}

/** Options of {@linkcode listServer}. */
export interface ListServerOptions {
  /** The served directory (absolute, as pulled). */
  root: string;
  lines: FakeLine[];
  /** The first listing is cut (the connection broken) after this many lines. */
  cutAfter?: number;
  /** List `symlink` entries even when `links=1` was not asked (a broken server). */
  linksUnasked?: boolean;
  /** `/v1/glob`: the absolute paths each pattern matches (stat'ed from `lines`), or the error status it answers. */
  globs?: Record<string, string[] | number>;
  /** `/v1/stat` answers after this long, then logs `stat answered` (a far server's round trip). */
  statDelayMs?: number;
}

/** A running fake server. */
export interface ListServer extends AsyncDisposable {
  port: number;
  baseUrl: string;
  /** Every request: method, path and query. */
  log: string[];
  /** File bytes sent in `/v1/file` and `/v1/bundle` bodies. */
  sent: number;
}

const MTIME = 1_700_000_000_000;

function etagOf(e: FakeEntry): string {
  return `"${e.path}-${e.content?.size ?? 0}"`;
}

function isOmissionLine(line: FakeLine): line is ListOmission {
  return "omitted" in line;
}

function entryLine(e: FakeEntry, hardLinks: boolean): ListEntry {
  const line: ListEntry = {
    path: e.path,
    type: e.type,
    size: e.type === "file" ? e.content?.size ?? 0 : 0,
    mtime: e.mtime ?? MTIME,
    mode: e.mode ?? (e.type === "file" ? 0o644 : 0o755),
    etag: etagOf(e),
  };
  if (e.target !== undefined) line.target = e.target;
  if (hardLinks && e.inode !== undefined) line.inode = e.inode;
  if (e.sparse) line.sparse = true;
  return line;
}

function notFound(path: string | null): Response {
  return Response.json({
    error: "not_found",
    message: `No such path ${JSON.stringify(path)}`,
  }, { status: 404 });
}

/** Starts the fake server on an ephemeral loopback port. */
export function listServer(options: ListServerOptions): ListServer {
  const { root } = options;
  const entries = new Map<string, FakeEntry>();
  for (const line of options.lines) {
    if (!isOmissionLine(line)) entries.set(`${root}/${line.path}`, line);
  }
  let listings = 0;
  const state = { sent: 0 };
  const log: string[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request) => {
      const url = new URL(request.url);
      log.push(`${request.method} ${url.pathname}${url.search}`);
      const path = url.searchParams.get("path");
      switch (url.pathname) {
        case "/v1/health":
          return Response.json({
            name: "hsyncd",
            version: "0.0.0",
            api: 1,
            host: "fake",
          });
        case "/v1/stat": {
          if (options.statDelayMs !== undefined) {
            await new Promise((r) => setTimeout(r, options.statDelayMs));
            log.push("stat answered");
          }
          if (path === root) {
            return Response.json({
              type: "dir",
              size: 0,
              mtime: MTIME,
              mode: 0o755,
              etag: '"root"',
            });
          }
          const e = entries.get(path ?? "");
          if (e === undefined) return notFound(path);
          const { path: _, ...stat } = entryLine(e, false);
          return Response.json(stat);
        }
        case "/v1/list":
          if (path !== root) return notFound(path);
          return listing(url, listings++ === 0 ? options.cutAfter : undefined);
        case "/v1/extents": {
          const e = entries.get(path ?? "");
          if (e?.content === undefined) return notFound(path);
          const body: Extents = {
            size: e.content.size,
            etag: etagOf(e),
            data: e.content.data ?? [[0, e.content.size]],
          };
          return Response.json(body);
        }
        case "/v1/glob": {
          const pattern = url.searchParams.get("pattern") ?? "";
          const answer = options.globs?.[pattern] ?? 404;
          if (typeof answer === "number") {
            return Response.json({
              error: answer === 413 ? "too_many_matches" : "not_found",
              message: `Pattern ${JSON.stringify(pattern)}: ${answer}`,
            }, { status: answer });
          }
          const text = answer.map((p) => {
            const e = entries.get(p);
            const stat = e === undefined
              ? { type: "dir", size: 0, mtime: MTIME, mode: 0o755, etag: '"d"' }
              : entryLine(e, false);
            return JSON.stringify({ ...stat, path: p }) + "\n";
          });
          return new Response(text.join(""));
        }
        case "/v1/hash": {
          const e = entries.get(path ?? "");
          if (e?.content === undefined) return notFound(path);
          const offset = Number(url.searchParams.get("offset") ?? 0);
          const length = Number(
            url.searchParams.get("length") ?? e.content.size - offset,
          );
          const digest = await crypto.subtle.digest(
            "SHA-256",
            e.content.read(offset, offset + length),
          );
          const sha256 = [...new Uint8Array(digest)]
            .map((b) => b.toString(16).padStart(2, "0")).join("");
          return Response.json({ sha256, offset, length, etag: etagOf(e) });
        }
        case "/v1/file": {
          const e = entries.get(path ?? "");
          if (e?.content === undefined) return notFound(path);
          const size = e.content.size;
          const m = /^bytes=(\d+)-(\d+)$/.exec(
            request.headers.get("range") ?? "",
          );
          const ifRange = request.headers.get("if-range");
          const headers = { etag: etagOf(e) };
          if (m === null || (ifRange !== null && ifRange !== etagOf(e))) {
            state.sent += size;
            return new Response(e.content.read(0, size), { headers });
          }
          const start = Number(m[1]);
          const end = Math.min(Number(m[2]) + 1, size);
          state.sent += end - start;
          return new Response(e.content.read(start, end), {
            status: 206,
            headers: {
              ...headers,
              "content-range": `bytes ${start}-${end - 1}/${size}`,
            },
          });
        }
        case "/v1/bundle": {
          const req = await request.json() as BundleRequest;
          const frames = req.paths.map((p) => {
            const e = entries.get(`${req.root}/${p}`);
            if (e?.content === undefined) {
              return {
                header: { path: p, error: "not_found", message: "gone" },
                data: new Uint8Array(0),
              };
            }
            const line = entryLine(e, false);
            state.sent += e.content.size;
            return {
              header: {
                path: p,
                size: line.size,
                mtime: line.mtime,
                mode: line.mode,
                etag: line.etag,
              },
              data: e.content.read(0, e.content.size),
            };
          });
          frames.push({
            header: { end: true } as never,
            data: new Uint8Array(0),
          });
          return new Response(
            new Uint8Array(encodeFrames<BundleHeader>(frames)),
          );
        }
      }
      return notFound(url.pathname);
    },
  );

  function listing(url: URL, cutAfter: number | undefined): Response {
    const links = url.searchParams.get("links") === "1" ||
      options.linksUnasked === true;
    const hardLinks = url.searchParams.get("hardlinks") === "1";
    const after = url.searchParams.get("after");
    let lines = options.lines.filter((l) =>
      isOmissionLine(l) || l.type !== "symlink" || links
    );
    if (after !== null) {
      const at = lines.findIndex((l) => !isOmissionLine(l) && l.path === after);
      lines = lines.slice(at + 1);
    }
    const text = lines.map((l) =>
      JSON.stringify(isOmissionLine(l) ? l : entryLine(l, hardLinks)) + "\n"
    );
    const encoder = new TextEncoder();
    const whole = encoder.encode(text.join(""));
    const sent = encoder.encode(
      text.slice(0, cutAfter ?? text.length).join(""),
    );
    // A cut: the body ends before the length announced, and the connection is closed.
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(sent);
        controller.close();
      },
    });
    return new Response(body, {
      headers: {
        "content-type": "application/x-ndjson",
        "content-length": String(whole.length),
      },
    });
  }

  return {
    port: server.addr.port,
    baseUrl: `http://127.0.0.1:${server.addr.port}`,
    log,
    get sent() {
      return state.sent;
    },
    async [Symbol.asyncDispose]() {
      await server.shutdown();
    },
  };
}

/** The root the pull tests serve their fake tree at. */
export const ROOT = "/srv/data";

/** `pull()` of {@linkcode ROOT} from a fake server into `localPath` with test settings; its summary and every event. */
export async function run(
  baseUrl: string,
  localPath: string,
  extra: Partial<PullOptions> = {},
) {
  const config = await loadConfig({ defaults, hsyncDir: "/nonexistent-hsync" });
  const events: PullEvent[] = [];
  const summary = await pull({
    baseUrl,
    remotePath: ROOT,
    localPath,
    settings: clientSettings(config, "hscp", {
      Data_timeout: "5",
      Max_timeout_retry: "2",
    }),
    parallelFiles: 4,
    retryBaseMs: 1,
    onEvent: (e) => events.push(e),
    ...extra,
  });
  return { summary, events };
}

/** UTF-8 bytes of `s`. */
export function text(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}
