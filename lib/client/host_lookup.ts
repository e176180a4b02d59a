/** Whether a host named on the command line, not a `[host:NAME]` profile, can be resolved: one clear line when it cannot. */
import { ConnectError } from "../shared/errors.ts";

/**
 * Resolves `host` (not an IP address) with the system's resolver (hosts
 * file, DNS); a name that does not resolve is a `ConnectError` (the server
 * could not be reached) saying it is no profile either, since a mistyped
 * profile name is the likely cause. Node's resolver is loaded only for a
 * host that is not a dotted IPv4 address.
 */
export async function checkHostResolves(
  host: string,
  resolve?: (host: string) => Promise<unknown>,
): Promise<void> {
  if (isDottedIpv4(host)) return;
  const { isIP } = await import("node:net");
  if (isIP(host) !== 0) return;
  try {
    await (resolve ?? (await import("node:dns/promises")).lookup)(host);
  } catch (error) {
    throw new ConnectError(
      `"${host}" is neither a [host:${host}] profile nor a resolvable host`,
      { cause: error },
    );
  }
}

/** `a.b.c.d`, each a number up to 255: an address, nothing to resolve. */
function isDottedIpv4(host: string): boolean {
  const parts = host.split(".");
  return parts.length === 4 &&
    parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255);
}
