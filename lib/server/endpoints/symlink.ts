/** `/v1/symlink` (push, `-l`): a symbolic link below `Writable_path`, whose text stays inside it. */
import { HttpError } from "../../shared/errors.ts";
import {
  API,
  linkTimeSettable,
  type SymlinkRequest,
} from "../../shared/wire.ts";
import { waitForSlot } from "../admission.ts";
import type { Endpoint, ServerContext } from "../context.ts";
import { json, requirePath } from "../http.ts";
import { MAX_LINK_TEXT } from "../jail/write_links.ts";
import { readJsonBody } from "../request_body.ts";
import { statEntry } from "./_checked.ts";

/** `POST /v1/symlink?path=P` with a `SymlinkRequest`. */
export const symlinkEndpoint: Endpoint = {
  path: API.symlink,
  methods: ["POST"],
  run: symlink,
};

async function symlink(ctx: ServerContext, request: Request, url: URL) {
  const target = ctx.writeJail.target(requirePath(url));
  const body = parseSymlink(await readJsonBody(request, 64 * 1024));
  const release = await waitForSlot(ctx, ctx.uploadJobs, request, "symlink");
  try {
    return json(
      statEntry(
        ctx.writeJail.symlink(target, body.target, body.mtime),
        "symlink",
      ),
    );
  } finally {
    release();
  }
}

function parseSymlink(body: unknown): SymlinkRequest {
  const { target, mtime } = (body ?? {}) as {
    target?: unknown;
    mtime?: unknown;
  };
  if (
    typeof body !== "object" || body === null || Array.isArray(body) ||
    typeof target !== "string" ||
    new TextEncoder().encode(target).length > MAX_LINK_TEXT ||
    (mtime !== undefined &&
      !(Number.isSafeInteger(mtime) && linkTimeSettable(mtime as number)))
  ) {
    throw new HttpError(
      400,
      "bad_request",
      `Invalid symlink request: expected {"target": text of at most ${MAX_LINK_TEXT} bytes[, "mtime": whole milliseconds since 1970]}`,
    );
  }
  return mtime === undefined ? { target } : { target, mtime: mtime as number };
}
