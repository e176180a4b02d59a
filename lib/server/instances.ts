/**
 * Which hsyncd a daemon command is about when several share one HSYNC_DIR
 * (one pidfile per port), and what `restart` starts again: the arguments
 * the running server was started with, under the ones given to `restart`.
 */
import { resolve } from "node:path";
import { ConfigError } from "../shared/errors.ts";
import { DEFAULT_PORT, pidfilePath } from "./pidfile.ts";
import { parseServerArgs, type ServerArgs } from "./server_args.ts";

/** A pidfile's name: `hsyncd.pid` (default port) or `hsyncd-PORT.pid`. */
const PIDFILE_NAME = /^hsyncd(?:-(\d+))?\.pid$/;

/**
 * The pidfile `status`, `stop` and `restart` look at: the one of `port`
 * when `-p` named it or its pidfile exists; otherwise the only pidfile in
 * `hsyncDir`, so `hsyncd stop` finds a server started with `-p 10809`.
 * Several and no `-p` is a `ConfigError` naming their ports.
 */
export async function pidfileToManage(
  hsyncDir: string,
  port: number,
  portGiven: boolean,
): Promise<string> {
  const own = pidfilePath(hsyncDir, port);
  if (portGiven || await exists(own)) return own;
  const ports: number[] = [];
  try {
    for await (const entry of Deno.readDir(hsyncDir)) {
      const m = PIDFILE_NAME.exec(entry.name);
      if (m !== null) {
        ports.push(m[1] === undefined ? DEFAULT_PORT : Number(m[1]));
      }
    }
  } catch {
    return own;
  }
  if (ports.length === 1) return pidfilePath(hsyncDir, ports[0]);
  if (ports.length > 1) {
    throw new ConfigError(
      `Several hsyncd use HSYNC_DIR "${hsyncDir}" (ports ${
        ports.sort((a, b) => a - b).join(", ")
      }); say which with -p PORT`,
    );
  }
  return own;
}

/**
 * What `restart` starts: the arguments recorded by the running server
 * (relative paths taken from the directory it was started in), with every
 * option given to `restart` itself taking precedence.
 */
export function restartArgs(
  given: ServerArgs,
  stored: string[],
  storedCwd: string | undefined,
): ServerArgs {
  const old = parseServerArgs(stored);
  const from = (path: string | undefined) =>
    path === undefined || storedCwd === undefined
      ? path
      : resolve(storedCwd, path);
  const oldOverrides = { ...old.overrides };
  if (oldOverrides.Log_file !== undefined) {
    oldOverrides.Log_file = from(oldOverrides.Log_file);
  }
  return {
    ...given,
    configFile: given.configFile ?? from(old.configFile),
    logFile: given.logFile ?? from(old.logFile),
    overrides: { ...oldOverrides, ...given.overrides },
    debug: given.debug || old.debug,
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}
