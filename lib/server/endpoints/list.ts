/** `/v1/list`: a directory tree as NDJSON lines, walked name by name through the jail, resumable after a cut. */
import { Breather } from "../../shared/breather.ts";
import { HttpError } from "../../shared/errors.ts";
import type { Release } from "../../shared/limiter.ts";
import { API, type ListLine } from "../../shared/wire.ts";
import { waitForSlot } from "../admission.ts";
import type { Endpoint, ServerContext } from "../context.ts";
import type { DirectoryReads } from "../directory_reads.ts";
import { baseHeaders, requirePath } from "../http.ts";
import type { CheckedPath, PathGuard } from "../jail/path_guard.ts";
import { checkRelative } from "./_checked.ts";
import {
  describeEntry,
  identity,
  type ListOptions,
  OMISSION_MESSAGES,
  unreadableLine,
  type WalkedDir,
} from "./list_lines.ts";

/**
 * `GET /v1/list?path=[&links=1][&hardlinks=1][&after=][&ifdir=1]`: every
 * entry under a directory, one JSON line each: listed, or left out and why.
 * With `ifdir=1` a path that is not a directory answers 204 and nothing
 * more (a client asks for a listing with the stat, before it knows).
 */
export const listEndpoint: Endpoint = {
  path: API.list,
  methods: ["GET", "HEAD"],
  run: list,
};

/** Entries looked at per directory read through the jail (one synchronous section). */
const LIST_BATCH = 256;
/**
 * Batches after which the listing turns the event loop at once, so that the
 * runtime writes them out: while a stream has its next chunk ready, Deno
 * holds the ones before it (2,000 entries on loopback: the first byte came
 * 11.5-15 ms after the request, 2.7 ms with a turn after the first batch,
 * the whole listing as fast). The first two: a tree's first batch is often
 * its top directories, the second its first files.
 */
const FLUSHED_BATCHES = 2;
const encoder = new TextEncoder();

async function list(ctx: ServerContext, request: Request, url: URL) {
  const checked = await ctx.guard.check(requirePath(url));
  if (checked.type !== "dir" && url.searchParams.get("ifdir") === "1") {
    return new Response(null, {
      status: 204,
      headers: baseHeaders("application/x-ndjson; charset=utf-8"),
    });
  }
  if (checked.type !== "dir") {
    throw new HttpError(
      400,
      "not_a_directory",
      `Cannot list ${JSON.stringify(checked.path)}: it is not a directory`,
    );
  }
  const after = listCursor(url.searchParams.get("after"));
  const options: ListOptions = {
    links: url.searchParams.get("links") === "1",
    hardLinks: url.searchParams.get("hardlinks") === "1",
  };
  // Per peer first: one peer's listings wait in its own line.
  const release = await waitForSlot(ctx, ctx.listings, request, "list");
  try {
    const headers = baseHeaders("application/x-ndjson; charset=utf-8");
    headers.set("cache-control", "no-store");
    return new Response(
      listStream(ctx.guard, ctx.directoryReads, checked, {
        after,
        options,
        release,
        turnMs: ctx.limits.turnMs,
      }),
      { headers },
    );
  } catch (error) {
    release();
    throw error;
  }
}

/** Whether `level` has entries or subdirectories left to list. */
function hasMore(level: Level): boolean {
  return level.next < level.names.length || level.subdirs.length > 0;
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

interface Pending extends WalkedDir {
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

/** How one listing runs: where it resumes, what it tells, and its slot. */
interface StreamOptions {
  after: string[];
  options: ListOptions;
  release: Release;
  /** Milliseconds of walking before the other requests get a turn. */
  turnMs: number;
}

/**
 * Walks a checked directory: all entries of a directory, sorted by name, in
 * batches, then each of its subdirectories the same way. Memory depends on
 * depth and on the names of the directories on the way, not on the size of
 * the tree.
 *
 * Nothing is left out in silence: each entry is a line, listed or omitted
 * (list_lines.ts says which and why) in its own place in the order; a
 * directory whose names cannot be read gets an `unreadable` line when the
 * walk enters it, before anything inside it. Only an entry that vanished
 * meanwhile has no line.
 *
 * Every directory is read, and its entries looked at, through the jail's
 * proof (lib/server/jail/path_guard.ts): only when its path still leads to the very
 * directory that was found; a directory swapped for a symlink meanwhile is
 * reported unreadable, never listed from where the link points.
 *
 * The order is fixed by the names, so `after` (the last path a client got)
 * says exactly what it has: every entry of each directory on the way to
 * `after` and the subdirectories before it, and in `after`'s own directory
 * the entries up to it. The walk resumes from there; entries that appeared
 * in that part since are not listed, like a snapshot. The rule is on names,
 * not lines: an omission line (a withheld one too, which has no path) is
 * skipped or sent again exactly as its entry's line would be.
 *
 * The walk lets the other requests in every `turnMs`: written into a fast
 * socket, a listing's batches would otherwise follow each other without a
 * turn of the event loop, and a stat sent while 10,000 entries were listed
 * was answered after all of them (100-140 ms; 8-12 ms with the turns).
 */
function listStream(
  guard: PathGuard,
  reads: DirectoryReads,
  root: CheckedPath,
  { after, options, release, turnMs }: StreamOptions,
): ReadableStream<Uint8Array> {
  const breather = new Breather(turnMs);
  let batches = 0;
  let finished = false;
  const done = () => {
    if (finished) return;
    finished = true;
    breather.close();
    release();
  };
  const stack: Level[] = [];
  const onStack = new Set<string>();
  const above = (info: Deno.FileInfo) => onStack.has(identity(info));

  /** Enters a directory; the line saying it cannot be read, if so. */
  async function enter(p: Pending): Promise<ListLine | undefined> {
    let problem: ListLine | undefined;
    let names: string[] = [];
    if (p.loop) {
      problem = {
        omitted: "unreadable",
        path: p.rel,
        message: OMISSION_MESSAGES.mountLoop,
      };
    } else {
      const read = await reads.run(() =>
        guard.readDirectory({ realPath: p.real, info: p.info }, reads)
      );
      if (Array.isArray(read)) names = read;
      else problem = unreadableLine(p.rel, read);
    }
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
    return problem;
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

  /** The way down from `level` into its entry `name`, resumed inside it when the cut is there. */
  function wayDown(level: Level, name: string, dir: WalkedDir): Pending {
    const after = level.after;
    if (after !== undefined && after.length > 1 && name === after[0]) {
      return { ...dir, after: after.slice(1) };
    }
    return dir;
  }

  /** The lines of the next batch of entries of the top directory. */
  function nextBatch(top: Level): string {
    const batch = top.names.slice(top.next, top.next + LIST_BATCH);
    top.next += batch.length;
    const dir = { realPath: top.real, info: top.info };
    const infos = guard.describeEntries(dir, batch);
    let text = "";
    let i = 0;
    for (; infos !== undefined && i < batch.length; i++) {
      const d = describeEntry(guard, top, batch[i], infos[i], options, above);
      if (d === "changed") break;
      if (d.line !== undefined && !listedBefore(top, batch[i])) {
        text += JSON.stringify(d.line) + "\n";
      }
      if (d.descend !== undefined) {
        top.subdirs.push(wayDown(top, batch[i], d.descend));
      }
    }
    if (infos !== undefined && i === batch.length) {
      if (top.next >= top.names.length) top.names = [];
      return text;
    }
    // The directory is not what it was any more: nothing more from it.
    top.names = [];
    top.subdirs = [];
    return text + JSON.stringify(unreadableLine(top.rel, "changed")) + "\n";
  }

  return new ReadableStream<Uint8Array>({
    async start(controller) {
      const problem = await enter({
        real: root.realPath,
        rel: "",
        info: root.info,
        after: after.length > 0 ? after : undefined,
      });
      if (problem !== undefined) {
        controller.enqueue(encoder.encode(JSON.stringify(problem) + "\n"));
      }
    },
    async pull(controller) {
      try {
        await breather.breathe();
        while (stack.length > 0) {
          const top = stack[stack.length - 1];
          let text = "";
          if (top.next >= top.names.length) {
            const sub = top.subdirs.shift();
            if (sub === undefined) leave();
            else if (!onStack.has(identity(sub.info))) {
              const problem = await enter(sub);
              if (problem !== undefined) text = JSON.stringify(problem) + "\n";
            }
          } else {
            text = nextBatch(top);
          }
          if (text !== "") {
            controller.enqueue(encoder.encode(text));
            if (++batches <= FLUSHED_BATCHES && stack.some(hasMore)) {
              await breather.turn();
            }
            // Until the next pull the listing waits for its reader.
            breather.rest();
            return;
          }
        }
        controller.close();
        done();
      } catch (error) {
        done();
        throw error;
      }
    },
    cancel() {
      stack.length = 0;
      onStack.clear();
      done();
    },
  });
}
