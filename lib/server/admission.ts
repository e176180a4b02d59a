/**
 * Admission of hsyncd's requests: what a request holds (its place among
 * requests or watches, the bytes of its body) on a ticket given back when it
 * completes, the per-kind slots endpoints wait for, and the 503 `busy` when a
 * limit refuses.
 */
import { HttpError } from "../shared/errors.ts";
import {
  type KeyedLimiter,
  LimitError,
  type Release,
} from "../shared/limiter.ts";
import { API } from "../shared/wire.ts";
import type { ServerContext } from "./context.ts";
import { BusyError } from "./error_status.ts";
import { LIMIT_TEXT } from "./limits.ts";

/**
 * What one request holds, given back together when the request completes.
 * It is counted only by {@linkcode admit}: after the Allowed_host, size and
 * signature checks, and before any byte of its body is read.
 */
export interface Ticket {
  ctx: ServerContext;
  peer: string;
  path: string;
  admitted: boolean;
  /** Whether the whole body was read (else the connection is not reused). */
  bodyRead: boolean;
  /** The request completed: whatever it takes from now on goes back at once. */
  settled: boolean;
  releases: Release[];
}

/** The ticket of each request being answered (`readBody` runs inside `authenticate`, which only has the request). */
const tickets = new WeakMap<Request, Ticket>();

/** Opens the ticket of `request` from `peer` to `path`; nothing is counted yet. */
export function openTicket(
  ctx: ServerContext,
  request: Request,
  peer: string,
  path: string,
): Ticket {
  const ticket: Ticket = {
    ctx,
    peer,
    path,
    admitted: false,
    bodyRead: false,
    settled: false,
    releases: [],
  };
  tickets.set(request, ticket);
  return ticket;
}

/** The ticket of a request being answered, if it has one. */
export function ticketOf(request: Request): Ticket | undefined {
  return tickets.get(request);
}

/** Keeps `release` until the request completes (at once when it already has). */
export function hold(ticket: Ticket, release: Release): void {
  if (ticket.settled) release();
  else ticket.releases.push(release);
}

/** The request completed: gives back everything it held. */
export function settle(ticket: Ticket): void {
  ticket.settled = true;
  for (const release of ticket.releases.splice(0)) release();
}

/** The peer address a request came from. */
export function peerOf(request: Request): string {
  return tickets.get(request)?.peer ?? "";
}

/**
 * Counts the request (once): long-polls among watches, the others among
 * requests, each in all and for its peer; 503 `busy` when a limit is
 * reached. A bundle is also refused here, before its body is read, when it
 * could not wait for a streaming slot.
 */
export function admit(ticket: Ticket): void {
  if (ticket.admitted) return;
  ticket.admitted = true;
  const { ctx, peer } = ticket;
  const watch = ticket.path === API.watch;
  const limiter = watch ? ctx.watches : ctx.requests;
  hold(
    ticket,
    taking(ctx, watch ? "watch" : "serve", () => limiter.take(peer)),
  );
  if (ticket.path === API.bundle) {
    const full = ctx.bundles.refusal(peer);
    if (full !== undefined) throw busy(ctx, "bundle", new LimitError(full));
  }
}

/** The 503 `busy` for a refusal by one of the limiters of `ctx`. */
export function busy(
  ctx: ServerContext,
  action: string,
  error: LimitError,
): BusyError {
  const what = LIMIT_TEXT[error.limit]?.(ctx.limits) ?? "the server is busy";
  return new BusyError(
    error.limit,
    `Cannot ${action} now: ${what} (limit ${error.limit}), retry later`,
  );
}

/** Runs `take`, turning a refusal into a 503 `busy`. */
export function taking<T>(
  ctx: ServerContext,
  action: string,
  take: () => T,
): T {
  try {
    return take();
  } catch (error) {
    if (error instanceof LimitError) throw busy(ctx, action, error);
    throw error;
  }
}

/**
 * Waits for a slot of `limiter` for the request's peer (its own line first,
 * so one peer's jobs wait behind each other, not in everyone's): 503 `busy`
 * when the queues are full, `gone()` when the client leaves while it waits.
 */
export async function waitForSlot(
  ctx: ServerContext,
  limiter: KeyedLimiter,
  request: Request,
  action: string,
  gone: () => HttpError = clientGone,
): Promise<Release> {
  try {
    return await limiter.acquire(peerOf(request), request.signal);
  } catch (error) {
    if (error instanceof LimitError) throw busy(ctx, action, error);
    throw gone();
  }
}

/** 499: the client closed the request before its answer was ready. */
export function clientGone(): HttpError {
  return new HttpError(499, "client_closed", "The client closed the request");
}
