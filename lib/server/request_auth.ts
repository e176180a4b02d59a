/** Signed requests of hsyncd: the signature, the server it is bound to and the body's digest, checked before the body is read. */
import { bodyDigest, type Verifier } from "../shared/auth.ts";
import { API, BODY_DIGEST_HEADER } from "../shared/wire.ts";
import { HttpError } from "../shared/errors.ts";
import type { ServerLimits } from "./limits.ts";
import {
  keepSignedDigest,
  keepVerifiedBody,
  readBody,
} from "./request_body.ts";
import { requestAuthority, type ServerNames } from "./server_names.ts";

/** What {@linkcode authenticate} checks a request against. */
export interface AuthOptions {
  /** Verifies a signature. */
  verifier?: Verifier;
  /** The names (and the scheme) a signature may be bound to. */
  serverNames?: ServerNames;
  /** Told the reason of each 401 (the client is told nothing). */
  onUnauthorized?: (reason: string, request: Request, remote: string) => void;
}

/**
 * `error` code of a 401 for a request sent to a name this server does not
 * have: the one refusal whose reason the client is told, as it gives away
 * nothing about keys and its fix is on the client's or the admin's side.
 */
export const UNKNOWN_SERVER_NAME = "unknown_server_name";

function unauthorized(): HttpError {
  return new HttpError(401, "unauthorized", "Authentication required");
}

/**
 * Verifies the request signature before any body is read: a request with a
 * body declares the body's SHA-256 in `x-hsync-content-sha256` (the value
 * the signature covers), so an unsigned or forged request costs no body
 * reading. The signature must be bound to the server the request was sent
 * to (its `Host`), and that must be one of this server's names, so a request
 * signed for another server is refused here. An upload range's body is left
 * to its endpoint, which streams it and checks the digest at its end. Any
 * other signed body is then read
 * within the bundle body limit, checked against the declared digest and
 * kept for the endpoint's `readJsonBody` (the request itself, and its
 * signal, stay as they are). A refusal says nothing more than 401 (but
 * for {@linkcode UNKNOWN_SERVER_NAME}); its reason goes to `onUnauthorized`.
 */
export async function authenticate(
  options: AuthOptions,
  request: Request,
  url: URL,
  remote: string,
  limits: ServerLimits,
): Promise<void> {
  const refuse = (reason: string, told?: HttpError) => {
    try {
      options.onUnauthorized?.(reason, request, remote);
    } catch {
      // A failing logger must not change the answer.
    }
    return told ?? unauthorized();
  };
  let declared = "-";
  if (request.body !== null) {
    declared = request.headers.get(BODY_DIGEST_HEADER) ?? "";
    if (!/^([0-9a-f]{64}|-)$/.test(declared)) {
      throw refuse(`malformed ${BODY_DIGEST_HEADER}`);
    }
  }
  const authority = requestAuthority(request);
  if (authority === undefined) {
    throw refuse(
      `Host ${
        JSON.stringify((request.headers.get("host") ?? "").slice(0, 300))
      } is not host[:port] or disagrees with the request target`,
    );
  }
  const server = options.serverNames?.resolve(authority, remote);
  if (server === undefined) {
    throw refuse(
      `Host "${authority}" is not one of this server's names (add it to Server_name if clients use it)`,
      // Without names (a handler built for tests) there is no name to tell about.
      options.serverNames && new HttpError(
        401,
        UNKNOWN_SERVER_NAME,
        `Host "${authority}" is not one of this server's names (add it to Server_name on the server, or connect by a name it has)`,
      ),
    );
  }
  const verdict = await options.verifier!({
    method: request.method,
    server,
    pathAndQuery: url.pathname + url.search,
    authorization: request.headers.get("authorization"),
    bodySha256: declared,
  });
  if (!verdict.ok) throw refuse(verdict.reason);
  if (request.body === null) return;
  // A range of an upload is written as it arrives (lib/server/request_body.ts's
  // streamBody): its digest is checked once it has all come, and what it
  // wrote counts for nothing when it differs.
  if (request.method === "PUT" && url.pathname === API.upload) {
    if (declared === "-") throw refuse("a range must declare its digest");
    keepSignedDigest(request, declared);
    return;
  }
  const body = await readBody(request, limits.bundleMaxBodyBytes);
  if (bodyDigest(body) !== declared) {
    throw refuse("body does not match its declared digest");
  }
  keepVerifiedBody(request, body);
}
