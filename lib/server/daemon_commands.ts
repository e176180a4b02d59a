/**
 * The daemon commands of hsyncd: `start` (detach and wait until it
 * answers), `stop`, `restart` and `status`, decided on the pidfile's word
 * only when it can be trusted. Each returns its exit code and gives its
 * lines to the caller's terminal.
 */
import { join, resolve } from "node:path";
import type { ServerSettings } from "../shared/config.ts";
import { ConfigError } from "../shared/errors.ts";
import { readAuth, readTls } from "./config_files.ts";
import {
  checkPidfile,
  exposureWarning,
  formatUptime,
  hostPort,
  type PidfileState,
  type PidInfo,
  refuseToStart,
  removePidfile,
  selfCommand,
  serverUrl,
  spawnDetached,
  waitForPortFree,
  waitForStart,
  waitUntilGone,
  writeSetupError,
} from "./daemon.ts";
import { GRACE_MS, type Terminal } from "./lifecycle.ts";
import { checkLogFileName } from "./server_log.ts";
import type { ServerArgs } from "./server_args.ts";

/** `stop` waits this long for the process to go (the grace period and a margin). */
const STOP_WAIT_MS = GRACE_MS + 5_000;
/** `start` waits this long for the detached server to answer. */
const START_WAIT_MS = 20_000;
/** `restart` waits this long for the old server's port to be free. */
const PORT_FREE_WAIT_MS = 10_000;
/** LSB exit code of `status` when the program is not running. */
const NOT_RUNNING = 3;

/** What `start` and `restart` need once the configuration is loaded. */
export interface StartOptions {
  args: ServerArgs;
  hsyncDir: string;
  pidfile: string;
  settings: ServerSettings;
  /** `import.meta.url` of main_server.ts: what the detached server runs. */
  mainModule: string;
  terminal: Terminal;
}

/** Detaches: runs the foreground form in its own session and waits until it answers. */
export async function start(options: StartOptions): Promise<number> {
  const { settings, pidfile, args, terminal } = options;
  const state = await checkPidfile(pidfile);
  refuseToStart(state, pidfile);
  if (state.state === "stale") {
    await removePidfile(pidfile);
    terminal.err(`Removed stale pidfile "${pidfile}": ${state.reason}`);
  }
  await readTls(settings);
  for (const warning of (await readAuth(settings))?.warnings ?? []) {
    terminal.err(`warning: ${warning}`);
  }
  const refused = writeSetupError(settings);
  if (refused !== undefined) throw new ConfigError(refused);
  const warning = exposureWarning(settings);
  if (warning !== undefined) terminal.err(warning);

  const logFile = resolve(
    settings.logFile === ""
      ? join(options.hsyncDir, "hsyncd.log")
      : settings.logFile,
  );
  await checkLogFileName(logFile);
  // The `--name=value` form, so no value can be taken for an option.
  const childArgs = [`--log=${logFile}`];
  const { Host_ip: host, Port: port } = args.overrides;
  if (host !== undefined) childArgs.push(`--host-ip=${host}`);
  if (port !== undefined) childArgs.push(`--port=${port}`);
  if (args.configFile !== undefined) {
    childArgs.push(`--config=${resolve(args.configFile)}`);
  }
  if (args.debug) childArgs.push("--debug");
  const logOffset = await fileSize(logFile);
  const child = spawnDetached(
    selfCommand({
      execPath: Deno.execPath(),
      mainModule: options.mainModule,
      standalone: Deno.build.standalone,
      args: childArgs,
    }),
    { cwd: Deno.cwd(), env: { HSYNC_DIR: options.hsyncDir } },
  );
  const outcome = await waitForStart({
    child,
    pidfile,
    timeoutMs: START_WAIT_MS,
  });
  if (outcome.outcome === "ready") {
    const { info } = outcome;
    terminal.out(
      `hsyncd started (pid ${info.pid}) on ${
        serverUrl(info.scheme, info.host, info.port)
      }, log ${logFile}`,
    );
    return 0;
  }
  if (outcome.outcome === "timeout") {
    try {
      Deno.kill(child.pid, "SIGTERM");
    } catch {
      // Already gone.
    }
    throw new ConfigError(
      `Cannot start hsyncd: it did not answer within ${
        START_WAIT_MS / 1000
      } s and was stopped; see log "${logFile}"`,
    );
  }
  const reason = await firstError(logFile, logOffset);
  throw new ConfigError(
    reason ??
      `Cannot start hsyncd: it exited with code ${outcome.code}; see log "${logFile}"`,
  );
}

/** Stops the running server (if any), waits until its port is free, starts again. */
export async function restart(options: StartOptions): Promise<number> {
  const { pidfile, settings, terminal } = options;
  // A configuration that cannot start must not stop the running server.
  await readTls(settings);
  await readAuth(settings);
  const refused = writeSetupError(settings);
  if (refused !== undefined) throw new ConfigError(refused);
  const state = await checkPidfile(pidfile);
  refuseToSignal(state, pidfile);
  if (state.state === "running") {
    await stopProcess(state.info, pidfile, terminal);
  } else {
    if (state.state === "stale") await removePidfile(pidfile);
    terminal.out(notRunning(pidfile, state, true));
  }
  const { hostIp, port } = settings;
  if (!await waitForPortFree(hostIp, port, PORT_FREE_WAIT_MS)) {
    throw new ConfigError(
      `Cannot listen on ${hostPort(hostIp, port)}: address still in use after ${
        PORT_FREE_WAIT_MS / 1000
      } s`,
    );
  }
  return await start(options);
}

/** `stop`: exit 0 when the server is gone, whether it was running or not; 1 when the pidfile cannot be trusted (nothing is signalled). */
export async function stop(
  pidfile: string,
  terminal: Terminal,
): Promise<number> {
  const state = await checkPidfile(pidfile);
  refuseToSignal(state, pidfile);
  if (state.state !== "running") {
    if (state.state === "stale") await removePidfile(pidfile);
    terminal.out(notRunning(pidfile, state, true));
    return 0;
  }
  await stopProcess(state.info, pidfile, terminal);
  return 0;
}

/** `status`: exit 0 when running, 3 when not, 1 when the pidfile cannot be trusted. */
export async function status(
  pidfile: string,
  terminal: Terminal,
): Promise<number> {
  const state = await checkPidfile(pidfile);
  if (state.state === "untrusted") {
    throw new ConfigError(
      `Cannot tell whether hsyncd runs: pidfile "${pidfile}" ${state.reason}`,
    );
  }
  if (state.state !== "running") {
    terminal.out(notRunning(pidfile, state));
    return NOT_RUNNING;
  }
  const { info } = state;
  // Without its facts file only the pid is known.
  if (info.port === 0) {
    terminal.out(`hsyncd is running (pid ${info.pid})`);
    return 0;
  }
  const up = formatUptime(Date.now() - Date.parse(info.started));
  terminal.out(
    `hsyncd is running (pid ${info.pid}) on ${
      serverUrl(info.scheme, info.host, info.port)
    }, up ${up}`,
  );
  return 0;
}

/** Sends SIGTERM to a verified hsyncd and waits until it is gone. */
async function stopProcess(
  info: PidInfo,
  pidfile: string,
  terminal: Terminal,
): Promise<void> {
  try {
    Deno.kill(info.pid, "SIGTERM");
  } catch (error) {
    if (error instanceof Deno.errors.PermissionDenied) {
      throw new ConfigError(
        `Cannot stop hsyncd (pid ${info.pid}): permission denied`,
      );
    }
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  if (!await waitUntilGone(info, STOP_WAIT_MS)) {
    throw new ConfigError(
      `Cannot stop hsyncd (pid ${info.pid}): still running ${
        STOP_WAIT_MS / 1000
      } s after SIGTERM`,
    );
  }
  await removePidfile(pidfile, info.pid);
  terminal.out(`hsyncd stopped (pid ${info.pid})`);
}

function notRunning(
  pidfile: string,
  state: PidfileState,
  removed = false,
): string {
  if (state.state !== "stale") return "hsyncd is not running";
  const what = removed ? "removed stale pidfile" : "stale pidfile";
  return `hsyncd is not running (${what} "${pidfile}": ${state.reason})`;
}

/** Nothing is signalled on the word of a pidfile that cannot be trusted. */
function refuseToSignal(state: PidfileState, pidfile: string): void {
  if (state.state === "untrusted") {
    throw new ConfigError(
      `Cannot stop hsyncd: pidfile "${pidfile}" ${state.reason}; no signal was sent`,
    );
  }
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch {
    return 0;
  }
}

/** The first ERROR line the detached server wrote to its log after `offset`, without time and level. */
async function firstError(
  logFile: string,
  offset: number,
): Promise<string | undefined> {
  let text: string;
  try {
    const bytes = await Deno.readFile(logFile);
    text = new TextDecoder().decode(
      bytes.subarray(offset <= bytes.length ? offset : 0),
    );
  } catch {
    return undefined;
  }
  const line = text.split("\n").find((l) => / ERROR /.test(l));
  return line?.replace(/^\S+ ERROR /, "");
}
