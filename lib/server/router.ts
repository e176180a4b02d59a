/**
 * The router of hsyncd: the table of endpoints (one file each under
 * endpoints/; a new one is one line here) and the dispatch of a request to
 * one of them by path and method.
 */
import { HttpError } from "../shared/errors.ts";
import { API_VERSION } from "../shared/wire.ts";
import type { Endpoint, ServerContext } from "./context.ts";
import { bundleEndpoint } from "./endpoints/bundle.ts";
import { extentsEndpoint } from "./endpoints/extents.ts";
import { deleteEndpoint } from "./endpoints/delete.ts";
import { fileEndpoint } from "./endpoints/file.ts";
import { globEndpoint } from "./endpoints/glob.ts";
import { hashEndpoint } from "./endpoints/hash.ts";
import { listEndpoint } from "./endpoints/list.ts";
import { healthEndpoint, statEndpoint } from "./endpoints/meta.ts";
import { watchEndpoint } from "./endpoints/watch.ts";
import { commitEndpoint } from "./endpoints/commit.ts";
import { linkEndpoint } from "./endpoints/link.ts";
import { lockEndpoint } from "./endpoints/lock.ts";
import { mkdirEndpoint } from "./endpoints/mkdir.ts";
import { symlinkEndpoint } from "./endpoints/symlink.ts";
import { uploadEndpoint } from "./endpoints/upload.ts";
import { uploadBundleEndpoint } from "./endpoints/upload_bundle.ts";
import { errorResponse } from "./error_status.ts";
import { requestAuthority } from "./server_names.ts";

/** Every endpoint of API v1. */
export const ENDPOINTS: readonly Endpoint[] = [
  healthEndpoint,
  statEndpoint,
  listEndpoint,
  globEndpoint,
  fileEndpoint,
  hashEndpoint,
  extentsEndpoint,
  bundleEndpoint,
  watchEndpoint,
  uploadEndpoint,
  commitEndpoint,
  uploadBundleEndpoint,
  mkdirEndpoint,
  symlinkEndpoint,
  linkEndpoint,
  deleteEndpoint,
  lockEndpoint,
];

const BY_PATH = new Map(ENDPOINTS.map((e) => [e.path, e]));

/**
 * Answers an admitted request with its endpoint: 400 for a `Host` that is
 * not a bare host[:port], 404 for an unknown path, 405 (with `Allow`) for a
 * method the endpoint does not take; a HEAD gets the GET's headers alone.
 */
export async function route(
  ctx: ServerContext,
  request: Request,
  url: URL,
): Promise<Response> {
  // Deno builds the URL from the Host header and the request target: a Host
  // holding a path (`127.0.0.1/v1/file?path=...#`) would route the request
  // somewhere its request line does not say, past any proxy or firewall
  // that reads request lines. Only a bare host[:port] is taken.
  if (requestAuthority(request) === undefined) {
    throw new HttpError(
      400,
      "bad_request",
      `Cannot serve a request whose Host is not a host name or address with an optional port: ${
        JSON.stringify((request.headers.get("host") ?? "").slice(0, 100))
      }`,
    );
  }
  const endpoint = BY_PATH.get(url.pathname);
  if (endpoint === undefined) {
    throw new HttpError(
      404,
      "not_found",
      `No endpoint ${JSON.stringify(url.pathname)} in API v${API_VERSION}`,
    );
  }
  if (!endpoint.methods.includes(request.method)) {
    const response = errorResponse(
      new HttpError(
        405,
        "method_not_allowed",
        `Method ${request.method} is not allowed on ${url.pathname}: use ${
          endpoint.methods.join(" or ")
        }`,
      ),
    );
    response.headers.set("allow", endpoint.methods.join(", "));
    return response;
  }
  const response = await endpoint.run(ctx, request, url);
  if (request.method === "HEAD" && response.body !== null) {
    await response.body.cancel();
    return new Response(null, {
      status: response.status,
      headers: response.headers,
    });
  }
  return response;
}
