/** Whether a host named on the command line, not a `[host:NAME]` profile, can be resolved: one clear line when it cannot. */
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { ConnectError } from "../shared/errors.ts";

/**
 * Resolves `host` (not an IP address) with the system's resolver (hosts
 * file, DNS); a name that does not resolve is a `ConnectError` (the server
 * could not be reached) saying it is no profile either, since a mistyped
 * profile name is the likely cause.
 */
export async function checkHostResolves(
  host: string,
  resolve: (host: string) => Promise<unknown> = lookup,
): Promise<void> {
  if (isIP(host) !== 0) return;
  try {
    await resolve(host);
  } catch (error) {
    throw new ConnectError(
      `"${host}" is neither a [host:${host}] profile nor a resolvable host`,
      { cause: error },
    );
  }
}
