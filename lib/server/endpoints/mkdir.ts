/** `/v1/mkdir` (push): a directory and its missing parents below `Writable_path`, or its time and mode set at the end of a push. */
import { API } from "../../shared/wire.ts";
import { waitForSlot } from "../admission.ts";
import type { Endpoint, ServerContext } from "../context.ts";
import {
  badQuery,
  json,
  optionalInteger,
  optionalTime,
  requirePath,
} from "../http.ts";
import { statEntry } from "./_checked.ts";

/** `POST /v1/mkdir?path=P[&mode=M][&mtime=T]`. */
export const mkdirEndpoint: Endpoint = {
  path: API.mkdir,
  methods: ["POST"],
  run: mkdir,
};

async function mkdir(ctx: ServerContext, request: Request, url: URL) {
  const path = requirePath(url);
  const mode = optionalInteger(url, "mode");
  const mtime = optionalTime(url, "mtime");
  if (mode !== undefined && mode > 0o7777) {
    throw badQuery("mode", String(mode), "permission bits");
  }
  const release = await waitForSlot(ctx, ctx.uploadJobs, request, "mkdir");
  try {
    const real = ctx.writeJail.makeDirs(path);
    const info = ctx.writeJail.setDirMeta(path, real, mtime, mode);
    return json(statEntry(info, "dir"));
  } finally {
    release();
  }
}
