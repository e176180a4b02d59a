/**
 * A push's first requests, sent before its engine is loaded (as a pull's,
 * lib/client/opening.ts): the destination's lease, its stat, or both,
 * whichever the push asks first (with one file's stat, that of the
 * directory it would go into), and connections opened ahead. The run then
 * takes each answer once instead of asking again; a lease it never takes is
 * given back by {@linkcode PushOpening.close}.
 */
import { posix } from "node:path";
import type { StatEntry } from "../shared/wire.ts";
import { DestinationBusy, HttpError } from "../shared/errors.ts";
import type { Backoff } from "./retry.ts";
import type { PushOptions } from "./push_context.ts";
import { leasePath, lockPushDestination, type PushLease } from "./push_lock.ts";
import { normalizeRemote, type PushSource } from "./push_sources.ts";
import { Remote } from "./remote.ts";
import { BUNDLE_SLOTS } from "./scheduler.ts";
import { FAR_RTT_MS } from "./stream_governor.ts";

/**
 * Longest wait for the first answer before a push loads what would hold it
 * (ms). On loopback here a first answer comes 2.2-4.8 ms after its request
 * went (its connection's handshake and the request); at a 10 ms round trip,
 * 20 ms or more. One that has not come by then is taken after the loads,
 * 30-60 ms later: a server that far is far ({@linkcode FAR_RTT_MS})
 * anyway.
 */
const QUIET_MS = FAR_RTT_MS;
/**
 * Connections opened ahead for the first bundles or ranges (as many as
 * bundles go at once), without a request on them (lib/client/buffer_request.ts):
 * 2,000 files pushed through a 50 ms round trip, medians of 10 interleaved
 * runs, two connections each warmed with a request 641 ms, two opened ahead
 * 606.5, four 589.5; through 10 ms 536 -> 517.5 with four.
 */
const BODY_CONNECTIONS = BUNDLE_SLOTS;

/** Longest wait in {@linkcode PushOpening.close} for a lease's answer before it is given back by its token. */
const CLOSE_WAIT_MS = 2000;

/**
 * What a push asks first: with several sources or a path ending in `/`,
 * the lease (of where they go inside) with the destination's stat, one
 * round trip for both; the lease alone when its path does not depend on
 * what is at the destination (the lease's answer carries the stat); else
 * the stat, the lease's path waiting for it.
 */
export type FirstAsk =
  | { kind: "lease+stat"; lease: string }
  | { kind: "lease"; lease: string }
  | { kind: "stat" };

/** {@linkcode FirstAsk} of a push of `sources` to `given` (`base` normalized). */
export function firstAsk(
  given: string,
  base: string,
  sources: readonly PushSource[],
  scp: boolean,
): FirstAsk {
  if (given.endsWith("/") || sources.length > 1) {
    return {
      kind: "lease+stat",
      lease: leasePath(given, base, sources, { scp, remoteIsDir: true }),
    };
  }
  const either = [true, false].every((remoteIsDir) =>
    leasePath(given, base, sources, { scp, remoteIsDir }) === base
  );
  return either ? { kind: "lease", lease: base } : { kind: "stat" };
}

/** The first requests of one push, the server they went to and the stop of its run. */
export class PushOpening {
  /** The server, for the rest of the run. */
  readonly remote: Remote;
  /** Stops the run (and a wait for the lease). */
  readonly runStop = new AbortController();
  /** The caller's signal with {@linkcode runStop}. */
  readonly signal: AbortSignal;
  /** The destination, normalized. */
  readonly base: string;
  /** What was asked first. */
  readonly first: FirstAsk;
  /** The lease asked first; `path` undefined: of one file, its path told by the answer. */
  #lease?: { path?: string; answer: Promise<PushLease | undefined> };
  /** Stats asked for already, by path. */
  readonly #stats = new Map<string, Promise<StatEntry>>();
  #onLost?: (message: string) => void;
  readonly #dryRun: boolean;

  /** Sends the first requests of a push of `sources` (checked) with `options`. */
  constructor(options: PushOptions, sources: readonly PushSource[]) {
    this.remote = new Remote({
      baseUrl: options.baseUrl,
      client: options.client,
      caCerts: options.caCerts,
      sign: options.sign,
      idleTimeoutMs: options.settings.dataTimeout * 1000,
      bandwidth: options.bandwidth,
    });
    this.signal = options.signal === undefined
      ? this.runStop.signal
      : AbortSignal.any([options.signal, this.runStop.signal]);
    this.base = normalizeRemote(options.remotePath);
    this.first = firstAsk(
      options.remotePath,
      this.base,
      sources,
      options.scpPlacement ?? false,
    );
    this.#dryRun = options.dryRun ?? false;
    const dryRun = this.#dryRun;
    // Opened during the first round trip: one for requests without a body,
    // so that the directories' times and the lease's release at the end go
    // at once (and more for the first bundles or ranges: `settle`).
    if (!dryRun) this.remote.warm(1, this.signal);
    if (this.first.kind !== "stat" && !dryRun) {
      const path = this.first.lease;
      const answer = lockPushDestination(this.remote, path, {
        wait: !options.noWait,
        onWait: options.onLockWait,
        onLost: (message) => this.#onLost?.(message),
        signal: this.signal,
        stat: true,
        records: options.leaseRecords,
      });
      answer.catch(() => {});
      this.#lease = { path, answer };
    }
    if (this.first.kind !== "lease") {
      this.#statNow(this.base);
      // One file to a path that may be new: should nothing be there, the
      // push looks at the directory it would go into next. Asked now, one
      // round trip for both.
      if (sources.length === 1 && !sources[0].isDir && this.base !== "/") {
        this.#statNow(posix.dirname(this.base));
      }
    }
    // One file to a path without `/`: its lease is of the path, or of
    // `path/NAME` when the path is a directory, which hsyncd tells (`name`):
    // asked now too, not a round trip after the stat. Held by another push,
    // it is not waited for here: the run asks again, as it would have.
    const [one] = sources;
    if (
      this.first.kind === "stat" && !dryRun && sources.length === 1 &&
      !one.isDir && one.name !== "" && this.base !== "/"
    ) {
      const answer = lockPushDestination(this.remote, this.base, {
        wait: false,
        onLost: (message) => this.#onLost?.(message),
        signal: this.signal,
        stat: true,
        records: options.leaseRecords,
        name: one.name,
      });
      answer.catch(() => {});
      this.#lease = { path: undefined, answer };
    }
  }

  /**
   * Waits for the first answer, at most {@linkcode QUIET_MS}, then opens
   * connections for the first bundles or ranges. Nothing heavy is
   * loaded meanwhile (their http module holds the client 35-40 ms, the
   * engine as long again): a first answer taken after such a hold would tell
   * a round trip of 29-36 ms on loopback, and a push to a server 0.1 ms
   * away would size its bundles as if it were far (lib/client/send_bundle.ts's
   * `mostFilesPerBundle`).
   * A server that has not answered by then is far, whatever holds the
   * answer later.
   */
  async settle(): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.remote.trips.first,
      new Promise((done) => timer = setTimeout(done, QUIET_MS)),
    ]);
    clearTimeout(timer);
    if (!this.#dryRun) this.remote.warm(BODY_CONNECTIONS, this.signal, true);
  }

  #statNow(path: string): void {
    const answer = this.remote.stat(path, this.signal);
    answer.catch(() => {});
    this.#stats.set(path, answer);
  }

  /**
   * The lease of `path` asked for already (taken once), else undefined.
   * One of one file (its path told by its answer) is given back when it is
   * of another path, or held by another push: `ask` asks for `path` then.
   */
  takeLease(
    path: string,
    ask: () => Promise<PushLease | undefined>,
  ): Promise<PushLease | undefined> | undefined {
    const lease = this.#lease;
    if (lease === undefined) return undefined;
    if (lease.path !== undefined) {
      if (lease.path !== path) return undefined;
      this.#lease = undefined;
      return lease.answer;
    }
    this.#lease = undefined;
    return lease.answer.then(async (held) => {
      // None (an hsyncd without leases), or the right one.
      if (held === undefined || held.path === path) return held;
      await held.release();
      return await ask();
    }, async (error) => {
      if (error instanceof DestinationBusy) return await ask();
      throw error;
    });
  }

  /**
   * The entry at `path` (undefined: none there, 404): the stat asked for
   * already (taken once), else asked now; with `backoff`, asked again while
   * the network or the server falters. Other answers throw.
   */
  async statOrNone(
    path: string,
    backoff?: Backoff,
  ): Promise<StatEntry | undefined> {
    let asked = this.#stats.get(path);
    this.#stats.delete(path);
    const stat = () => {
      const answer = asked ?? this.remote.stat(path, this.signal);
      asked = undefined;
      return answer;
    };
    try {
      return backoff === undefined
        ? await stat()
        : await backoff.retry(stat, this.signal);
    } catch (error) {
      if (error instanceof HttpError && error.status === 404) return undefined;
      throw error;
    }
  }

  /** Tells `handler` when a renewal finds the lease taken by another push. */
  onLost(handler: (message: string) => void): void {
    this.#onLost = handler;
  }

  /**
   * Gives back a lease the run never took (it stopped before it asked):
   * its answer is waited for (a release that overtook the request would
   * free nothing) up to {@linkcode CLOSE_WAIT_MS}; then the request is
   * stopped, which gives the lease back by its token all the same
   * (lib/client/push_lock.ts), and a wait for another push's lease ends.
   */
  async close(): Promise<void> {
    const lease = this.#lease;
    this.#lease = undefined;
    this.#stats.clear();
    if (lease === undefined) return;
    const settled = lease.answer.then((held) => held?.release(), () => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      settled,
      new Promise((done) => timer = setTimeout(done, CLOSE_WAIT_MS)),
    ]);
    clearTimeout(timer);
    this.runStop.abort(new Error("the push ended"));
    await settled;
  }
}
