/** Signing with SSH keys: an OpenSSH ed25519 key file, or the ed25519 keys of ssh-agent; always in the SSHSIG form with namespace `hsync`. */
import { Buffer } from "node:buffer";
import { authorization, SSH_SCHEME } from "../shared/auth.ts";
import {
  importSeed,
  isOpenSshPrivateKey,
  parseOpenSshPrivateKey,
  parseSshPublicLine,
  publicKeyOfPrivateFile,
  sshPublicLine,
} from "../shared/openssh_key.ts";
import { ConfigError, reason } from "../shared/errors.ts";
import { type RawSigner, signSshsig } from "../shared/sshsig.ts";
import { type AgentKey, SshAgent } from "./ssh_agent.ts";

/** An SSH key hsync signs with. */
export interface SshIdentity {
  /** The raw 32-byte public key. */
  raw: Uint8Array;
  sign: RawSigner;
}

/** Makes the `Authorization` value of a request: method, URL and the body's digest when it has one. */
export type Authorize = (
  method: string,
  url: URL,
  options: { bodySha256?: string },
) => Promise<string>;

/** The identity of an unencrypted OpenSSH ed25519 key file; `TypeError` in one line naming `source` otherwise. */
export async function openSshIdentity(
  text: string,
  source: string,
): Promise<SshIdentity> {
  const key = parseOpenSshPrivateKey(text, source);
  const privateKey = await importSeed(key.seed);
  return {
    raw: key.publicKey,
    sign: async (data) =>
      new Uint8Array(
        await crypto.subtle.sign({ name: "Ed25519" }, privateKey, data),
      ),
  };
}

/** The `Authorization` value of a request signed by an SSH key: {@linkcode SSH_SCHEME}, its `sig` the binary SSHSIG over the request text. */
export async function sshAuthorization(
  identity: SshIdentity,
  method: string,
  url: URL,
  options: { body?: Uint8Array; bodySha256?: string; now?: number } = {},
): Promise<string> {
  return await authorization(
    SSH_SCHEME,
    Buffer.from(identity.raw).toString("base64"),
    method,
    url,
    options,
    (text) => signSshsig(identity.raw, text, identity.sign),
  );
}

/** Agent keys tried in turn at most, as ssh's default of a few. */
export const MAX_AGENT_KEYS = 5;

/** Signing through ssh-agent: the request signer, and the hook that moves to the agent's next key on a 401. */
export interface AgentSigning {
  authorize: Authorize;
  /**
   * Called with a request refused with 401: true when it should be sent
   * again, signed by another key (the next one, unless another refusal
   * moved on already).
   */
  retryUnauthorized: (request: Request) => boolean;
  /** The keys, for messages. */
  keys: AgentKey[];
}

/**
 * Signing with the ed25519 keys of the agent at `socket` (the first
 * {@linkcode MAX_AGENT_KEYS}), starting with the first; undefined when the
 * agent holds none or cannot be reached (requests then go unsigned, as ssh
 * goes on without an agent).
 */
export async function agentSigning(
  socket: string,
): Promise<AgentSigning | undefined> {
  const agent = new SshAgent(socket);
  let keys: AgentKey[];
  try {
    keys = (await agent.ed25519Keys()).slice(0, MAX_AGENT_KEYS);
  } catch {
    return undefined;
  }
  if (keys.length === 0) return undefined;
  const names = keys.map((k) => Buffer.from(k.raw).toString("base64"));
  let current = 0;
  return {
    keys,
    authorize: (method, url, options) => {
      const key = keys[current];
      return sshAuthorization(
        { raw: key.raw, sign: (data) => agent.sign(key, data) },
        method,
        url,
        options,
      );
    },
    retryUnauthorized: (request) => {
      const used = /\bkey=([A-Za-z0-9+/=]+)/.exec(
        request.headers.get("authorization") ?? "",
      )?.[1];
      const index = names.indexOf(used ?? "");
      if (index < 0) return false;
      if (index === current && current + 1 < keys.length) current++;
      return current !== index;
    },
  };
}

/**
 * `hsync keygen --public FILE`: the `ssh-ed25519 AAAA... comment` line for
 * Authorized_keys of an OpenSSH ed25519 key, read from its private key file
 * (even an encrypted one: the public key is stored in clear) or its .pub
 * line. `ConfigError` in one line naming the file otherwise.
 */
export async function publicLineOfFile(path: string): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new ConfigError(`Cannot read key file "${path}": ${reason(error)}`);
  }
  const fail = (why: string) =>
    new ConfigError(`Cannot print a public key of "${path}": ${why}`);
  if (isOpenSshPrivateKey(text)) {
    const key = publicKeyOfPrivateFile(text);
    if (typeof key === "string") throw fail(key);
    return sshPublicLine(key.raw, key.comment);
  }
  const line = parseSshPublicLine(text.split("\n")[0]);
  if (line === undefined) {
    throw fail("it is neither an OpenSSH private key nor an ssh-ed25519 line");
  }
  if (!line.ok) throw fail(line.reason);
  return sshPublicLine(line.raw, line.comment);
}
