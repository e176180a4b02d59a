/** `/v1/delete` (push `--delete`): one file, symbolic link or empty directory below `Writable_path` removed, through the write jail. */
import { HttpError } from "../../shared/errors.ts";
import { API, type DeleteResult, HEADER } from "../../shared/wire.ts";
import { waitForSlot } from "../admission.ts";
import type { Endpoint, ServerContext } from "../context.ts";
import { json, requirePath } from "../http.ts";

/** `POST /v1/delete?path=P`: admitted as every write (a key when the server has keys, `Writable_path`, the rules). */
export const deleteEndpoint: Endpoint = {
  path: API.delete,
  methods: ["POST"],
  run: remove,
};

async function remove(ctx: ServerContext, request: Request, url: URL) {
  const target = ctx.writeJail.target(requirePath(url));
  const session = request.headers.get(HEADER.uploadSession) ?? undefined;
  const release = await waitForSlot(ctx, ctx.uploadJobs, request, "delete");
  try {
    // Another push writing this very name would commit it back, or fail.
    if (ctx.uploads.busyFor(target, session)) {
      throw new HttpError(
        409,
        "upload_in_progress",
        `Cannot delete ${
          JSON.stringify(target.path)
        }: another push of it is in progress, retry later`,
      );
    }
    const type = ctx.writeJail.delete(target);
    const result: DeleteResult = { path: target.path, type };
    return json(result);
  } finally {
    release();
  }
}
