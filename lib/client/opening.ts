/**
 * A pull's first requests, sent together before anything waits for an
 * answer: the root's stat, its listing (should it be a directory), its first
 * bytes (should it be a file not begun here) and connections opened ahead.
 * The command line sends them before it loads the rest of the engine: this
 * module and what it loads stay clear of node's fs, crypto and HTTP modules,
 * whose loading (30-35 ms of a run's start) then overlaps the first round
 * trip instead of preceding it.
 */
import type { StatEntry } from "../shared/wire.ts";
import { destinationOf } from "./destination.ts";
import { EarlyRange, nothingAt } from "./early_range.ts";
import type { PullOptions } from "./pull.ts";
import { type Exchange, type ListQuery, Remote } from "./remote.ts";

/**
 * Connections opened with the first requests, beside the stat's and the
 * listing's: the first bundles, files or ranges then find them open instead
 * of waiting a round trip each for one (through a 50 ms round trip, each of
 * the first 4 bundles of a tree of small files did, and with 4 the streams
 * of a far big file past the fifth started a round trip after the others).
 * The server holds each until the run ends, about 30 KiB of its memory (700
 * idle connections took hsyncd's PSS from 57 to 75 MiB), so not as many as
 * a far big file has streams: 256 MiB through 50 ms, medians of 8
 * interleaved runs, 609 ms with 4, 594 with 8, 576.5 with 15 (aria2c -x16
 * 645); serving bench/memory.ts's 64 clients (rounds swing by 10 MiB) with
 * 8 hsyncd peaked at 87 and 78 MiB of PSS (4: 93 and 81.5), with 15 at 81
 * to 105 (median 92).
 */
export const WARM_CONNECTIONS = 8;

/** The tree's listing, asked for with the stat; `drop` cancels it (the root is not a directory, or it waited too long to be read). */
export interface EarlyListing {
  started: Promise<Exchange>;
  drop: () => void;
}

/** The first requests of one pull, and the server they went to. */
export class PullOpening {
  /** The server, for the rest of the run. */
  readonly remote: Remote;
  /** The root's stat. */
  readonly stat: Promise<StatEntry>;
  /** The root's listing (dropped when the root is not a directory). */
  readonly listing: EarlyListing;
  /** The root's first bytes, when asked for (dropped unless the root is a file). */
  readonly early = new EarlyRange();

  /** Sends the first requests of a pull of `options`; `signal` stops them. */
  constructor(options: PullOptions, signal: AbortSignal) {
    const { remotePath, localPath, settings } = options;
    this.remote = new Remote({
      baseUrl: options.baseUrl,
      client: options.client,
      sign: options.sign,
      idleTimeoutMs: settings.dataTimeout * 1000,
      bandwidth: options.bandwidth,
    });
    // The stat first: hsyncd answers requests in the order they come, and
    // a listing's first lines take it milliseconds to write.
    this.stat = this.remote.stat(remotePath, signal);
    this.stat.catch(() => {});
    // The listing is asked for with the stat, not a round trip after it.
    this.listing = startListing(
      this.remote,
      remotePath,
      listQueryOf(options),
      signal,
    );
    // And its first bytes, should it be a file not begun here (not with a
    // pinned Max_part_num: that many ranges, planned up front).
    if (
      options.earlyRange && !options.dryRun && !remotePath.endsWith("/") &&
      !settings.pinnedParts &&
      nothingAt(destinationOf(localPath, remotePath, {
        remoteIsDir: false,
        scp: options.scpPlacement,
      }))
    ) {
      this.early.start(this.remote, remotePath, signal);
    }
    // Connections for the files' streams open while the root is looked at.
    this.remote.warm(WARM_CONNECTIONS, signal);
  }
}

/** What a pull's listings ask the server to say of links. */
export function listQueryOf(options: PullOptions): ListQuery {
  return { links: options.links, hardLinks: options.hardLinks };
}

/** Sends `GET /v1/list` of `path` now, for a lister to read later (or to be dropped). */
function startListing(
  remote: Remote,
  path: string,
  query: ListQuery,
  signal: AbortSignal,
): EarlyListing {
  const stop = new AbortController();
  const started = remote.startList(
    path,
    AbortSignal.any([signal, stop.signal]),
    { ...query, ifDir: true },
  );
  // Its failure is the lister's to handle, or nobody's once dropped.
  started.catch(() => {});
  return {
    started,
    drop: () => {
      stop.abort();
      started.then((ex) => {
        ex.response.body?.cancel().catch(() => {});
        ex.done();
      }).catch(() => {});
    },
  };
}
