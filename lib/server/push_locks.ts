/**
 * The leases of push destinations (`/v1/lock`): one push at a time writes
 * into a directory. Kept in memory only: a restart of hsyncd forgets them,
 * as it ends every push in progress anyway. A lease lapses unless renewed,
 * so a client killed with its lease held blocks nobody for long.
 *
 * While a lease is held, the requests of its push that name the lease's
 * token and a run (`x-hsync-upload-session`, `x-hsync-push-run`) are
 * counted as they complete, so that a push's last requests (its
 * directories' times, the release) can be sent with the others still in
 * flight and wait here until those are done (`after=N`), instead of a round
 * trip after their answers.
 */
import { HttpError } from "../shared/errors.ts";
import { LEASE_TOKEN, newLeaseToken } from "../shared/lease_token.ts";
import type { LockLease } from "../shared/wire.ts";
import { within } from "./jail/rules.ts";
import { badQuery } from "./http.ts";

/** Runs of one token counted at most (a run again after a kill is a new one). */
const MAX_RUNS = 4;

/** What the requests of one run of a push have come to so far. */
interface RunCount {
  /** Requests completed (answered, whatever the status). */
  done: number;
  /** Whether one of them was refused or failed (status 400 or more). */
  failed: boolean;
}

/** The runs of the pushes holding one token, and the requests waiting on them. */
interface TokenRuns {
  runs: Map<string, RunCount>;
  /** Woken at every completion of the token's requests and when its last lease goes. */
  waiters: Set<() => void>;
}

/** One lease held. */
interface Lease {
  token: string;
  /** When it was first taken (for the age a refusal tells). */
  since: number;
  /** When it lapses unless renewed. */
  expires: number;
}

/** Options of {@linkcode PushLocks}. */
export interface PushLocksOptions {
  /** How long a lease lasts without a renewal. */
  leaseMs: number;
  /** Most leases held at once; one more is answered 503 `busy`. */
  maxLeases: number;
  /** The clock (tests give a fake one). */
  now?: () => number;
}

/**
 * The leases, by the kernel's path of the destination. A lease conflicts
 * with another on the same path, a path inside it or a path it is inside:
 * two pushes into `/in` and `/in/tree` write the same files.
 */
export class PushLocks {
  readonly #leases = new Map<string, Lease>();
  /** By token, while a lease is held with it. */
  readonly #tokens = new Map<string, TokenRuns>();
  readonly #leaseMs: number;
  readonly #max: number;
  readonly #now: () => number;

  constructor(options: PushLocksOptions) {
    this.#leaseMs = options.leaseMs;
    this.#max = options.maxLeases;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Takes the lease of `key` (`shown` in messages), or renews it for
   * `token`; a lapsed lease nobody took since is taken again by its token.
   * Throws 409 `locked` while another token holds `key` or a path that
   * overlaps it, 400 for a token of the wrong shape.
   */
  take(key: string, shown: string, token?: string): LockLease {
    if (token !== undefined) checkToken(token);
    const now = this.#now();
    this.#sweep(now);
    this.#refuseOthers(key, shown, token, now);
    const held = this.#leases.get(key);
    if (held === undefined && this.#leases.size >= this.#max) {
      throw new HttpError(
        503,
        "busy",
        `Cannot lock ${
          JSON.stringify(shown)
        }: ${this.#max} push destinations are locked`,
      );
    }
    const lease: Lease = {
      token: token ?? newLeaseToken(),
      since: held?.since ?? now,
      expires: now + this.#leaseMs,
    };
    this.#leases.set(key, lease);
    if (!this.#tokens.has(lease.token)) {
      this.#tokens.set(lease.token, { runs: new Map(), waiters: new Set() });
    }
    return { token: lease.token, expires_ms: this.#leaseMs, after: true };
  }

  /** Ends the lease `token` holds on `key` (nothing when it lapsed); 409 `locked` while another token holds it. */
  release(key: string, shown: string, token: string): LockLease {
    checkToken(token);
    const now = this.#now();
    this.#sweep(now);
    const held = this.#leases.get(key);
    if (held !== undefined) {
      if (held.token !== token) throw busy(shown, held, now);
      this.#leases.delete(key);
      this.#forgetUnheld();
    }
    return { token, expires_ms: 0 };
  }

  /**
   * Counts a completed request of run `run` of the push holding `token`
   * (`failed`: answered 400 or more); nothing when no lease is held with
   * that token or either is not of a token's shape.
   */
  completed(token: string | null, run: string | null, failed: boolean): void {
    if (token === null || run === null || !LEASE_TOKEN.test(run)) return;
    const held = this.#tokens.get(token);
    if (held === undefined) return;
    let count = held.runs.get(run);
    if (count === undefined) {
      if (held.runs.size >= MAX_RUNS) {
        held.runs.delete(held.runs.keys().next().value!);
      }
      held.runs.set(run, count = { done: 0, failed: false });
    }
    count.done++;
    if (failed) count.failed = true;
    for (const wake of held.waiters) wake();
  }

  /**
   * Waits until `n` requests of run `run` of the push holding `token` have
   * completed, none refused or failed (at most `maxMs`, or until `signal`
   * aborts). Undefined when they have; else why not (nothing was done
   * then, and the push does what waited the long way). With `renew`, the
   * lease of `key` is renewed while it waits: the push is alive as long as
   * its request is, and sends no renewal meanwhile.
   */
  async settled(
    token: string,
    run: string,
    n: number,
    options: { signal: AbortSignal; maxMs: number; renew?: string },
  ): Promise<string | undefined> {
    checkToken(token);
    if (!LEASE_TOKEN.test(run)) throw badQuery("run", run, "32 hex digits");
    const deadline = this.#now() + options.maxMs;
    while (true) {
      const now = this.#now();
      this.#sweep(now);
      const held = this.#tokens.get(token);
      if (held === undefined) return "this push holds no lock (it lapsed)";
      const count = held.runs.get(run);
      if (count?.failed) return "one of its requests was refused or failed";
      if ((count?.done ?? 0) >= n) return undefined;
      if (options.signal.aborted) return "the client closed the request";
      if (now >= deadline) {
        return `its other requests did not all complete within ${
          Math.round(options.maxMs / 1000)
        } s`;
      }
      const renewed = options.renew === undefined
        ? undefined
        : this.#leases.get(options.renew);
      if (renewed?.token === token) renewed.expires = now + this.#leaseMs;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(
          wake,
          Math.min(deadline - now, this.#leaseMs / 3),
        );
        function wake() {
          clearTimeout(timer);
          held!.waiters.delete(wake);
          options.signal.removeEventListener("abort", wake);
          resolve();
        }
        held.waiters.add(wake);
        options.signal.addEventListener("abort", wake);
      });
    }
  }

  /**
   * {@linkcode settled}, or 409 `incomplete` ("Cannot `what` yet: why")
   * when the requests did not all complete: the last requests of a push
   * (its release, its directories' times) wait so.
   */
  async untilSettled(
    token: string,
    run: string,
    n: number,
    options: {
      signal: AbortSignal;
      maxMs: number;
      renew?: string;
      what: string;
    },
  ): Promise<void> {
    const why = await this.settled(token, run, n, options);
    if (why !== undefined) {
      throw new HttpError(
        409,
        "incomplete",
        `Cannot ${options.what} yet: ${why}`,
      );
    }
  }

  /** Leases held now (for tests). */
  get size(): number {
    this.#sweep(this.#now());
    return this.#leases.size;
  }

  /** Forgets the lapsed leases. */
  #sweep(now: number): void {
    let lapsed = false;
    for (const [key, lease] of this.#leases) {
      if (lease.expires > now) continue;
      this.#leases.delete(key);
      lapsed = true;
    }
    if (lapsed) this.#forgetUnheld();
  }

  /**
   * Forgets the runs of every token that holds no lease any more (once for
   * all the leases just ended), and wakes whatever waits on them.
   */
  #forgetUnheld(): void {
    if (this.#tokens.size === 0) return;
    const holding = new Set<string>();
    for (const lease of this.#leases.values()) holding.add(lease.token);
    for (const [token, held] of this.#tokens) {
      if (holding.has(token)) continue;
      this.#tokens.delete(token);
      for (const wake of held.waiters) wake();
    }
  }

  #refuseOthers(
    key: string,
    shown: string,
    token: string | undefined,
    now: number,
  ): void {
    for (const [other, lease] of this.#leases) {
      if (lease.token === token) continue;
      if (within(key, other) || within(other, key)) {
        throw busy(shown, lease, now);
      }
    }
  }
}

function checkToken(token: string): void {
  if (!LEASE_TOKEN.test(token)) {
    throw badQuery("token", token, "32 hex digits");
  }
}

function busy(shown: string, lease: Lease, now: number): HttpError {
  const age = Math.max(0, Math.round((now - lease.since) / 1000));
  return new HttpError(
    409,
    "locked",
    `Cannot lock ${JSON.stringify(shown)}: another push into ${
      JSON.stringify(shown)
    } is running (for ${age} s)`,
  );
}
