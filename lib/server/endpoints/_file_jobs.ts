/** Work that reads a whole checked file (a hash, a scan for holes): one job per slot of `hashJobs`, on the opened, proven handle. */
import { clientGone, waitForSlot } from "../admission.ts";
import type { ServerContext } from "../context.ts";
import type { CheckedPath, OpenedFile } from "../jail/path_guard.ts";

/**
 * Runs `job` on the checked regular file opened through the jail, once a
 * slot of `ctx.hashJobs` is free for the request's peer (503 `busy` when
 * the queues are full, 499 when the client left meanwhile); closes the file
 * and frees the slot whatever happens. `action` names the job in a 503.
 */
export async function fileJob<T>(
  ctx: ServerContext,
  request: Request,
  checked: CheckedPath,
  action: string,
  job: (opened: OpenedFile) => Promise<T>,
): Promise<T> {
  // Per peer first: one peer's jobs wait in its own line, not in everyone's.
  const release = await waitForSlot(ctx, ctx.hashJobs, request, action);
  try {
    if (request.signal.aborted) throw clientGone();
    const opened = await ctx.guard.openFile(checked);
    try {
      return await job(opened);
    } finally {
      await opened.close();
    }
  } finally {
    release();
  }
}
