/** Matches client addresses against the `Allowed_host` list (IPs, IPv4 wildcards, IPv4/IPv6 CIDR). */
import ipaddr from "ipaddr.js";
import { ConfigError } from "./errors.ts";

type Address = ipaddr.IPv4 | ipaddr.IPv6;
type Test = (address: Address) => boolean;

/**
 * The canonical text of an address: brackets dropped, IPv4-mapped IPv6
 * (`::ffff:127.0.0.1`) turned into IPv4, IPv6 compressed. Text that is not an
 * IP address is returned unchanged.
 */
export function normalizeAddress(address: string): string {
  const parsed = parseAddress(address);
  return parsed === undefined ? address : parsed.toString();
}

/**
 * Whether `host` names this machine: `localhost`, or an address in
 * 127.0.0.0/8 or `::1` (brackets and IPv4-mapped forms accepted). Other
 * names are not resolved, so they count as remote.
 */
export function isLoopbackHost(host: string): boolean {
  if (host.trim().toLowerCase() === "localhost") return true;
  const parsed = parseAddress(host);
  return parsed !== undefined && parsed.range() === "loopback";
}

/**
 * Builds the `Allowed_host` test. An empty list allows every address.
 * Patterns: an exact IPv4 or IPv6 address, an IPv4 wildcard such as
 * `192.168.*.*` (`*` alone allows all), or a CIDR block such as `10.0.0.0/8`
 * or `fd00::/8`. Throws `ConfigError` naming the first invalid pattern.
 */
export function createHostMatcher(
  patterns: readonly string[],
): (address: string) => boolean {
  const tests = patterns.map((p) => p.trim()).filter((p) => p !== "").map(
    compile,
  );
  if (tests.length === 0) return () => true;
  return (address) => {
    const parsed = parseAddress(address);
    if (parsed === undefined) return false;
    return tests.some((test) => test(parsed));
  };
}

function parseAddress(text: string): Address | undefined {
  let s = text.trim();
  if (s.startsWith("[") && s.endsWith("]")) s = s.slice(1, -1);
  if (!ipaddr.isValid(s)) return undefined;
  try {
    return ipaddr.process(s);
  } catch {
    return undefined;
  }
}

function invalid(pattern: string): ConfigError {
  return new ConfigError(
    `Invalid Allowed_host pattern "${pattern}": expected an IP address, a wildcard like 192.168.*.* or a CIDR block like 10.0.0.0/8 or fd00::/8`,
  );
}

function compile(pattern: string): Test {
  if (pattern === "*") return () => true;
  if (pattern.includes("/")) return compileCidr(pattern);
  if (pattern.includes("*")) return compileWildcard(pattern);
  if (!isStrictAddress(pattern)) throw invalid(pattern);
  const expected = ipaddr.process(pattern);
  return (address) =>
    address.kind() === expected.kind() &&
    address.toNormalizedString() === expected.toNormalizedString();
}

function isStrictAddress(text: string): boolean {
  if (text.includes(":")) return ipaddr.IPv6.isValid(text);
  return ipaddr.IPv4.isValidFourPartDecimal(text);
}

function compileCidr(pattern: string): Test {
  const slash = pattern.indexOf("/");
  const base = pattern.slice(0, slash);
  const bits = pattern.slice(slash + 1);
  if (!isStrictAddress(base) || !/^\d{1,3}$/.test(bits)) throw invalid(pattern);
  let range: [Address, number];
  try {
    range = ipaddr.parseCIDR(pattern);
  } catch {
    throw invalid(pattern);
  }
  let [network, prefix] = range;
  // Peers are normalised to IPv4, so an IPv4-mapped IPv6 block becomes the IPv4 block it covers.
  if (
    network.kind() === "ipv6" &&
    (network as ipaddr.IPv6).isIPv4MappedAddress() &&
    prefix >= 96
  ) {
    network = (network as ipaddr.IPv6).toIPv4Address();
    prefix -= 96;
  }
  const kind = network.kind();
  const block: [Address, number] = [network, prefix];
  return (address) =>
    address.kind() === kind &&
    (address as ipaddr.IPv4).match(block as [ipaddr.IPv4, number]);
}

function compileWildcard(pattern: string): Test {
  const parts = pattern.split(".");
  if (parts.length !== 4) throw invalid(pattern);
  const octets = parts.map((part) => {
    if (part === "*") return undefined;
    if (!/^\d{1,3}$/.test(part) || Number(part) > 255) throw invalid(pattern);
    return Number(part);
  });
  return (address) => {
    if (address.kind() !== "ipv4") return false;
    const bytes = address.toByteArray();
    return octets.every((o, i) => o === undefined || o === bytes[i]);
  };
}
