/** Process management of hsyncd: waiting for exit and ports, detaching, addresses; the pidfile is lib/server/pidfile.ts. */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ServerSettings } from "../shared/config.ts";
import { ConfigError } from "../shared/errors.ts";
import { RUNTIME_FLAGS } from "../shared/runtime_flags.ts";
import {
  isAlive,
  type PidfileState,
  type PidInfo,
  type ProcessProbe,
  readPidfile,
  systemProbe,
} from "./pidfile.ts";

// Re-exported so callers keep one import for the daemon's helpers.
export {
  checkPidfile,
  DEFAULT_PORT,
  identifyProcess,
  isAlive,
  isHsyncdExecutable,
  ownProcessStart,
  parsePidfile,
  parseProcFacts,
  parseUids,
  pidfileDirProblem,
  pidfilePath,
  readPidfile,
  removePidfile,
  systemProbe,
  writePidfile,
} from "./pidfile.ts";
export type {
  PidfileState,
  PidInfo,
  ProcessFacts,
  ProcessProbe,
  ProcessVerdict,
  SelfFacts,
} from "./pidfile.ts";

/** Polls until the process is gone; false when it is still alive after `timeoutMs`. */
export async function waitUntilGone(
  info: PidInfo,
  timeoutMs: number,
  probe: ProcessProbe = systemProbe,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (await isAlive(info, probe)) {
    if (Date.now() >= deadline) return false;
    await delay(50);
  }
  return true;
}

/** Polls until `host:port` can be bound; false when still in use after `timeoutMs`. */
export async function waitForPortFree(
  host: string,
  port: number,
  timeoutMs: number,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    try {
      Deno.listen({ hostname: host, port }).close();
      return true;
    } catch (error) {
      // Any other failure is the new server's to report when it binds.
      if (!(error instanceof Deno.errors.AddrInUse)) return true;
    }
    if (Date.now() >= deadline) return false;
    await delay(100);
  }
}

/** `1d 2h 3m 4s`, leaving out leading zero units. */
export function formatUptime(ms: number): string {
  let rest = Math.max(0, Math.floor(ms / 1000));
  const parts: string[] = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]] as const) {
    const n = Math.floor(rest / size);
    rest -= n * size;
    if (n > 0 || parts.length > 0) parts.push(`${n}${unit}`);
  }
  parts.push(`${rest}s`);
  return parts.join(" ");
}

/** `http://HOST:PORT/`, with IPv6 addresses in brackets. */
export function serverUrl(scheme: string, host: string, port: number): string {
  return `${scheme}://${hostPort(host, port)}/`;
}

/** `HOST:PORT`, with an IPv6 address in brackets. */
export function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The address to connect to a server bound to `host` (a wildcard becomes loopback). */
export function connectHost(host: string): string {
  if (host === "0.0.0.0" || host === "") return "127.0.0.1";
  if (host === "::" || host === "[::]") return "::1";
  return host;
}

/** True for addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, "");
  return h === "localhost" || h === "::1" || /^(::ffff:)?127\./.test(h);
}

/** The loud warning for a server any host can reach with no access control, or undefined. */
export function exposureWarning(
  settings: Pick<
    ServerSettings,
    "hostIp" | "port" | "allowedHost" | "authorizedKeys" | "onlyAllowedPath"
  >,
): string | undefined {
  if (isLoopback(settings.hostIp)) return undefined;
  if (settings.allowedHost.length > 0 || settings.authorizedKeys !== "") {
    return undefined;
  }
  const where = settings.onlyAllowedPath.length > 0
    ? ` under ${settings.onlyAllowedPath.join(", ")}`
    : "";
  return `WARNING: serving every readable file${where} not refused by the path rules to ANY host that can reach ${
    hostPort(settings.hostIp, settings.port)
  }; set Allowed_host or Authorized_keys`;
}

/**
 * Why a configuration that accepts writes must not start (or reload), or
 * undefined: `Writable_path` without `Authorized_keys` on an address others
 * can reach would let anyone write; a writable directory outside every
 * `Only_allowed_path` could be written but never listed, so a push could
 * not tell what is already there.
 */
export function writeSetupError(
  settings: Pick<
    ServerSettings,
    | "hostIp"
    | "port"
    | "authorizedKeys"
    | "writablePath"
    | "onlyAllowedPath"
  >,
): string | undefined {
  if (settings.writablePath.length === 0) return undefined;
  if (settings.authorizedKeys === "" && !isLoopback(settings.hostIp)) {
    return `Cannot accept writes on ${
      hostPort(settings.hostIp, settings.port)
    }: Writable_path is set but Authorized_keys is not, so anyone who can reach it could write; set Authorized_keys (the public lines of hsync keygen) or listen on 127.0.0.1`;
  }
  if (settings.onlyAllowedPath.length > 0) {
    const inside = (path: string, root: string) =>
      root === "/" || path === root || path.startsWith(`${root}/`);
    for (const dir of settings.writablePath) {
      if (!settings.onlyAllowedPath.some((root) => inside(dir, root))) {
        return `Cannot use Writable_path "${dir}": it is outside every Only_allowed_path directory, so pushes could not list what is already there; add it to Only_allowed_path`;
      }
    }
  }
  return undefined;
}

/** The warning for a loopback server that accepts writes without keys (any local user may write), or undefined. */
export function writeWarning(
  settings: Pick<
    ServerSettings,
    "hostIp" | "port" | "authorizedKeys" | "writablePath" | "anonymousRead"
  >,
): string | undefined {
  if (settings.writablePath.length > 0 && settings.authorizedKeys === "") {
    return `Writes below ${
      settings.writablePath.join(", ")
    } are accepted without a key from any local user of ${
      hostPort(settings.hostIp, settings.port)
    } (no Authorized_keys)`;
  }
  if (settings.anonymousRead && settings.authorizedKeys === "") {
    return "Anonymous_read has no effect without Authorized_keys: every client may read";
  }
  return undefined;
}

/** How to run this same program again. */
export interface SelfCommand {
  command: string;
  args: string[];
}

/** Options of {@linkcode selfCommand}. */
export interface SelfCommandOptions {
  /** `Deno.execPath()`. */
  execPath: string;
  /** `import.meta.url` of main_server.ts. */
  mainModule: string;
  /** `Deno.build.standalone`: true in a compiled binary. */
  standalone: boolean;
  /** Arguments of the foreground form. */
  args: string[];
}

/**
 * The command line of the foreground form of this program: the binary itself
 * when compiled, else `deno run -P=hsyncd` on main_server.ts with the
 * repository's deno.json (where the permission set lives).
 */
export function selfCommand(options: SelfCommandOptions): SelfCommand {
  const { execPath, mainModule, args } = options;
  if (options.standalone) return { command: execPath, args };
  if (!mainModule.startsWith("file:")) {
    return {
      command: execPath,
      args: ["run", "-P=hsyncd", ...RUNTIME_FLAGS.hsyncd, mainModule, ...args],
    };
  }
  const main = fileURLToPath(mainModule);
  const config = join(dirname(main), "deno.json");
  return {
    command: execPath,
    args: [
      "run",
      "-P=hsyncd",
      ...RUNTIME_FLAGS.hsyncd,
      "--config",
      config,
      main,
      ...args,
    ],
  };
}

/** Options of {@linkcode spawnDetached}. */
export interface SpawnOptions {
  cwd: string;
  /** Added to (or replacing in) the inherited environment. */
  env?: Record<string, string>;
}

/** Starts a command in its own session with no terminal, not waited for by this process. */
export function spawnDetached(
  command: SelfCommand,
  options: SpawnOptions,
): Deno.ChildProcess {
  const child = new Deno.Command(command.command, {
    args: command.args,
    cwd: options.cwd,
    env: options.env,
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  child.unref();
  return child;
}

/** What became of a detached start. */
export type StartOutcome =
  | { outcome: "ready"; info: PidInfo }
  | { outcome: "exited"; code: number }
  | { outcome: "timeout" };

/** Options of {@linkcode waitForStart}. */
export interface WaitForStartOptions {
  child: Deno.ChildProcess;
  pidfile: string;
  timeoutMs: number;
}

/** Waits until the child wrote the pidfile and its port answers, or it exited, or time ran out. */
export async function waitForStart(
  options: WaitForStartOptions,
): Promise<StartOutcome> {
  let exited: number | undefined;
  options.child.status.then((s) => exited = s.code, () => exited = -1);
  const deadline = Date.now() + options.timeoutMs;
  while (Date.now() < deadline) {
    if (exited !== undefined) return { outcome: "exited", code: exited };
    const info = await readPidfile(options.pidfile).catch(() => undefined);
    if (typeof info === "object" && info.pid === options.child.pid) {
      if (await answers(info)) return { outcome: "ready", info };
    }
    await delay(50);
  }
  return exited === undefined
    ? { outcome: "timeout" }
    : { outcome: "exited", code: exited };
}

/** True when the server's port answers: any HTTP answer from /v1/health, or a TCP connection with TLS. */
async function answers(info: PidInfo): Promise<boolean> {
  const host = connectHost(info.host);
  try {
    if (info.scheme === "https") {
      (await Deno.connect({ hostname: host, port: info.port })).close();
      return true;
    }
    const response = await fetch(
      `${serverUrl("http", host, info.port)}v1/health`,
      { signal: AbortSignal.timeout(2000), redirect: "manual" },
    );
    await response.body?.cancel();
    return true;
  } catch {
    return false;
  }
}

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `start` and `run` go ahead only without a running hsyncd and with a pidfile they may replace. */
export function refuseToStart(state: PidfileState, pidfile: string): void {
  if (state.state === "running") {
    throw new ConfigError(
      `Cannot start: hsyncd is already running (pid ${state.info.pid}) on ${
        serverUrl(state.info.scheme, state.info.host, state.info.port)
      }; stop it with "hsyncd stop"`,
    );
  }
  if (state.state === "untrusted") {
    throw new ConfigError(
      `Cannot start: pidfile "${pidfile}" ${state.reason}; remove it if no hsyncd runs`,
    );
  }
}
