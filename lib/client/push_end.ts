/**
 * The end of a push sent before the answers to its last requests: its
 * directories' times (one `POST /v1/mkdir` array) and the release of its
 * lease go the moment its last bundle is posted or the PUT (or commit)
 * completing its last file in ranges is made, each with `after=N`, and
 * hsyncd does them once the requests made before have completed (see
 * `LockLease` in shared/wire.ts), instead of a round trip after their
 * answers. Any request made after them (a try again) means they may have
 * come too soon: the push then ends the long way, as it does when hsyncd
 * did not do them.
 */
import type { DirResult } from "../shared/wire.ts";
import type { PushContext } from "./push_context.ts";
import type { PushLease } from "./push_lock.ts";
import type { DirRecord, PushPlanner } from "./push_plan.ts";
import type { TaskGroup } from "./scheduler.ts";

/**
 * The tasks of a push with requests still to make: the end goes early only
 * once none has (each says so when it made its last, or ended).
 */
export class PostsLeft {
  #left = 0;
  #idle: Array<() => void> = [];

  /** One more task with requests to make; call what it returns once it made its last (more calls do nothing). */
  begin(): () => void {
    this.#left++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (--this.#left > 0) return;
      for (const resolve of this.#idle.splice(0)) resolve();
    };
  }

  /** Resolves once no task has a request left to make. */
  idle(): Promise<void> {
    if (this.#left === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }
}

/** The end sent early: whether it did all the long way would have. */
export interface EarlyEnd {
  /** True once both were done, after every request the push made before them (the directories' failures told); false: end the long way. */
  landed(): Promise<boolean>;
}

/** The kind of a task posting a bundle (`TaskGroup.count`). */
export const BUNDLE_TASK = "bundle";
/** The kind of a task sending one file in ranges. */
export const RANGED_TASK = "ranged";

/**
 * The end of a push sent the moment its last request is made (its last
 * bundle posted, the PUT that commits its last file in ranges), when only
 * such tasks are in flight then and `going()` still holds (no failure,
 * nothing to delete after); undefined: it ends the long way. Called once
 * the walk is done and the last bundle read.
 */
export async function endEarly(
  ctx: PushContext,
  lease: PushLease | undefined,
  o: {
    planner: PushPlanner;
    posts: PostsLeft;
    tasks: TaskGroup;
    going: () => boolean;
  },
): Promise<EarlyEnd | undefined> {
  if (lease === undefined || !lease.ordersLast || !o.going()) return undefined;
  await o.posts.idle();
  const tracked = o.tasks.count(BUNDLE_TASK) + o.tasks.count(RANGED_TASK);
  if (ctx.signal.aborted || !o.going() || o.tasks.size !== tracked) {
    return undefined;
  }
  return sendEndEarly(ctx, o.planner, lease);
}

/**
 * Sends the end of the push now, with every request it made so far
 * perhaps still in flight; undefined when it cannot go early (more
 * directories than one array holds, a dry run, a server that would not
 * wait: the push ends the long way).
 */
export function sendEndEarly(
  ctx: PushContext,
  planner: PushPlanner,
  lease: PushLease,
): EarlyEnd | undefined {
  const last = planner.lastDirs();
  // hsyncd counts the requests that carry the lease's token as their session.
  if (
    last === undefined || !lease.ordersLast || ctx.push.session !== lease.token
  ) return undefined;
  const push = ctx.push;
  const after = push.made;
  let made = after;
  // A request of the push that fails now (no answer, or a refusal) may
  // never reach hsyncd, which would wait for it: they end the long way.
  const stop = new AbortController();
  const unlisten = push.onFailure(() => stop.abort());
  const signal = AbortSignal.any([ctx.signal, stop.signal]);
  let dirs: Promise<DirResult[] | undefined> = Promise.resolve([]);
  if (last.dirs.length > 0) {
    dirs = push.mkdirs(last.asked, signal, after).catch(() => undefined);
    made++;
  }
  // After the directories' times too: they are a request of the run.
  const released = lease.releaseAfter(push.run, made, signal);
  return {
    async landed() {
      const [results, gone] = await Promise.all([dirs, released]);
      unlisten();
      if (
        !gone || results === undefined || push.made !== made ||
        ctx.signal.aborted
      ) return false;
      planner.dirsAnswered(last.dirs as DirRecord[], results, "");
      return true;
    },
  };
}
