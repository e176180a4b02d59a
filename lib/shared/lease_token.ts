/** The token of a push's lease (`/v1/lock`): chosen by the client (or by hsyncd for a client that sends none), 128 random bits in hex. */

/** The shape of a token. */
export const LEASE_TOKEN = /^[0-9a-f]{32}$/;

/** A fresh token: 128 random bits in hex. */
export function newLeaseToken(): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(16)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}
