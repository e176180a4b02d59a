/**
 * The leases of push destinations (`/v1/lock`): one push at a time writes
 * into a directory. Kept in memory only: a restart of hsyncd forgets them,
 * as it ends every push in progress anyway. A lease lapses unless renewed,
 * so a client killed with its lease held blocks nobody for long.
 */
import { HttpError } from "../shared/errors.ts";
import { LEASE_TOKEN, newLeaseToken } from "../shared/lease_token.ts";
import type { LockLease } from "../shared/wire.ts";
import { within } from "./jail/rules.ts";
import { badQuery } from "./http.ts";

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
    return { token: lease.token, expires_ms: this.#leaseMs };
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
    }
    return { token, expires_ms: 0 };
  }

  /** Leases held now (for tests). */
  get size(): number {
    this.#sweep(this.#now());
    return this.#leases.size;
  }

  /** Forgets the lapsed leases. */
  #sweep(now: number): void {
    for (const [key, lease] of this.#leases) {
      if (lease.expires <= now) this.#leases.delete(key);
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
