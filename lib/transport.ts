/** How the client reaches the server: the HTTP client (TLS trust) and the request signer (key authentication). */
import type { ClientSettings } from "./config.ts";
import { UsageError } from "./errors.ts";

/** What every request of a run goes through. */
export interface Transport {
  /** HTTP client carrying the trusted CA; undefined for the default. */
  client?: Deno.HttpClient;
  /** Signs a request before it is sent; undefined without an identity. */
  sign?: (request: Request) => Promise<void> | void;
}

/** Builds the transport of a run from its settings. */
export function openTransport(
  settings: ClientSettings,
  _hsyncDir: string,
): Promise<Transport> {
  if (settings.tls) {
    throw new UsageError("HTTPS (--tls) is not available in this version yet");
  }
  return Promise.resolve({});
}
