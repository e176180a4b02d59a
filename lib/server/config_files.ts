/**
 * The files a server configuration names that must be read before serving:
 * the TLS certificate and key, and Authorized_keys; a file that cannot be
 * used is a `ConfigError` in one line naming its key and path.
 */
import { type AuthorizedKeys, loadAuthorizedKeys } from "../shared/auth.ts";
import type { ServerSettings } from "../shared/config.ts";
import { ConfigError, describeError } from "../shared/errors.ts";

/** The certificate and key for HTTPS, or undefined for plain HTTP. */
export async function readTls(
  settings: ServerSettings,
): Promise<{ cert: string; key: string } | undefined> {
  const { certFile, keyFile } = settings;
  if (certFile === "" && keyFile === "") return undefined;
  if (certFile === "" || keyFile === "") {
    throw new ConfigError(
      `Cannot serve HTTPS: ${
        certFile === "" ? "Key_file" : "Cert_file"
      } is set but ${certFile === "" ? "Cert_file" : "Key_file"} is not`,
    );
  }
  const read = async (key: string, path: string) => {
    try {
      return await Deno.readTextFile(path);
    } catch (error) {
      throw new ConfigError(
        `Cannot read ${key} "${path}": ${fileError(error)}`,
      );
    }
  };
  return {
    cert: await read("Cert_file", certFile),
    key: await read("Key_file", keyFile),
  };
}

/** The request verifier when `Authorized_keys` is set; `ConfigError` in one line when the file cannot be used. */
export async function readAuth(
  settings: ServerSettings,
): Promise<AuthorizedKeys | undefined> {
  if (settings.authorizedKeys === "") return undefined;
  return await loadAuthorizedKeys(settings.authorizedKeys);
}

/** The cause of a failed file operation, without Deno's os error details. */
export function fileError(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such file or directory";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.IsADirectory) return "is a directory";
  return describeError(error);
}
