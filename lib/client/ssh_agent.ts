/** A client of ssh-agent (draft-miller-ssh-agent) over its unix socket: list the keys, sign with one. */
import { concatBytes } from "../shared/bytes.ts";
import {
  rawFromBlob,
  SSH_ED25519,
  SshReader,
  sshString,
  sshUint32,
} from "../shared/openssh_key.ts";

const REQUEST_IDENTITIES = 11;
const IDENTITIES_ANSWER = 12;
const SIGN_REQUEST = 13;
const SIGN_RESPONSE = 14;
/** A reply longer than this is no agent's (OpenSSH caps its messages at 256 KiB). */
const MAX_REPLY = 256 * 1024;

/** One ed25519 key the agent holds. */
export interface AgentKey {
  /** The SSH public key blob, as the agent names it. */
  blob: Uint8Array;
  /** The raw 32-byte public key. */
  raw: Uint8Array;
  comment: string;
}

/** The agent at a socket path; each call is one connection (signing runs for many requests at once). */
export class SshAgent {
  constructor(readonly socket: string) {}

  /** The ed25519 keys the agent holds, in its order (other key types are left out). */
  async ed25519Keys(): Promise<AgentKey[]> {
    const r = await this.#ask(
      Uint8Array.of(REQUEST_IDENTITIES),
      IDENTITIES_ANSWER,
    );
    const keys: AgentKey[] = [];
    for (let n = r.uint32(); n > 0; n--) {
      const blob = r.string().slice();
      const comment = r.text();
      const raw = rawFromBlob(blob);
      if (raw !== undefined) keys.push({ blob, raw, comment });
    }
    return keys;
  }

  /** The raw 64-byte ed25519 signature of `data` by `key`. */
  async sign(key: AgentKey, data: Uint8Array): Promise<Uint8Array> {
    const r = await this.#ask(
      concatBytes(
        Uint8Array.of(SIGN_REQUEST),
        sshString(key.blob),
        sshString(data),
        sshUint32(0),
      ),
      SIGN_RESPONSE,
    );
    const sig = new SshReader(r.string());
    if (sig.text() !== SSH_ED25519) {
      throw new Error("ssh-agent signed with another algorithm than ed25519");
    }
    const raw = sig.string();
    if (raw.length !== 64) throw new Error("ssh-agent's signature is damaged");
    return raw;
  }

  /** Sends one message and reads the reply, which must be of type `expect` (else the agent refused). */
  async #ask(message: Uint8Array, expect: number): Promise<SshReader> {
    const conn = await Deno.connect({ transport: "unix", path: this.socket });
    try {
      await writeAll(conn, concatBytes(sshUint32(message.length), message));
      const length = new SshReader(await readExactly(conn, 4)).uint32();
      if (length < 1 || length > MAX_REPLY) {
        throw new Error(`ssh-agent replied with a ${length}-byte message`);
      }
      const reply = await readExactly(conn, length);
      if (reply[0] !== expect) {
        throw new Error(
          `ssh-agent refused (reply type ${reply[0]}, expected ${expect})`,
        );
      }
      return new SshReader(reply.subarray(1));
    } finally {
      conn.close();
    }
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) {
    at += await conn.write(bytes.subarray(at));
  }
}

async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  for (let at = 0; at < n;) {
    const got = await conn.read(out.subarray(at));
    if (got === null) throw new Error("ssh-agent closed the connection");
    at += got;
  }
  return out;
}
