/** `/v1/glob`: the entries an absolute glob names, expanded through the jail as a listing walks, as sorted NDJSON lines. */
import { HttpError } from "../../shared/errors.ts";
import { API, type GlobMatch } from "../../shared/wire.ts";
import { waitForSlot } from "../admission.ts";
import type { Endpoint, ServerContext } from "../context.ts";
import { baseHeaders, optionalInteger } from "../http.ts";
import { statEntry } from "./_checked.ts";
import { expandGlob, parseGlob } from "./glob_walk.ts";

/** `GET /v1/glob?pattern=G[&maxEntries=N]` (N capped by the server's `globMaxMatches`). */
export const globEndpoint: Endpoint = {
  path: API.glob,
  methods: ["GET", "HEAD"],
  run: glob,
};

async function glob(ctx: ServerContext, request: Request, url: URL) {
  const pattern = url.searchParams.get("pattern");
  if (pattern === null) {
    throw new HttpError(
      400,
      "bad_request",
      'Missing query parameter "pattern"',
    );
  }
  const glob = parseGlob(pattern);
  const asked = optionalInteger(url, "maxEntries");
  const max = Math.min(asked ?? Infinity, ctx.limits.globMaxMatches);
  // Refused or missing exactly as a listing of it would be.
  const base = await ctx.guard.check(glob.base);
  if (glob.rest.length === 0) {
    return ndjson([{ path: base.path, ...statEntry(base.info, base.type) }]);
  }
  // A glob reads directories as a listing does: it waits for the same slot.
  const release = await waitForSlot(ctx, ctx.listings, request, "glob");
  try {
    const matches = await expandGlob(
      {
        guard: ctx.guard,
        reads: ctx.directoryReads,
        max,
        signal: request.signal,
      },
      glob,
      base,
    );
    return ndjson(matches);
  } finally {
    release();
  }
}

function ndjson(matches: GlobMatch[]): Response {
  const headers = baseHeaders("application/x-ndjson; charset=utf-8");
  headers.set("cache-control", "no-store");
  const body = matches.map((m) => JSON.stringify(m) + "\n").join("");
  return new Response(body, { headers });
}
