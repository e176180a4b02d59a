/** The signing of a run's requests: an hsync or OpenSSH key file, or ssh-agent's keys (loaded only by a run that signs). */
import { Buffer } from "node:buffer";
import {
  bodyDigest,
  type Identity,
  loadIdentity,
  signRequest,
} from "../shared/auth.ts";
import { ConfigError } from "../shared/errors.ts";
import { ed25519Fingerprint } from "../shared/key_fingerprint.ts";
import { isOpenSshPrivateKey } from "../shared/openssh_key.ts";
import { BODY_DIGEST_HEADER } from "../shared/wire.ts";
import type { RequestSigner } from "./transport.ts";
import {
  agentSigning,
  type Authorize,
  openSshIdentity,
  sshAuthorization,
} from "./ssh_identity.ts";

/** The signer of the key in `pem` (read from `path`, named in errors), and the key's `SHA256:...` fingerprint. */
export async function identitySigner(
  pem: string,
  path: string,
): Promise<{ sign: RequestSigner; fingerprint?: string }> {
  const { identity, publicKey } = await parseIdentity(pem, path);
  return {
    sign: signerFor(identity),
    fingerprint: ed25519Fingerprint(publicKey),
  };
}

/** The signer of ssh-agent's ed25519 keys at `sshAuthSock`, or undefined when it holds none. */
export async function agentSigner(
  sshAuthSock: string,
): Promise<RequestSigner | undefined> {
  const agent = await agentSigning(sshAuthSock);
  if (agent === undefined) return undefined;
  return Object.assign(signerFor(agent.authorize), {
    retryUnauthorized: agent.retryUnauthorized,
  });
}

/**
 * The sign hook: sets `Authorization` over method, the server the request
 * goes to (scheme, host and port of its URL), path and query, a fresh
 * timestamp and nonce, and the body's digest. A request that already
 * declares its digest in `x-hsync-content-sha256` (a range streamed from a
 * file, hashed by the sender) is signed with that digest and its body is
 * never read here; any other body is read from a clone (small requests).
 * `identity` is an hsync key, or makes the header itself (SSH keys).
 */
export function signerFor(
  identity: Identity | Authorize,
): (request: Request) => Promise<void> {
  const authorize: Authorize = typeof identity === "function"
    ? identity
    : (method, url, options) => signRequest(identity, method, url, options);
  return async (request) => {
    const declared = request.headers.get(BODY_DIGEST_HEADER);
    let bodySha256: string | undefined;
    if (declared !== null && /^[0-9a-f]{64}$/.test(declared)) {
      // A body the sender hashed (a range of a file, or a buffer sent
      // outside this Request): signed as declared, never read here.
      bodySha256 = declared;
    } else if (
      request.body === null && request.method !== "GET" &&
      request.method !== "HEAD"
    ) {
      // The server cannot tell a POST without a body from one with an empty
      // body: say there is none.
      request.headers.set(BODY_DIGEST_HEADER, bodyDigest(undefined));
    } else if (request.body !== null) {
      // The clone leaves the original body unread for fetch.
      const body = new Uint8Array(await request.clone().arrayBuffer());
      bodySha256 = bodyDigest(body);
      request.headers.set(BODY_DIGEST_HEADER, bodySha256);
    }
    request.headers.set(
      "authorization",
      await authorize(request.method, new URL(request.url), { bodySha256 }),
    );
  };
}

async function parseIdentity(
  pem: string,
  path: string,
): Promise<{ identity: Identity | Authorize; publicKey: string }> {
  try {
    if (isOpenSshPrivateKey(pem)) {
      const ssh = await openSshIdentity(pem, path);
      return {
        identity: (method, url, options) =>
          sshAuthorization(ssh, method, url, options),
        publicKey: Buffer.from(ssh.raw).toString("base64"),
      };
    }
    const identity = await loadIdentity(pem, path);
    return { identity, publicKey: identity.publicKey };
  } catch (error) {
    throw new ConfigError(
      error instanceof Error ? error.message : String(error),
    );
  }
}
