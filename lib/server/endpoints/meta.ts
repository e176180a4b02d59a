/** `/v1/health` (who answers) and `/v1/stat` (one entry's type, size, time, mode and ETag). */
import { VERSION } from "../../shared/version.ts";
import {
  API,
  API_VERSION,
  type Health,
  type StatEntry,
} from "../../shared/wire.ts";
import type { Endpoint, ServerContext } from "../context.ts";
import { json, requirePath } from "../http.ts";
import { hasHoles, statEntry } from "./_checked.ts";

/** `GET /v1/health`: name, version, API version and host name. */
export const healthEndpoint: Endpoint = {
  path: API.health,
  methods: ["GET", "HEAD"],
  run: health,
};

/** `GET /v1/stat?path=`: one checked entry. */
export const statEndpoint: Endpoint = {
  path: API.stat,
  methods: ["GET", "HEAD"],
  run: stat,
};

function health(ctx: ServerContext): Promise<Response> {
  const body: Health = {
    name: "hsyncd",
    version: VERSION,
    api: API_VERSION,
    host: ctx.options.hostname,
  };
  return Promise.resolve(json(body));
}

async function stat(ctx: ServerContext, _request: Request, url: URL) {
  return json(await statOf(ctx, requirePath(url)));
}

/** What `GET /v1/stat` answers for `path` (its refusals thrown as HttpError). */
export async function statOf(
  ctx: ServerContext,
  path: string,
): Promise<StatEntry> {
  const checked = await ctx.guard.check(path);
  const entry = statEntry(checked.info, checked.type);
  if (checked.type === "file" && hasHoles(checked.info)) entry.sparse = true;
  return entry;
}
