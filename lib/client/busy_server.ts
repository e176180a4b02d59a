/** A server at one of its limits (503 `busy`): waited for, not counted as a failure, for as long as the idle timeout. */
import { HEADER } from "../shared/wire.ts";

/**
 * For a 503 `busy` from one of hsyncd's limits: how long to wait before
 * asking again (the server's `Retry-After`, plus up to half of it again at
 * random, so that clients turned away together do not return together),
 * while the first such answer to this request (`since`, undefined for the
 * first) is less than `idleMs` ago. Undefined for any other answer, or once
 * that time has passed (the 503 is then the request's error).
 */
export function busyPause(
  response: Response,
  since: number | undefined,
  idleMs: number,
): { pauseMs: number; since: number } | undefined {
  if (response.status !== 503 || !response.headers.has(HEADER.limit)) {
    return undefined;
  }
  const now = performance.now();
  const first = since ?? now;
  const seconds = Number(response.headers.get("retry-after"));
  const base = Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 1000;
  const pauseMs = Math.round(base * (1 + Math.random() / 2));
  if (now + pauseMs - first > idleMs) return undefined;
  return { pauseMs, since: first };
}
