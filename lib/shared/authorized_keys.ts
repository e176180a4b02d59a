/** The lines of an `Authorized_keys` file: hsync's own `hsync-ed25519 BASE64` keys and OpenSSH's `ssh-ed25519 AAAA...` lines. */
import { Buffer } from "node:buffer";
import { parseSshPublicLine } from "./openssh_key.ts";

/** Prefix of hsync's own public key lines (`hsync keygen`). */
export const HSYNC_KEY_PREFIX = "hsync-ed25519";

/**
 * One authorised key: base64 of its raw 32 bytes, and the signature form it
 * must use. An hsync key signs the request text itself; an SSH key signs
 * only in the SSHSIG form with namespace `hsync`, so its signatures can
 * never be taken for SSH ones, nor the reverse.
 */
export interface AuthorizedKey {
  key: string;
  kind: "hsync" | "ssh";
}

/** The keys of an authorised-keys text and one warning per line skipped. */
export interface AuthorizedKeyLines {
  keys: AuthorizedKey[];
  warnings: string[];
}

/**
 * Parses an authorised-keys text: one key per line, `#` comments. An
 * OpenSSH line hsync cannot use (options before the key type, another key
 * type) is skipped with a warning naming `source` and the line; any other
 * line that is no key is a `TypeError` naming them.
 */
export function parseAuthorizedKeyLines(
  text: string,
  source: string,
): AuthorizedKeyLines {
  const out: AuthorizedKeyLines = { keys: [], warnings: [] };
  text.split("\n").forEach((line, i) => {
    const t = line.trim();
    if (t === "" || t.startsWith("#")) return;
    const ssh = parseSshPublicLine(t);
    if (ssh?.ok) {
      out.keys.push({
        key: Buffer.from(ssh.raw).toString("base64"),
        kind: "ssh",
      });
      return;
    }
    if (ssh !== undefined) {
      out.warnings.push(
        `Line ${
          i + 1
        } of Authorized_keys "${source}" is skipped: ${ssh.reason}`,
      );
      return;
    }
    const [kind, key = ""] = t.split(/\s+/);
    const raw = kind === HSYNC_KEY_PREFIX && /^[A-Za-z0-9+/]*={0,2}$/.test(key)
      ? Buffer.from(key, "base64")
      : undefined;
    if (raw === undefined || raw.length !== 32) {
      throw new TypeError(
        `Invalid public key on line ${
          i + 1
        } of "${source}": expected "${HSYNC_KEY_PREFIX} BASE64 [comment]" or "ssh-ed25519 AAAA... [comment]"`,
      );
    }
    out.keys.push({ key, kind: "hsync" });
  });
  return out;
}
