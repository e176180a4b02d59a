/** `/v1/link` (push, `-H`): one more name below `Writable_path` for a regular file already there. */
import { HttpError } from "../../shared/errors.ts";
import { API, type LinkRequest } from "../../shared/wire.ts";
import { waitForSlot } from "../admission.ts";
import type { Endpoint, ServerContext } from "../context.ts";
import { json, requirePath } from "../http.ts";
import { readJsonBody } from "../request_body.ts";
import { statEntry } from "./_checked.ts";

/** `POST /v1/link?path=P` with a `LinkRequest`. */
export const linkEndpoint: Endpoint = {
  path: API.link,
  methods: ["POST"],
  run: link,
};

async function link(ctx: ServerContext, request: Request, url: URL) {
  const target = ctx.writeJail.target(requirePath(url));
  const body = parseLink(await readJsonBody(request, 64 * 1024));
  const existing = ctx.writeJail.target(body.existing);
  const release = await waitForSlot(ctx, ctx.uploadJobs, request, "link");
  try {
    return json(statEntry(ctx.writeJail.link(target, existing), "file"));
  } finally {
    release();
  }
}

function parseLink(body: unknown): LinkRequest {
  const existing = (body as { existing?: unknown } | null)?.existing;
  if (
    typeof body !== "object" || Array.isArray(body) ||
    typeof existing !== "string"
  ) {
    throw new HttpError(
      400,
      "bad_request",
      'Invalid link request: expected {"existing": an absolute path}',
    );
  }
  return { existing };
}
