/**
 * The lease of a push destination on the server (`POST /v1/lock`): one
 * push at a time writes into a directory. Taken before the first write,
 * renewed while the push runs, released at its end. Its token is the
 * client's (lib/client/lease_record.ts): a push killed with the lease held,
 * or stopped before the answer came, leaves it on disk, and the same push
 * run again takes the lease back at once; any other push waits until the
 * lease lapses (hsyncd's `pushLeaseMs`, 30 s). A server without the
 * endpoint (an older hsyncd) is pushed to without a lease.
 */
import { posix } from "node:path";
import { describeError, HttpError, ProtocolError } from "../shared/errors.ts";
import { API, type LockLease, type StatEntry } from "../shared/wire.ts";
import { DestinationBusy } from "../shared/errors.ts";
import { goesInside, type PushSource } from "./push_sources.ts";
import { jsonOrNull } from "./answers.ts";
import { type LeaseRecord, leaseRecord } from "./lease_record.ts";
import type { Remote } from "./remote.ts";
import { checkStatus, type HeldUpload } from "./remote_push.ts";
import { sleep } from "./retry.ts";

/** How often a waiting push asks for the lease again. */
const RETRY_MS = 1000;
/** Longest time between renewals (a third of hsyncd's default lease). */
const RENEW_MS = 10_000;
/** How long the release at the end may take (it is best effort: the lease lapses anyway). */
const RELEASE_MS = 2000;

/** Options of {@linkcode lockPushDestination}. */
export interface PushLockOptions {
  /** False: throw {@linkcode DestinationBusy} instead of waiting. */
  wait: boolean;
  /** Called once when another push holds the destination and this one waits (`HOST:DIR`). */
  onWait?: (dest: string, pid: number | undefined) => void;
  /** Called once when a renewal finds the lease taken by another push (it lapsed). */
  onLost?: (message: string) => void;
  /** Stops the wait (the abort's reason is thrown). */
  signal?: AbortSignal;
  /** How often a waiting push asks again (tests make it short). */
  retryMs?: number;
  /** Ask for the entry at the path with the lease (`stat=1`), saving a `/v1/stat`. */
  stat?: boolean;
  /** Where the lease's token is kept while the push runs (lib/client/lease_record.ts); none when undefined. */
  records?: string;
  /**
   * One file of this name is pushed to the path: the lease is of `path/NAME`
   * when the path is a directory (hsyncd says which, `PushLease.path`; an
   * older one leases the path itself).
   */
  name?: string;
}

/** A lease held: renewed until `release`, which never throws. */
export interface PushLease {
  /** The path leased. */
  readonly path: string;
  /** The token it is held with. */
  readonly token: string;
  /** Whether another push held the destination first (this one waited for it). */
  readonly waited: boolean;
  /**
   * The entry at the path once leased (null: nothing there), when it was
   * asked for and the server told it; undefined otherwise.
   */
  readonly entry: StatEntry | null | undefined;
  /**
   * What the server holds of an upload to the path (null: nothing), told
   * with the entry when the path is not a directory; undefined otherwise.
   */
  readonly upload: HeldUpload | null | undefined;
  /** Gives the lease back (once, however often it is called). */
  release(): Promise<void>;
  /** The server takes `after=N` on the release and on `mkdir` (`LockLease.after`). */
  readonly ordersLast: boolean;
  /**
   * Gives the lease back once `after` requests of run `run` have completed
   * at the server, sent before their answers (`LockLease.after`); false when
   * the server did not (409 `incomplete`, or no answer): the lease is still
   * held and renewed then, and {@linkcode release} gives it back.
   */
  releaseAfter(
    run: string,
    after: number,
    signal: AbortSignal,
  ): Promise<boolean>;
}

/**
 * The path a push locks: with several sources `base` itself (each goes
 * inside it), else the one source's destination (`base/NAME` when it goes
 * inside `base`), so pushes of other trees into one inbox run at once.
 * `given` is the remote path as given, `base` normalized.
 */
export function leasePath(
  given: string,
  base: string,
  sources: readonly PushSource[],
  place: { remoteIsDir: boolean; scp: boolean },
): string {
  if (sources.length !== 1) return base;
  const [one] = sources;
  const into = goesInside(given, {
    several: false,
    remoteIsDir: place.remoteIsDir,
    sourceIsDir: one.isDir,
    scp: place.scp,
  });
  return into && one.name !== "" ? posix.join(base, one.name) : base;
}

/**
 * Takes the lease of `path` on the server of `remote`, waiting while another
 * push holds it (or throwing {@linkcode DestinationBusy} when told not to
 * wait). Undefined when the server has no `/v1/lock` (404). Any other
 * refusal or failure is thrown as `Remote.send` throws it.
 */
export async function lockPushDestination(
  remote: Remote,
  path: string,
  options: PushLockOptions,
): Promise<PushLease | undefined> {
  const shown = `${remote.host}:${path}`;
  // The token is the client's own, so that it is known even when no answer
  // comes, and kept on disk until the lease is given back.
  const record = leaseRecord(options.records, remote.host, path);
  let told = false;
  try {
    while (true) {
      options.signal?.throwIfAborted();
      const answer = await ask(
        remote,
        {
          path,
          token: record.token,
          ...(options.stat ? { stat: "1" } : {}),
          ...(options.name === undefined ? {} : { name: options.name }),
        },
        options.signal,
      );
      if (answer === 404) {
        record.end(true);
        return undefined;
      }
      if (answer !== 409) {
        return new Renewal(remote, path, answer, {
          ...options,
          waited: told,
          record,
        });
      }
      if (!options.wait) throw new DestinationBusy(shown, undefined);
      if (!told) options.onWait?.(shown, undefined);
      told = true;
      await sleep(options.retryMs ?? RETRY_MS, options.signal);
    }
  } catch (error) {
    if (error instanceof HttpError || error instanceof DestinationBusy) {
      // Refused or held by another: this token holds nothing.
      record.end(true);
    } else {
      // Stopped or cut off, the lease perhaps taken at the server: given
      // back by its token, and the record kept (should the release arrive
      // first, the next push of the destination takes the lease back).
      await ask(
        remote,
        {
          path,
          token: record.token,
          release: "1",
          // Where it went (`path/NAME` when the path is a directory).
          ...(options.name === undefined ? {} : { name: options.name }),
        },
        AbortSignal.timeout(RELEASE_MS),
      ).catch(() => {});
      record.end(false);
    }
    throw error;
  }
}

/** A held lease, renewed on a timer until released. */
class Renewal implements PushLease {
  readonly #remote: Remote;
  readonly path: string;
  readonly token: string;
  readonly #options: PushLockOptions;
  #stop = new AbortController();
  readonly #every: number;
  readonly ordersLast: boolean;
  readonly waited: boolean;
  readonly entry: StatEntry | null | undefined;
  readonly upload: HeldUpload | null | undefined;
  #timer?: ReturnType<typeof setTimeout>;
  #pending?: Promise<void>;
  #released?: Promise<void>;
  #lost = false;

  readonly #record: LeaseRecord;

  constructor(
    remote: Remote,
    path: string,
    lease: LockLease,
    options: PushLockOptions & { waited: boolean; record: LeaseRecord },
  ) {
    this.#record = options.record;
    this.waited = options.waited;
    this.entry = lease.entry === null || isStatEntry(lease.entry)
      ? lease.entry
      : undefined;
    this.upload = uploadOf(lease.upload, remote.host);
    this.#remote = remote;
    // Asked with a name, the path hsyncd leased (an older one: the path asked).
    this.path = typeof lease.path === "string" ? lease.path : path;
    this.token = lease.token;
    this.ordersLast = lease.after === true;
    this.#options = options;
    // Three tries before the lease lapses, whatever length the server gives.
    this.#every = Math.max(50, Math.min(RENEW_MS, lease.expires_ms / 3));
    this.#renewals();
  }

  /** Renews the lease every `#every` ms until `#stop` aborts. */
  #renewals(): void {
    const stop = this.#stop.signal;
    const tick = () => {
      this.#pending = this.#renew().finally(() => {
        if (!stop.aborted) this.#timer = setTimeout(tick, this.#every);
      });
    };
    this.#timer = setTimeout(tick, this.#every);
  }

  /** Stops the renewals, and waits for one under way (a renewal arriving after the release would take the lease again). */
  async #stopRenewals(): Promise<void> {
    this.#stop.abort();
    clearTimeout(this.#timer);
    await this.#pending;
  }

  release(): Promise<void> {
    return this.#released ??= this.#release();
  }

  async releaseAfter(
    run: string,
    after: number,
    signal: AbortSignal,
  ): Promise<boolean> {
    if (this.#released !== undefined) return false;
    // hsyncd renews the lease while the release waits there.
    await this.#stopRenewals();
    try {
      const answer = await ask(
        this.#remote,
        {
          path: this.path,
          token: this.token,
          release: "1",
          after: String(after),
          run,
        },
        signal,
      );
      if (answer !== 404 && answer !== 409 && this.#released === undefined) {
        this.#record.end(true);
        this.#released = Promise.resolve();
        return true;
      }
    } catch {
      // Given back the long way.
    }
    if (this.#released === undefined) {
      this.#stop = new AbortController();
      this.#renewals();
    }
    return false;
  }

  async #release(): Promise<void> {
    await this.#stopRenewals();
    try {
      // Not the run's signal: an interrupted push still gives its lease back.
      await ask(
        this.#remote,
        { path: this.path, token: this.token, release: "1" },
        AbortSignal.timeout(RELEASE_MS),
      );
      this.#record.end(true);
    } catch {
      // The lease lapses on its own, or the next push of the destination
      // takes it back by the token kept.
      this.#record.end(false);
    }
  }

  async #renew(): Promise<void> {
    try {
      const answer = await ask(
        this.#remote,
        { path: this.path, token: this.token },
        this.#stop.signal,
      );
      if (answer === 409 && !this.#lost) {
        this.#lost = true;
        this.#options.onLost?.(
          `The lock of ${
            JSON.stringify(`${this.#remote.host}:${this.path}`)
          } lapsed and another push took it (no renewal reached the server in time)`,
        );
      }
    } catch (error) {
      // Tried again at the next tick; the lease outlives two failures.
      if (!this.#stop.signal.aborted && error instanceof ProtocolError) {
        this.#options.onLost?.(describeError(error));
      }
    }
  }
}

/** One `POST /v1/lock`: the lease, or 404 (no such endpoint) or 409 (held by another). */
async function ask(
  remote: Remote,
  query: Record<string, string>,
  signal?: AbortSignal,
): Promise<LockLease | 404 | 409> {
  const ex = await remote.send(remote.url(API.lock, query), {
    method: "POST",
    signal,
    accept: [404, 409],
  });
  try {
    const status = ex.response.status;
    if (status === 404 || status === 409) {
      await ex.response.body?.cancel().catch(() => {});
      return status;
    }
    const body = await jsonOrNull(ex) as Partial<LockLease> | null;
    if (
      typeof body?.token !== "string" || typeof body.expires_ms !== "number" ||
      !(body.expires_ms >= 0)
    ) {
      throw new ProtocolError(
        `Answer from ${remote.host} to locking ${
          JSON.stringify(query.path)
        } is malformed`,
      );
    }
    return body as LockLease;
  } finally {
    ex.done();
  }
}

/** Whether `value` has the shape of a `/v1/stat` answer (an answer that does not is not used). */
function isStatEntry(value: unknown): value is StatEntry {
  const e = value as Partial<StatEntry> | null | undefined;
  return typeof e === "object" && e !== null &&
    (e.type === "file" || e.type === "dir" || e.type === "symlink") &&
    typeof e.size === "number" && typeof e.mtime === "number" &&
    typeof e.mode === "number";
}

/** The upload status told with a lease, when well formed (else undefined: asked for later). */
function uploadOf(
  value: unknown,
  host: string,
): HeldUpload | null | undefined {
  if (value === null) return null;
  if (value === undefined) return undefined;
  try {
    return checkStatus(value, host);
  } catch {
    return undefined;
  }
}
