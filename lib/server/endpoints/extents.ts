/** `/v1/extents`: where a file's data is (`-S`), found by scanning the opened, proven file for runs of zero blocks. */
import { HttpError } from "../../shared/errors.ts";
import { etagFor } from "../../shared/file_identity.ts";
import { API, type Extents } from "../../shared/wire.ts";
import { dataExtents } from "../../shared/zero_runs.ts";
import { clientGone } from "../admission.ts";
import type { Endpoint, ServerContext } from "../context.ts";
import { json, requirePath } from "../http.ts";
import type { OpenedFile } from "../jail/path_guard.ts";
import { requireFile } from "./_checked.ts";
import { fileJob } from "./_file_jobs.ts";

/** `GET /v1/extents?path=`: the data extents of a file, and the identity of the file scanned. */
export const extentsEndpoint: Endpoint = {
  path: API.extents,
  methods: ["GET", "HEAD"],
  run: extents,
};

async function extents(ctx: ServerContext, request: Request, url: URL) {
  const checked = await ctx.guard.check(requirePath(url));
  requireFile(checked);
  // A scan reads the whole file as a hash does: it waits for the same slots.
  return await fileJob(ctx, request, checked, "scan", async (opened) => {
    const etag = etagFor(opened.info);
    const size = opened.info.size;
    const data = await dataExtents(reader(opened, request.signal), size);
    // Extents of a file written meanwhile would describe neither version.
    if (etagFor(await opened.stat()) !== etag) {
      throw new HttpError(
        409,
        "changed",
        `Cannot scan ${
          JSON.stringify(checked.path)
        } for holes: it changed while being read, retry`,
      );
    }
    const result: Extents = { size, etag, data };
    return json(result);
  });
}

/**
 * The opened file as the sequential reader `dataExtents` takes (positioned
 * reads underneath, so only the proven descriptor is ever read); it stops
 * when the client leaves.
 */
function reader(
  opened: OpenedFile,
  signal: AbortSignal,
): Pick<Deno.FsFile, "read" | "seek"> {
  let position = 0;
  return {
    async read(buffer: Uint8Array): Promise<number | null> {
      if (signal.aborted) throw clientGone();
      const n = await opened.read(buffer, position);
      position += n;
      return n === 0 && buffer.length > 0 ? null : n;
    },
    seek(offset: number | bigint, whence: Deno.SeekMode): Promise<number> {
      // dataExtents only seeks to absolute offsets.
      if (whence !== Deno.SeekMode.Start) {
        return Promise.reject(new Error("Only absolute seeks are supported"));
      }
      position = Number(offset);
      return Promise.resolve(position);
    },
  };
}
