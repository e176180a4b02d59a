/** The bounds on the work one hsyncd does, their defaults, and what each bounds in the words of a 503 `busy`. */

/**
 * Bounds on the work one server does; every field has a default in
 * {@linkcode DEFAULT_LIMITS}. A `peer*` limit applies to each peer address
 * on its own, beside the limit for all peers together; a request refused by
 * any of them is answered 503 `busy` with `Retry-After` and the limit's name
 * in `x-hsync-limit`.
 */
export interface ServerLimits {
  /** Requests being answered at once (from admission until the body is sent), long-polls apart. */
  maxRequests: number;
  /** Requests of one peer being answered at once, long-polls apart. */
  peerRequests: number;
  /** Long-polls (`/v1/watch`) open at once. */
  maxWatches: number;
  /** Long-polls of one peer open at once. */
  peerWatches: number;
  /** Longest request target (path and query) in bytes; longer gets 414. */
  maxUrlBytes: number;
  /** Most bytes of request header names and values together; more gets 431. */
  maxHeaderBytes: number;
  /** Bytes of request bodies held in memory at once (claimed before the first byte is read, until the request completes). */
  bodyBytes: number;
  /** Bytes of request bodies of one peer held in memory at once. */
  peerBodyBytes: number;
  /** Milliseconds a request body may go without a byte before it is abandoned (408). */
  bodyIdleMs: number;
  /** Hash jobs running at once. */
  hashJobs: number;
  /** Hash jobs waiting for a slot; one more is answered 503 `busy`. */
  hashQueue: number;
  /** Hash jobs of one peer running, or waiting in the shared queue, at once. */
  peerHashJobs: number;
  /** Hash jobs of one peer waiting behind its `peerHashJobs`; one more is answered 503 `busy`. */
  peerHashQueue: number;
  /** Most bytes one hash request may cover; a longer span is refused (400 `too_large`), ask in pieces. */
  hashMaxBytes: number;
  /** Hash results remembered, by (etag, offset, length). */
  hashCacheEntries: number;
  /** Paths in one bundle request. */
  bundleMaxPaths: number;
  /** Largest file sent in a bundle; larger ones get a `too_large` error frame. */
  bundleMaxFileBytes: number;
  /** Largest JSON body of a bundle request. */
  bundleMaxBodyBytes: number;
  /** Files of a bundle read ahead concurrently. */
  bundleReadAhead: number;
  /**
   * Bytes of file data one bundle response holds read but not yet handed to
   * the connection (one file is always allowed, up to `bundleMaxFileBytes`):
   * what a slow client can make the server keep in memory.
   */
  bundleReadAheadBytes: number;
  /** Bundle responses streaming at once; more wait their turn, in order. */
  bundleJobs: number;
  /** Bundle requests waiting for a streaming slot; one more is answered 503 `busy`. */
  bundleQueue: number;
  /** Bundles of one peer streaming, or waiting in the shared queue, at once. */
  peerBundles: number;
  /** Bundles of one peer waiting behind its `peerBundles`; one more is answered 503 `busy`. */
  peerBundleQueue: number;
  /**
   * Listings streaming at once; more wait their turn, in order. A listing is
   * CPU-bound (an `lstat` per entry): a few at a time keep the event loop free
   * for every other request and bound the names held in memory.
   */
  listJobs: number;
  /** Listings waiting for a streaming slot; one more is answered 503 `busy`. */
  listQueue: number;
  /** Listings of one peer streaming at once. */
  peerListings: number;
  /** Listings of one peer waiting behind its `peerListings`; one more is answered 503 `busy`. */
  peerListQueue: number;
  /**
   * Most entries one `/v1/glob` answers (a client's `maxEntries` is capped by
   * it); one more is 413 `too_many_matches`. The matches are held to be
   * sorted: this bounds the memory of a glob.
   */
  globMaxMatches: number;
  /** Upload requests (a range, a commit, a bundle of files, a mkdir) being written at once; one more is answered 503 `busy`. */
  maxUploads: number;
  /** Upload requests of one peer being written at once. */
  peerUploads: number;
  /** Milliseconds a push destination's lease (`/v1/lock`) lasts without a renewal. */
  pushLeaseMs: number;
  /** Push destinations locked at once; one more is answered 503 `busy`. */
  pushLocks: number;
  /**
   * Milliseconds of synchronous work in a listing or a `mkdir` array before
   * the other requests get a turn: a listing of a million entries would
   * otherwise hold every other client for seconds (a stat sent during a
   * listing of 10,000 waited 100-140 ms), and a thousand deep directories in
   * one request the server as long as a thousand requests. A turn costs
   * 10-17 us (lib/shared/breather.ts); 5 ms between them made a pull of
   * 2,000 small files through a 10 ms round trip 8-9% slower (its bundles cut
   * into its listing), 20 ms not (median of 14, interleaved). Bundles, at
   * most 1,000 files, take none: turns inside them made one client's
   * bundles share the thread instead of one being answered first, and a
   * push of 2,000 files through a 50 ms round trip 10% slower (559 -> 614
   * ms, median of 14).
   */
  turnMs: number;
}

/** The limits used when `HandlerOptions.limits` leaves a field out. */
export const DEFAULT_LIMITS: Readonly<ServerLimits> = {
  maxRequests: 512,
  // Three quarters: one address (many clients behind a NAT, or one host
  // running many pulls) never takes the last 128. 64 hsync pulls from one
  // address need about this many (bench/scale.ts: 64/64 done; 35/64 at 256).
  peerRequests: 384,
  maxWatches: 256,
  // One `hsync --sync` holds one long-poll; half, as for requests.
  peerWatches: 128,
  // A path of MAX_PATH_BYTES percent-encoded (3 characters per byte) still fits.
  maxUrlBytes: 16 * 1024,
  maxHeaderBytes: 16 * 1024,
  // Bodies read whole: bundle requests (a few hundred KiB from hsync) and
  // upload bundles (at most bundleMaxBodyBytes, 8 MiB each); an upload range
  // (as long, at most) streams through 1 MiB: 64 MiB for a peer, 128 in all.
  bodyBytes: 128 * 1024 * 1024,
  peerBodyBytes: 64 * 1024 * 1024,
  bodyIdleMs: 10_000,
  hashJobs: 2,
  hashQueue: 16,
  // One job per peer leaves the other slot to everyone else.
  peerHashJobs: 1,
  // hsync asks for at most 4 hashes at once; a few clients may share an address.
  peerHashQueue: 32,
  // hsync asks for spans of at most 64 MiB (pull.ts HASH_SPAN_BYTES): well under a second of hashing.
  hashMaxBytes: 64 * 1024 * 1024,
  hashCacheEntries: 1024,
  bundleMaxPaths: 10_000,
  bundleMaxFileBytes: 1024 * 1024,
  bundleMaxBodyBytes: 8 * 1024 * 1024,
  bundleReadAhead: 8,
  bundleReadAheadBytes: 2 * 1024 * 1024,
  // Each streaming bundle holds up to bundleReadAheadBytes plus what the
  // connection buffers; more of them at once only spreads the same CPU thinner.
  bundleJobs: 16,
  bundleQueue: 448,
  // Half of the streaming slots: another address always finds one free. One
  // hsync sends at most 4 bundles at once (pull.ts BUNDLE_SLOTS); the rest of
  // an address's bundles wait in its own line.
  peerBundles: 8,
  peerBundleQueue: 248,
  // Listings are CPU-bound (an lstat per entry) and hold a directory's
  // names: two at a time leave the event loop to everything else.
  listJobs: 2,
  listQueue: 64,
  peerListings: 1,
  peerListQueue: 16,
  // About 30 MB of matches held: more is a tree to pull, not a glob.
  globMaxMatches: 100_000,
  // hsync sends up to 8 ranges and 4 bundles of one push at once; an upload
  // body streams to disk (never held), so what it holds is a slot and a file.
  maxUploads: 64,
  peerUploads: 32,
  // hsync renews every 10 s: two renewals may fail before the lease lapses,
  // and a killed push holds its destination at most this long.
  pushLeaseMs: 30_000,
  pushLocks: 4096,
  turnMs: 20,
};

/** What each limit bounds, for the message of a 503 `busy`. */
export const LIMIT_TEXT: Readonly<Record<string, (l: ServerLimits) => string>> =
  {
    maxRequests: (l) => `${l.maxRequests} requests are being answered`,
    peerRequests: (l) =>
      `${l.peerRequests} requests of this address are being answered`,
    maxWatches: (l) => `${l.maxWatches} watches are open`,
    peerWatches: (l) => `${l.peerWatches} watches of this address are open`,
    bodyBytes: (l) => `${l.bodyBytes} bytes of request bodies are held`,
    peerBodyBytes: (l) =>
      `${l.peerBodyBytes} bytes of request bodies of this address are held`,
    hashQueue: (l) =>
      `${l.hashJobs} hash jobs are running and ${l.hashQueue} are waiting`,
    peerHashQueue: (l) =>
      `this address has ${l.peerHashJobs} hash jobs running and ${l.peerHashQueue} waiting`,
    bundleQueue: (l) =>
      `${l.bundleJobs} bundles are streaming and ${l.bundleQueue} are waiting`,
    peerBundleQueue: (l) =>
      `this address has ${l.peerBundles} bundles streaming or queued and ${l.peerBundleQueue} waiting`,
    listQueue: (l) =>
      `${l.listJobs} listings are streaming and ${l.listQueue} are waiting`,
    peerListQueue: (l) =>
      `this address has ${l.peerListings} listings streaming and ${l.peerListQueue} waiting`,
    maxUploads: (l) => `${l.maxUploads} uploads are being written`,
    peerUploads: (l) =>
      `${l.peerUploads} uploads of this address are being written`,
  };
