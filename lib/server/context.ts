/**
 * What every endpoint of hsyncd is given (`ServerContext`: the jail, the
 * limits and their counters, the caches) and what an endpoint is (a path,
 * its methods and the function that answers it).
 */
import type { ServerSettings } from "../shared/config.ts";
import { KeyedLimiter, Limiter } from "../shared/limiter.ts";
import type { HashResult } from "../shared/wire.ts";
import { DirectoryReads } from "./directory_reads.ts";
import { createPathGuard, type PathGuard } from "./jail/path_guard.ts";
import { DEFAULT_LIMITS, type ServerLimits } from "./limits.ts";
import { Lru } from "./lru.ts";
import { ConfigError } from "../shared/errors.ts";
import { writeSetupError } from "./daemon.ts";
import { PushLocks } from "./push_locks.ts";
import { Uploads } from "./uploads.ts";
import { WatchHub } from "./watch_hub.ts";
import { createWriteJail, type WriteJail } from "./jail/write_jail.ts";

/** The state shared by the requests of one handler. */
export interface ServerContext {
  guard: PathGuard;
  limits: ServerLimits;
  /** As given (`/v1/health` reports `options.hostname`). */
  options: ContextOptions;
  /** Requests being answered, long-polls apart: in all and per peer. */
  requests: KeyedLimiter;
  /** Long-polls open: in all and per peer. */
  watches: KeyedLimiter;
  /** Bytes of request bodies held in memory: in all and per peer. */
  bodies: KeyedLimiter;
  /** Hash jobs running or waiting: in all and per peer. */
  hashJobs: KeyedLimiter;
  /** Hash results by (etag, offset, length). */
  hashCache: Lru<HashResult>;
  /** Bundle responses streaming or waiting to: in all and per peer. */
  bundles: KeyedLimiter;
  /** Listings streaming or waiting to: in all and per peer. */
  listings: KeyedLimiter;
  /** Reads of whole directories for listings, one at a time (see {@linkcode DirectoryReads}). */
  directoryReads: DirectoryReads;
  /** File bodies streaming now. */
  fileBodies: { running: number };
  /** Where pushes may write (`Writable_path`; none when empty). */
  writeJail: WriteJail;
  /** Uploads in progress: part files, journals, who writes them. */
  uploads: Uploads;
  /** Upload requests being written: in all and per peer. */
  uploadJobs: KeyedLimiter;
  /** The leases of push destinations (`/v1/lock`). */
  pushLocks: PushLocks;
  watchHub: WatchHub;
  /** Hands an unexpected error to `onError`; never throws. */
  reportError(error: unknown, request: Request): void;
}

/** One endpoint of the API: the router calls `run` for a request to `path` with one of `methods`. */
export interface Endpoint {
  /** The request path (one of `API` in shared/wire.ts). */
  path: string;
  methods: readonly string[];
  run(ctx: ServerContext, request: Request, url: URL): Promise<Response>;
}

/** What {@linkcode createContext} needs. */
export interface ContextOptions {
  settings: ServerSettings;
  /** `HSYNC_DIR`: always refused, with everything under it. */
  hsyncDir: string;
  /** Host name reported by `/v1/health`. */
  hostname: string;
  /** Called with each unexpected error (answered 500 or sent as an `internal` bundle frame). */
  onError?: (error: unknown, request: Request) => void;
  /** Overrides of {@linkcode DEFAULT_LIMITS}. */
  limits?: Partial<ServerLimits>;
  /** The change feed behind `/v1/watch`; one is created when absent. */
  watchHub?: WatchHub;
}

/**
 * Builds the jail (a missing `Only_allowed_path` throws `ConfigError`) and
 * the counters of every limit, each in all and per peer.
 */
export async function createContext(
  options: ContextOptions,
): Promise<ServerContext> {
  const { settings } = options;
  // Never served, never written: the server's own directory and secrets.
  const alwaysDenied = [
    options.hsyncDir,
    settings.certFile,
    settings.keyFile,
    settings.authorizedKeys,
  ].filter((p) => p !== "");
  const guard = await createPathGuard({
    onlyAllowedPath: settings.onlyAllowedPath,
    forbiddenDir: settings.forbiddenDir,
    forbiddenFile: settings.forbiddenFile,
    alwaysDenied,
  });
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const refused = writeSetupError({
    ...settings,
    writablePath: settings.writablePath ?? [],
  });
  if (refused !== undefined) throw new ConfigError(refused);
  const writeJail = await createWriteJail({
    writablePath: settings.writablePath ?? [],
    forbiddenDir: settings.forbiddenDir,
    forbiddenFile: settings.forbiddenFile,
    alwaysDenied,
  });
  const keyed = (
    total: number,
    totalName: string,
    perKey: number,
    perKeyName: string,
    queues: { total?: number; perKey?: number } = { total: 0, perKey: 0 },
  ) =>
    new KeyedLimiter(
      new Limiter(total, { queue: queues.total, name: totalName }),
      { perKey, perKeyQueue: queues.perKey, name: perKeyName },
    );
  return {
    guard,
    limits,
    options,
    requests: keyed(
      limits.maxRequests,
      "maxRequests",
      limits.peerRequests,
      "peerRequests",
    ),
    watches: keyed(
      limits.maxWatches,
      "maxWatches",
      limits.peerWatches,
      "peerWatches",
    ),
    bodies: keyed(
      limits.bodyBytes,
      "bodyBytes",
      limits.peerBodyBytes,
      "peerBodyBytes",
    ),
    hashJobs: keyed(
      limits.hashJobs,
      "hashQueue",
      limits.peerHashJobs,
      "peerHashQueue",
      { total: limits.hashQueue, perKey: limits.peerHashQueue },
    ),
    hashCache: new Lru(limits.hashCacheEntries),
    directoryReads: new DirectoryReads(),
    listings: keyed(
      limits.listJobs,
      "listQueue",
      limits.peerListings,
      "peerListQueue",
      { total: limits.listQueue, perKey: limits.peerListQueue },
    ),
    bundles: keyed(
      limits.bundleJobs,
      "bundleQueue",
      limits.peerBundles,
      "peerBundleQueue",
      { total: limits.bundleQueue, perKey: limits.peerBundleQueue },
    ),
    fileBodies: { running: 0 },
    writeJail,
    uploads: new Uploads({ jail: writeJail, umask: processUmask() }),
    uploadJobs: keyed(
      limits.maxUploads,
      "maxUploads",
      limits.peerUploads,
      "peerUploads",
    ),
    pushLocks: new PushLocks({
      leaseMs: limits.pushLeaseMs,
      maxLeases: limits.pushLocks,
    }),
    watchHub: options.watchHub ?? new WatchHub(),
    reportError(error, request) {
      try {
        options.onError?.(error, request);
      } catch {
        // Reporting must not fail the request.
      }
    },
  };
}

/** The process's umask (what modes of pushed files are masked with; the `umask` sys permission). */
function processUmask(): number {
  return Deno.umask();
}
