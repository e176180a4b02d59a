/**
 * What to do about a 401: the client knows whether it signed, with which
 * key, and what the server's clock said, so "no key" and "this key was
 * refused" get different lines, each naming the file or fingerprint at hand.
 */
import { join } from "node:path";
import { DEFAULT_SKEW_MS } from "../shared/wire.ts";
import { ConnectError, HttpError } from "../shared/errors.ts";

/** A 401 from hsyncd, with the server's clock (its `Date` header) when it sent one. */
export class Unauthorized extends HttpError {
  /** Milliseconds since the epoch by the server's clock, when it answered. */
  readonly serverTime?: number;
  constructor(code: string, message: string, serverTime?: number) {
    super(401, code, message);
    this.name = "Unauthorized";
    this.serverTime = serverTime;
  }
}

/** `error` code of hsyncd's 401 for a request sent to a name it does not have (lib/server/request_auth.ts). */
const UNKNOWN_SERVER_NAME = "unknown_server_name";

/** What the client knows about how it authenticated. */
export interface AuthFacts {
  /** `host:port` of the server, for the line. */
  host: string;
  /** Whether requests were signed. */
  signed: boolean;
  /** The key file used, if any. */
  identityFile?: string;
  /** `SHA256:...` of the key used, if any. */
  fingerprint?: string;
  /** `HSYNC_DIR`, where `hsync keygen` writes the key. */
  hsyncDir: string;
  /** This machine's clock (ms since the epoch); a seam for tests. */
  now?: () => number;
}

/**
 * A run-stopping 401 (`ConnectError` with status 401) made into one line
 * that says what to do; any other error is returned as it is.
 */
export function withAuthAdvice(error: unknown, facts: AuthFacts): unknown {
  if (!(error instanceof ConnectError) || error.status !== 401) return error;
  const cause = error.cause instanceof HttpError ? error.cause : undefined;
  const line = adviceFor(facts.host, cause, facts);
  return new ConnectError(line, { status: 401, cause: error.cause });
}

function adviceFor(
  host: string,
  cause: HttpError | undefined,
  facts: AuthFacts,
): string {
  if (!facts.signed) {
    return `${host} requires a key: run "hsync keygen" and add the public line of "${
      join(facts.hsyncDir, "id_ed25519.pub")
    }" to the server's Authorized_keys`;
  }
  const key = `key ${facts.fingerprint ?? "(unknown fingerprint)"}${
    facts.identityFile === undefined ? "" : ` ("${facts.identityFile}")`
  }`;
  if (cause?.code === UNKNOWN_SERVER_NAME) {
    return `${host} refused ${key}: ${cause.message}`;
  }
  const serverTime = cause instanceof Unauthorized
    ? cause.serverTime
    : undefined;
  if (serverTime !== undefined) {
    const ahead = (facts.now ?? Date.now)() - serverTime;
    // The Date header has whole seconds: a few seconds short of the limit is enough.
    if (Math.abs(ahead) > DEFAULT_SKEW_MS - 5_000) {
      const minutes = Math.round(Math.abs(ahead) / 60_000);
      return `${host} refused ${key}: this machine's clock is ${minutes} minutes ${
        ahead > 0 ? "ahead of" : "behind"
      } the server's (signatures are accepted within ${
        DEFAULT_SKEW_MS / 60_000
      } minutes; set both clocks right)`;
    }
  }
  const pub = facts.identityFile === undefined
    ? ""
    : ` (in "${facts.identityFile}.pub")`;
  return `${host} refused ${key}: add its public line${pub} to the server's Authorized_keys`;
}
