/** `/v1/list`: a directory tree as NDJSON lines, walked name by name through the jail, resumable after a cut. */
import { HttpError } from "../../shared/errors.ts";
import type { Release } from "../../shared/limiter.ts";
import { API, type EntryType, type ListEntry } from "../../shared/wire.ts";
import { waitForSlot } from "../admission.ts";
import type { Endpoint, ServerContext } from "../context.ts";
import type { DirectoryReads } from "../directory_reads.ts";
import { baseHeaders, requirePath } from "../http.ts";
import type { CheckedPath, PathGuard } from "../jail/path_guard.ts";
import { checkRelative, statEntry } from "./_checked.ts";

/** `GET /v1/list?path=[&after=]`: every entry under a directory, one JSON line each. */
export const listEndpoint: Endpoint = {
  path: API.list,
  methods: ["GET", "HEAD"],
  run: list,
};

/** Entries looked at per directory read through the jail (one synchronous section). */
const LIST_BATCH = 256;
const encoder = new TextEncoder();

async function list(ctx: ServerContext, request: Request, url: URL) {
  const checked = await ctx.guard.check(requirePath(url));
  if (checked.type !== "dir") {
    throw new HttpError(
      400,
      "not_a_directory",
      `Cannot list ${JSON.stringify(checked.path)}: it is not a directory`,
    );
  }
  const after = listCursor(url.searchParams.get("after"));
  // Per peer first: one peer's listings wait in its own line.
  const release = await waitForSlot(ctx, ctx.listings, request, "list");
  try {
    const headers = baseHeaders("application/x-ndjson; charset=utf-8");
    headers.set("cache-control", "no-store");
    return new Response(
      listStream(ctx.guard, ctx.directoryReads, checked, after, release),
      { headers },
    );
  } catch (error) {
    release();
    throw error;
  }
}

/**
 * The `after` of a listing: the path (relative to the listed directory) of
 * the last entry a client got before the listing was cut, as components.
 */
function listCursor(after: string | null): string[] {
  return after === null
    ? []
    : checkRelative(after, "list after", "bad_request");
}

interface Pending {
  /** The kernel's path of the directory. */
  real: string;
  rel: string;
  /** `lstat` of the directory when it was found: it must still be that very directory when entered. */
  info: Deno.FileInfo;
  /** Where a resumed listing picks up inside this directory (see `listStream`). */
  after?: string[];
}

interface Level extends Pending {
  /** The directory's names, sorted (so a cut listing can resume). */
  names: string[];
  /** Next name to describe. */
  next: number;
  /** Subdirectories found, entered in order once every entry is listed. */
  subdirs: Pending[];
}

function identity(info: Deno.FileInfo): string {
  return `${info.dev}:${info.ino ?? 0}`;
}

/** One listed entry: its line, and the way down when it is a directory. */
interface Described {
  line: ListEntry;
  descend?: Pending;
}

/**
 * Walks a checked directory: all entries of a directory, sorted by name, in
 * batches, then each of its subdirectories the same way. Memory depends on
 * depth and on the names of the directories on the way, not on the size of
 * the tree. Refused entries, non-regular entries and symlinks that fail the
 * rules are left out; a symlink to a directory being walked (a loop) is left
 * out; unreadable directories are skipped.
 *
 * Every directory is read, and its entries looked at, through the jail's
 * proof (lib/server/jail/path_guard.ts): only when its path still leads to the very
 * directory that was found; a directory swapped for a symlink meanwhile is
 * listed as empty, never from where the link points.
 *
 * The order is fixed by the names, so `after` (the last path a client got)
 * says exactly what it has: every entry of each directory on the way to
 * `after` and the subdirectories before it, and in `after`'s own directory
 * the entries up to it. The walk resumes from there; entries that appeared
 * in that part since are not listed, like a snapshot.
 */
function listStream(
  guard: PathGuard,
  reads: DirectoryReads,
  root: CheckedPath,
  after: string[],
  release: Release,
): ReadableStream<Uint8Array> {
  const stack: Level[] = [];
  const onStack = new Set<string>();

  async function enter(p: Pending): Promise<void> {
    // Unreadable, vanished or swapped directory: listed empty.
    const names = await reads.run(() =>
      guard.readDirectory({ realPath: p.real, info: p.info }, reads) ?? []
    );
    const level: Level = { ...p, names, next: 0, subdirs: [] };
    const at = p.after?.[0];
    // An ancestor of the cut: its entries before the way down were listed
    // and walked, and so were their subdirectories.
    if (at !== undefined && p.after!.length > 1) {
      while (level.next < names.length && names[level.next] < at) {
        level.next++;
      }
    }
    stack.push(level);
    onStack.add(identity(p.info));
  }

  function leave(): void {
    const level = stack.pop();
    if (level !== undefined) onStack.delete(identity(level.info));
  }

  /** Whether the client already has the line of `name`, an entry of `level`. */
  function listedBefore(level: Level, name: string): boolean {
    const after = level.after;
    if (after === undefined) return false;
    return after.length > 1 || name <= after[0];
  }

  /** The line of one entry of `level` (and the way down when it is a directory); undefined when it is not listed. */
  function describe(
    level: Level,
    name: string,
    info: Deno.FileInfo | undefined,
  ): Described | undefined {
    if (info === undefined) return undefined;
    if (info.isSymlink) {
      try {
        const checked = guard.checkSync(
          level.real === "/" ? `/${name}` : `${level.real}/${name}`,
        );
        return lineOf(
          level,
          name,
          checked.info,
          checked.type,
          checked.realPath,
        );
      } catch {
        return undefined;
      }
    }
    if (!info.isFile && !info.isDirectory) return undefined;
    if (!guard.allowsEntry(level.real, name)) return undefined;
    const real = level.real === "/" ? `/${name}` : `${level.real}/${name}`;
    return lineOf(level, name, info, info.isFile ? "file" : "dir", real);
  }

  function lineOf(
    level: Level,
    name: string,
    info: Deno.FileInfo,
    type: EntryType,
    real: string,
  ): Described | undefined {
    const rel = level.rel === "" ? name : `${level.rel}/${name}`;
    const line: ListEntry = { path: rel, ...statEntry(info, type) };
    if (type !== "dir") return { line };
    if (onStack.has(identity(info))) return undefined;
    const descend: Pending = { real, rel, info };
    // The way down to the cut goes on inside this directory.
    const after = level.after;
    if (after !== undefined && after.length > 1 && name === after[0]) {
      descend.after = after.slice(1);
    }
    return { line, descend };
  }

  return new ReadableStream<Uint8Array>({
    async start() {
      await enter({
        real: root.realPath,
        rel: "",
        info: root.info,
        after: after.length > 0 ? after : undefined,
      });
    },
    async pull(controller) {
      while (stack.length > 0) {
        const top = stack[stack.length - 1];
        if (top.next >= top.names.length) {
          const sub = top.subdirs.shift();
          if (sub === undefined) leave();
          else if (!onStack.has(identity(sub.info))) await enter(sub);
          continue;
        }
        const batch = top.names.slice(top.next, top.next + LIST_BATCH);
        top.next += batch.length;
        const infos = guard.describeEntries(
          { realPath: top.real, info: top.info },
          batch,
        );
        if (infos === undefined) {
          // The directory is not what it was any more: nothing more from it.
          top.names = [];
          top.subdirs = [];
          continue;
        }
        let text = "";
        for (let i = 0; i < batch.length; i++) {
          const d = describe(top, batch[i], infos[i]);
          if (d === undefined) continue;
          if (!listedBefore(top, batch[i])) {
            text += JSON.stringify(d.line) + "\n";
          }
          if (d.descend !== undefined) top.subdirs.push(d.descend);
        }
        if (top.next >= top.names.length) top.names = [];
        if (text !== "") {
          controller.enqueue(encoder.encode(text));
          return;
        }
      }
      controller.close();
      release();
    },
    cancel() {
      stack.length = 0;
      onStack.clear();
      release();
    },
  });
}
