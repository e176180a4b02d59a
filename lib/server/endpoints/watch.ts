/** `/v1/watch`: a long-poll for changes under a path, telling only names the jail finds now. */
import { posix } from "node:path";
import { HttpError } from "../../shared/errors.ts";
import { API, type WatchResult } from "../../shared/wire.ts";
import type { Endpoint, ServerContext } from "../context.ts";
import { json, requirePath } from "../http.ts";

/** `GET /v1/watch?path=[&cursor=&timeout=&interval=]`: what changed since `cursor`. */
export const watchEndpoint: Endpoint = {
  path: API.watch,
  methods: ["GET"],
  run: watch,
};

const WATCH_DEFAULT_TIMEOUT_S = 25;
const WATCH_MAX_TIMEOUT_S = 120;

async function watch(ctx: ServerContext, request: Request, url: URL) {
  const checked = await ctx.guard.check(requirePath(url));
  const seconds = (
    name: string,
    fallback: number,
    min: number,
    max: number,
  ) => {
    const raw = url.searchParams.get(name);
    if (raw === null) return fallback;
    const n = Number(raw);
    if (raw === "" || !Number.isFinite(n) || n < min || n > max) {
      throw new HttpError(
        400,
        "bad_request",
        `Invalid ${name} ${
          JSON.stringify(raw)
        }: expected seconds from ${min} to ${max}`,
      );
    }
    return n;
  };
  const timeoutMs = 1000 *
    seconds("timeout", WATCH_DEFAULT_TIMEOUT_S, 0, WATCH_MAX_TIMEOUT_S);
  const pollMs = 1000 * seconds("interval", 2, 0.05, 3600);
  const stopping = () =>
    new HttpError(503, "stopping", "The server is stopping, retry later");
  // A closed hub means hsyncd is stopping: polls end now instead of holding the stop.
  if (ctx.watchHub.closed) throw stopping();
  const result = await ctx.watchHub.wait(
    checked.realPath,
    checked.type === "dir",
    url.searchParams.get("cursor"),
    { timeoutMs, pollMs, signal: request.signal },
  );
  if (ctx.watchHub.closed) throw stopping();
  // A name is told only when the jail finds it now, allowed, under the
  // watched directory: the watcher follows names and may have been raced
  // onto another directory, and a name that cannot be found cannot be told
  // apart from one of that other directory's. A removed file is therefore not
  // reported; its replacement is, once it exists.
  const visible: string[] = [];
  for (const rel of result.changed) {
    if (rel === "") {
      visible.push(rel);
      continue;
    }
    try {
      ctx.guard.checkSync(posix.join(checked.path, rel));
      visible.push(rel);
    } catch {
      // refused, missing or changed: not told
    }
  }
  const body: WatchResult = { ...result, changed: visible };
  return json(body);
}
