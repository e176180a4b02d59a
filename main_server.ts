// deno-lint-ignore-file no-console
/**
 * Entry of hsyncd: command line and configuration -> lib/server/lifecycle.ts
 * (serve) or lib/server/daemon_commands.ts (start/stop/restart/status). The
 * only place that reads `Deno.args`, prints, listens for signals and exits.
 */
import defaults from "./hsync.ini" with { type: "text" };
import { resolve } from "node:path";
import {
  loadConfig,
  resolveHsyncDir,
  serverSettings,
} from "./lib/shared/config.ts";
import {
  describeError,
  exitCodeFor,
  isExpected,
  UsageError,
} from "./lib/shared/errors.ts";
import { VERSION } from "./lib/shared/version.ts";
import { enterInvocationDir } from "./lib/shared/invocation_dir.ts";
import {
  parseServerArgs,
  SERVER_USAGE,
  type ServerArgs,
} from "./lib/server/server_args.ts";
import { appendLogLine } from "./lib/server/server_log.ts";
import {
  checkPidfile,
  DEFAULT_PORT,
  pidfilePath,
} from "./lib/server/daemon.ts";
import { pidfileToManage, restartArgs } from "./lib/server/instances.ts";
import { restart, start, status, stop } from "./lib/server/daemon_commands.ts";
import {
  alreadyLogged,
  serve,
  type ServeSignals,
  type Terminal,
} from "./lib/server/lifecycle.ts";

/** Standard output and standard error, each line of the latter after the program's name. */
const terminal: Terminal = {
  out: (line) => console.log(line),
  err: (line) => console.error(`hsyncd: ${line}`),
};

/** SIGTERM and SIGINT (the first stops gracefully, a second stops waiting) and SIGHUP (reload). */
const signals: ServeSignals = {
  watchStop() {
    const names: Deno.Signal[] = ["SIGTERM", "SIGINT"];
    let count = 0;
    let onFirst!: (signal: Deno.Signal) => void;
    let onSecond!: (signal: Deno.Signal) => void;
    const first = new Promise<Deno.Signal>((r) => onFirst = r);
    const second = new Promise<Deno.Signal>((r) => onSecond = r);
    const listeners = names.map((name) => {
      const listener = () => (++count === 1 ? onFirst : onSecond)(name);
      Deno.addSignalListener(name, listener);
      return { name, listener };
    });
    return {
      first,
      second,
      remove() {
        for (const { name, listener } of listeners) {
          Deno.removeSignalListener(name, listener);
        }
      },
    };
  },
  onHangup(listener) {
    Deno.addSignalListener("SIGHUP", listener);
    return () => Deno.removeSignalListener("SIGHUP", listener);
  },
};

async function main(given: ServerArgs): Promise<number> {
  const args = await effectiveArgs(given);
  if (args.help) {
    console.log(SERVER_USAGE);
    return 0;
  }
  if (args.version) {
    console.log(`hsyncd ${VERSION}`);
    return 0;
  }
  const hsyncDir = resolve(resolveHsyncDir({
    HSYNC_DIR: Deno.env.get("HSYNC_DIR"),
    HOME: Deno.env.get("HOME"),
  }));
  const pidfile = await managedPidfile(given, hsyncDir);
  if (args.command === "status") return await status(pidfile, terminal);
  if (args.command === "stop") return await stop(pidfile, terminal);

  // The same files and command-line overrides at start and on each SIGHUP.
  const readSettings = async () => {
    const config = await loadConfig({
      defaults,
      hsyncDir,
      configFile: args.configFile,
    });
    return {
      settings: serverSettings(config, args.overrides),
      warnings: config.warnings,
      notes: config.notes ?? [],
    };
  };
  const { settings, warnings, notes } = await readSettings();
  for (const warning of warnings) terminal.err(`warning: ${warning}`);
  for (const note of notes) terminal.err(`note: ${note}`);
  switch (args.command) {
    case "run":
      return await serve({
        settings,
        hsyncDir,
        pidfile,
        startArgs: Deno.args,
        warnings,
        reload: readSettings,
        terminal,
        logStream: Deno.stderr.writable,
        signals,
      });
    case "start":
    case "restart": {
      const options = {
        args,
        hsyncDir,
        pidfile: pidfilePath(hsyncDir, settings.port),
        settings,
        mainModule: import.meta.url,
        terminal,
      };
      return args.command === "start"
        ? await start(options)
        : await restart(options);
    }
  }
}

/** The pidfile a daemon command is about: its port's, or (status, stop, restart without -p) the only one there is. */
async function managedPidfile(
  args: ServerArgs,
  hsyncDir: string,
): Promise<string> {
  const port = Number(args.overrides.Port ?? await configuredPort(args));
  if (args.command === "run" || args.command === "start") {
    return pidfilePath(hsyncDir, port);
  }
  return await pidfileToManage(
    hsyncDir,
    port,
    args.overrides.Port !== undefined,
  );
}

/** The arguments to act on: for `restart`, the running server's own (its port, address, files and options) under those given. */
async function effectiveArgs(given: ServerArgs): Promise<ServerArgs> {
  if (given.command !== "restart") return given;
  const hsyncDir = resolve(resolveHsyncDir({
    HSYNC_DIR: Deno.env.get("HSYNC_DIR"),
    HOME: Deno.env.get("HOME"),
  }));
  const state = await checkPidfile(await managedPidfile(given, hsyncDir));
  if (state.state !== "running" || state.info.args === undefined) return given;
  return restartArgs(given, state.info.args, state.info.cwd);
}

/** The port the configuration files give (undefined: the default), for the pidfile of a command without -p; a file that cannot be read is the command's own to report. */
async function configuredPort(args: ServerArgs): Promise<number> {
  try {
    const config = await loadConfig({
      defaults,
      hsyncDir: resolve(resolveHsyncDir({
        HSYNC_DIR: Deno.env.get("HSYNC_DIR"),
        HOME: Deno.env.get("HOME"),
      })),
      configFile: args.configFile,
    });
    return serverSettings(config, {}).port;
  } catch {
    return DEFAULT_PORT;
  }
}

/** Reports an error in one line (a stack trace only with --debug) and returns the exit code. */
function report(
  error: unknown,
  args: ServerArgs | undefined,
): number {
  const message = describeError(error);
  console.error(`hsyncd: ${message}`);
  if (error instanceof UsageError) {
    console.error("Try 'hsyncd --help' for more information.");
  }
  if (!isExpected(error)) {
    if (args?.debug && error instanceof Error) console.error(error.stack);
    else console.error("hsyncd: run with --debug for details");
  }
  // A detached server has no stderr: a failure before its log was open still
  // goes to the log file it was given, where `start` looks for it.
  if (
    args?.command === "run" && args.logFile !== undefined &&
    !alreadyLogged(error)
  ) {
    const line = `${new Date().toISOString()} ERROR ${message}\n`;
    try {
      appendLogLine(args.logFile, line);
    } catch {
      // Not a file hsyncd may write to (e.g. a planted symlink): stderr had it.
    }
  }
  return exitCodeFor(error);
}

if (import.meta.main) {
  let args: ServerArgs | undefined;
  let code: number;
  try {
    // Before any path is read: relative paths are the user's, not the repository's.
    enterInvocationDir();
    args = parseServerArgs(Deno.args);
    code = await main(args);
  } catch (error) {
    code = report(error, args);
  }
  Deno.exit(code);
}
