/** Process management of hsyncd: the pidfile, liveness of a pid, waiting for exit and ports, detaching. */
import process from "node:process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ServerSettings } from "./config.ts";
import { RUNTIME_FLAGS } from "./runtime_flags.ts";

/** What the pidfile records about a running hsyncd. */
export interface PidInfo {
  pid: number;
  /** Address the server listens on, as configured (0.0.0.0, ::, one IP). */
  host: string;
  port: number;
  scheme: "http" | "https";
  /** When the server started listening (ISO 8601). */
  started: string;
  /** Start time of the process in clock ticks since boot (`/proc/PID/stat` field 22), so a recycled pid is recognised. */
  procStart?: number;
  version: string;
}

/** What the pidfile says about the server. */
export type PidfileState =
  | { state: "absent" }
  | { state: "running"; info: PidInfo }
  | { state: "stale"; info?: PidInfo; reason: string };

/** What `/proc` tells about one process. */
export interface ProcessFacts {
  /** Single-letter state; `Z` is a zombie (exited, not yet reaped). */
  state: string;
  /** Clock ticks since boot when the process started. */
  start: number;
  /** Arguments, NUL-separated in /proc, here as an array. */
  cmdline: string[];
}

/** How liveness is probed; a seam for tests. */
export interface ProcessProbe {
  /** True when a process with this pid exists (whoever owns it). */
  exists(pid: number): boolean;
  /** Facts from /proc, or undefined when they cannot be read. */
  facts(pid: number): Promise<ProcessFacts | undefined>;
}

/** Where the pidfile lives. */
export function pidfilePath(hsyncDir: string): string {
  return join(hsyncDir, "hsyncd.pid");
}

/** Writes the pidfile atomically (temporary file, then rename), creating its directory. */
export async function writePidfile(path: string, info: PidInfo): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  const temp = `${path}.${info.pid}.tmp`;
  try {
    await Deno.writeTextFile(temp, JSON.stringify(info, null, 2) + "\n");
    await Deno.rename(temp, path);
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
}

/** Reads the pidfile: undefined when absent, `"invalid"` when it is not one. */
export async function readPidfile(
  path: string,
): Promise<PidInfo | "invalid" | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  try {
    const info = JSON.parse(text) as PidInfo;
    if (
      Number.isSafeInteger(info.pid) && info.pid > 0 &&
      typeof info.host === "string" && Number.isSafeInteger(info.port) &&
      typeof info.started === "string"
    ) {
      return info;
    }
  } catch {
    // Falls through: not JSON.
  }
  return "invalid";
}

/** Removes the pidfile; with `pid`, only when the file still names that process. */
export async function removePidfile(path: string, pid?: number): Promise<void> {
  if (pid !== undefined) {
    const info = await readPidfile(path).catch(() => undefined);
    if (typeof info !== "object" || info.pid !== pid) return;
  }
  await Deno.remove(path).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
}

/**
 * The real probe. Deno grants `/proc` only with --allow-all, so its files are
 * read by `cat` (the `run` permission); `process.kill(pid, 0)` checks existence.
 */
export const systemProbe: ProcessProbe = {
  exists(pid) {
    try {
      process.kill(pid, 0);
      return true;
    } catch (error) {
      return (error as { code?: string }).code === "EPERM";
    }
  },
  async facts(pid) {
    try {
      const out = await new Deno.Command("cat", {
        args: [`/proc/${pid}/stat`, `/proc/${pid}/cmdline`],
        stdin: "null",
        stdout: "piped",
        stderr: "null",
      }).output();
      if (!out.success) return undefined;
      return parseProcFacts(new TextDecoder().decode(out.stdout));
    } catch {
      return undefined;
    }
  },
};

/** Parses `/proc/PID/stat` followed by `/proc/PID/cmdline`. */
export function parseProcFacts(text: string): ProcessFacts | undefined {
  const newline = text.indexOf("\n");
  const stat = newline < 0 ? text : text.slice(0, newline);
  // The command name is in parentheses and may hold spaces: count after the last ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const start = Number(fields[19]);
  if (fields.length < 20 || !Number.isSafeInteger(start)) return undefined;
  const cmdline = newline < 0
    ? []
    : text.slice(newline + 1).split("\0").filter((a) => a !== "");
  return { state: fields[0], start, cmdline };
}

/** Start time of this process, recorded in the pidfile; undefined without /proc. */
export async function ownProcessStart(
  probe: ProcessProbe = systemProbe,
): Promise<number | undefined> {
  return (await probe.facts(Deno.pid))?.start;
}

/**
 * True when the pidfile's process is alive and is that same hsyncd: the start
 * time matches (or, with none recorded, the command line names hsyncd), so a
 * recycled pid is never taken for the server.
 */
export async function isAlive(
  info: PidInfo,
  probe: ProcessProbe = systemProbe,
): Promise<boolean> {
  if (!probe.exists(info.pid)) return false;
  const facts = await probe.facts(info.pid);
  if (facts === undefined) return probe.exists(info.pid);
  if (facts.state === "Z") return false;
  if (info.procStart !== undefined) return facts.start === info.procStart;
  return facts.cmdline.some((a) => /hsyncd|main_server\.ts/.test(a));
}

/** Reads the pidfile and tells whether it names a running hsyncd. */
export async function checkPidfile(
  path: string,
  probe: ProcessProbe = systemProbe,
): Promise<PidfileState> {
  const info = await readPidfile(path);
  if (info === undefined) return { state: "absent" };
  if (info === "invalid") {
    return { state: "stale", reason: "it is not an hsyncd pidfile" };
  }
  if (await isAlive(info, probe)) return { state: "running", info };
  return { state: "stale", info, reason: `pid ${info.pid} is not running` };
}

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
  const h = host.includes(":") ? `[${host}]` : host;
  return `${scheme}://${h}:${port}/`;
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
  const address = settings.hostIp.includes(":")
    ? `[${settings.hostIp}]:${settings.port}`
    : `${settings.hostIp}:${settings.port}`;
  return `WARNING: serving every readable file${where} not refused by the path rules to ANY host that can reach ${address}; set Allowed_host or Authorized_keys`;
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
      { signal: AbortSignal.timeout(2000) },
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
