/** Parses the command line of hsyncd into a subcommand, options and config overrides. */
import { parseArgs } from "node:util";
import { type Overrides, parseValue } from "../shared/config.ts";
import { UsageError } from "../shared/errors.ts";
import {
  checkHost,
  checkPort,
  joinNegativeValues,
  renameFlags,
} from "../shared/flag_values.ts";

/** What hsyncd was asked to do; `run` serves in the foreground. */
export type ServerCommand = "run" | "start" | "stop" | "restart" | "status";

/** The parsed command line of hsyncd. */
export interface ServerArgs {
  command: ServerCommand;
  /** `-c FILE`, as given. */
  configFile?: string;
  /** `-l FILE`, as given. */
  logFile?: string;
  /** Settings given on the command line, by ini key name (`Host_ip`, `Port`, `Log_file`). */
  overrides: Overrides;
  help: boolean;
  version: boolean;
  /** Print stack traces of unexpected errors. */
  debug: boolean;
}

const SUBCOMMANDS = ["start", "stop", "restart", "status"] as const;

const OPTIONS = {
  "host-ip": { type: "string" },
  port: { type: "string", short: "p" },
  log: { type: "string", short: "l" },
  config: { type: "string", short: "c" },
  daemon: { type: "boolean", short: "d" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean" },
  debug: { type: "boolean" },
} as const;

/** Usage text of hsyncd, printed by `--help`. */
export const SERVER_USAGE = `Usage: hsyncd [start|stop|restart|status] [options]

Serves files over HTTP(S) to hsync, curl, wget and aria2c.
Without a command it runs in the foreground (what systemd wants).

Commands:
  start          run detached in the background (same as -d)
  stop           stop the running hsyncd and wait until it is gone
  restart        stop, wait until the port is free, start again with the
                 options it was started with (options given here win)
  status         print pid, address and uptime (exit 3 when not running)
  (stop, restart and status act on the server of -p PORT, or without -p
  on the only one using $HSYNC_DIR)

Options:
  -host IP, --host-ip IP   address to listen on (ini: Host_ip)
  -p, --port PORT          port to listen on (ini: Port, default 10808)
  -l, --log FILE           log file (ini: Log_file; default: stderr in the
                           foreground, $HSYNC_DIR/hsyncd.log when detached)
  -c, --config FILE        configuration file read over $HSYNC_DIR/hsync.ini
  -d, --daemon             run detached (same as start)
  -h, --help               print this help
      --version            print the version
      --debug              print stack traces of unexpected errors

$HSYNC_DIR (default ~/.hsync) holds hsync.ini, the pidfile hsyncd.pid (a
plain process id: kill -HUP $(cat hsyncd.pid) reloads) with the server's
address, start time and start options in hsyncd.json, and the log of a
detached server, hsyncd.log. A server on another port than 10808 has
hsyncd-PORT.pid and hsyncd-PORT.json, so several can share one $HSYNC_DIR.

Exit codes: 0 success, 1 usage or configuration error,
3 not running (status).`;

/** Parses hsyncd's arguments; throws {@linkcode UsageError} with one line naming the bad value. */
export function parseServerArgs(args: string[]): ServerArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args: joinNegativeValues(rewriteOldFlags(args), {
        "-p": "--port",
        "--port": "--port",
      }),
      options: OPTIONS,
      strict: true,
      allowPositionals: true,
    });
  } catch (error) {
    throw new UsageError(describeParseError(error));
  }
  const { values, positionals } = parsed;

  let command: ServerCommand = values.daemon ? "start" : "run";
  if (positionals.length > 0) {
    const word = positionals[0];
    if (!(SUBCOMMANDS as readonly string[]).includes(word)) {
      throw new UsageError(
        `Unknown command "${word}": expected start, stop, restart or status`,
      );
    }
    if (positionals.length > 1) {
      throw new UsageError(`Unexpected argument "${positionals[1]}"`);
    }
    command = word as ServerCommand;
    if (values.daemon && (command === "stop" || command === "status")) {
      throw new UsageError(`Option "-d" cannot be used with "${command}"`);
    }
  }

  const overrides: Overrides = {};
  if (values["host-ip"] !== undefined) {
    overrides.Host_ip = checkHost("-host", values["host-ip"]);
  }
  if (values.port !== undefined) {
    overrides.Port = checkPort("-p", values.port);
  }
  if (values.log !== undefined) {
    if (values.log.trim() === "") {
      throw new UsageError(`Option "-l/--log" needs a file name`);
    }
    overrides.Log_file = checked("path", values.log, "-l/--log");
  }
  if (values.config !== undefined && values.config.trim() === "") {
    throw new UsageError(`Option "-c/--config" needs a file name`);
  }

  return {
    command,
    configFile: values.config,
    logFile: values.log,
    overrides,
    help: values.help ?? false,
    version: values.version ?? false,
    debug: values.debug ?? false,
  };
}

/** The old tool's single-dash long flag `-host` becomes `--host-ip`; another single-dash word is refused by its name. */
function rewriteOldFlags(args: string[]): string[] {
  const renamed = renameFlags(args, { "-host": "--host-ip" });
  for (const arg of renamed) {
    if (arg === "--") break;
    if (/^-[A-Za-z]{2,}$/.test(arg) && !isShortCluster(arg)) {
      // Else `-hostname` would be reported as the unknown option `-o`.
      throw new UsageError(`Unknown option "${arg}": see hsyncd --help`);
    }
  }
  return renamed;
}

/** True for `-dh` (boolean flags) or `-dp8080` (flags, then one taking the rest as its value). */
function isShortCluster(arg: string): boolean {
  for (const letter of arg.slice(1)) {
    const spec = Object.values(OPTIONS).find((o) =>
      "short" in o && o.short === letter
    );
    if (spec === undefined) return false;
    if (spec.type === "string") return true;
  }
  return true;
}

/** Validates an option value by the same rules as the ini key, as a usage error. */
function checked(
  kind: "path",
  raw: string,
  option: string,
): string {
  try {
    parseValue(kind, raw, option);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  return raw.trim();
}

/** Turns node:util's multi-line parse errors into one line. */
function describeParseError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: string }).code;
  const quoted = /'([^']*)'/.exec(message)?.[1];
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && quoted !== undefined) {
    return `Unknown option "${quoted}": see hsyncd --help`;
  }
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && quoted !== undefined) {
    const name = optionName(quoted);
    if (message.includes("does not take an argument")) {
      return `Option "${name}" does not take a value`;
    }
    return `Option "${name}" needs a value`;
  }
  if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL" && quoted !== undefined) {
    return `Unexpected argument "${quoted}"`;
  }
  return message.split("\n")[0];
}

/** `-p, --port <value>` or `-p` → `-p/--port`. */
function optionName(described: string): string {
  const names = described.replace(/\s*<value>$/, "").split(/,\s*/);
  for (const [long, spec] of Object.entries(OPTIONS)) {
    const short = "short" in spec ? `-${spec.short}` : undefined;
    if (names.includes(`--${long}`) || names.includes(short ?? "")) {
      if (long === "host-ip") return "-host/--host-ip";
      return short === undefined ? `--${long}` : `${short}/--${long}`;
    }
  }
  return names.join("/");
}
