/**
 * The serving lifecycle of hsyncd in the foreground: TLS and keys read, the
 * log opened, `Deno.serve` listening with the handler, the pidfile written,
 * the configuration reloaded on SIGHUP, and a graceful stop on SIGTERM or
 * SIGINT. The caller (main_server.ts) owns the terminal and the signals: it
 * is given lines to print and asked to listen for signals.
 */
import { dirname, resolve } from "node:path";
import type { AuthorizedKeys } from "../shared/auth.ts";
import type { ServerSettings } from "../shared/config.ts";
import { ConfigError, describeError } from "../shared/errors.ts";
import { VERSION } from "../shared/version.ts";
import { fileError, readAuth, readTls } from "./config_files.ts";
import {
  checkPidfile,
  exposureWarning,
  hostPort,
  ownProcessStart,
  pidfileDirProblem,
  type PidInfo,
  refuseToStart,
  removePidfile,
  serverUrl,
  systemProbe,
  writePidfile,
  writeWarning,
} from "./daemon.ts";
import { createHandler } from "./handler.ts";
import { openServerLog } from "./server_log.ts";
import { ServerNames } from "./server_names.ts";
import { WatchHub } from "./watch_hub.ts";

/** After SIGTERM, in-flight responses get this long before the process exits anyway. */
export const GRACE_MS = 10_000;

/** Where lines for the operator go. */
export interface Terminal {
  /** A line for standard output. */
  out(line: string): void;
  /** A line for standard error; the caller puts the program's name before it. */
  err(line: string): void;
}

/** The signals a server listens to, installed by the caller when asked. */
export interface ServeSignals {
  /**
   * Starts listening for SIGTERM and SIGINT: the first resolves `first`, a
   * second one `second`, with the signal's name; `remove` stops listening.
   */
  watchStop(): {
    first: Promise<string>;
    second: Promise<string>;
    remove(): void;
  };
  /** Calls `listener` on each SIGHUP until the returned function is called. */
  onHangup(listener: () => void): () => void;
}

/** What {@linkcode serve} needs. */
export interface ServeOptions {
  settings: ServerSettings;
  hsyncDir: string;
  pidfile: string;
  /** The arguments this server was started with, recorded for `restart`. */
  startArgs?: string[];
  /** Configuration warnings, already printed; repeated in a log file. */
  warnings: string[];
  /** Reads the configuration again, the way it was read at start (for SIGHUP). */
  reload(): Promise<{ settings: ServerSettings; warnings: string[] }>;
  terminal: Terminal;
  /** Where the log goes without a Log_file (standard error). */
  logStream: WritableStream<Uint8Array>;
  signals: ServeSignals;
}

/** Errors already written to the log, so they are not written twice. */
const loggedErrors = new WeakSet<Error>();

/** Whether {@linkcode serve} already wrote `error` to its log (it rethrows what stops it). */
export function alreadyLogged(error: unknown): boolean {
  return error instanceof Error && loggedErrors.has(error);
}

/** Serves in the foreground until SIGTERM or SIGINT; resolves the exit code. */
export async function serve(options: ServeOptions): Promise<number> {
  const { settings, pidfile, terminal } = options;
  const state = await checkPidfile(pidfile);
  refuseToStart(state, pidfile);
  const tls = await readTls(settings);
  const auth = await readAuth(settings);
  const log = await openServerLog({
    file: settings.logFile === "" ? undefined : resolve(settings.logFile),
    maxBytes: settings.logMaxBytes,
    keep: settings.logKeep,
    stream: options.logStream,
    onWriteError: (line) => terminal.err(line),
  });
  /** A line for the operator: stdout, and the log file when there is one. */
  const announce = (line: string) => {
    terminal.out(line);
    if (log.file !== undefined) log.info(line);
  };
  /** A warning: to the log, and also to stderr when the log is a file. */
  const alert = (line: string) => {
    log.warn(line);
    if (log.file !== undefined) terminal.err(line);
  };
  let wrotePidfile = false;
  try {
    if (log.file !== undefined) {
      for (const warning of options.warnings) log.warn(warning);
    }
    if (state.state === "stale") {
      alert(`Replacing stale pidfile "${pidfile}": ${state.reason}`);
    }
    for (const warning of auth?.warnings ?? []) alert(warning);
    // Closed first on SIGTERM, so followers' long-polls end instead of holding the stop.
    const watchHub = new WatchHub();
    // Host_ip, Port and the certificate are the listening ones (a reload
    // cannot change them); Server_name is the current configuration's.
    const namesFor = (current: ServerSettings) =>
      new ServerNames({
        tls: tls !== undefined,
        hostIp: settings.hostIp,
        port: settings.port,
        hostname: Deno.hostname(),
        interfaces: interfaceAddresses,
        certificate: tls?.cert,
        configured: current.serverName,
      });
    const handlerFor = (
      settings: ServerSettings,
      auth: AuthorizedKeys | undefined,
    ) =>
      createHandler({
        watchHub,
        settings,
        hsyncDir: options.hsyncDir,
        hostname: Deno.hostname(),
        verifier: auth?.verifier,
        serverNames: namesFor(settings),
        onUnauthorized: (reason, request, remote) =>
          log.info(
            `Refused ${request.method} ${
              new URL(request.url).pathname
            } from ${remote} (401): ${reason}`,
          ),
        log: (entry) => log.access(entry),
        onError: (error, request) =>
          log.error(
            `Unexpected error answering ${request.method} ${
              new URL(request.url).pathname
            }: ${describeError(error)}`,
          ),
      });
    // Swapped by SIGHUP (systemctl reload); requests in flight keep theirs.
    let handler = await handlerFor(settings, auth);
    let active = settings;
    const onUnhandled = (event: PromiseRejectionEvent) => {
      event.preventDefault();
      log.error(`Unhandled error: ${describeError(event.reason)}`);
    };
    globalThis.addEventListener("unhandledrejection", onUnhandled);

    let server: Deno.HttpServer<Deno.NetAddr>;
    try {
      server = Deno.serve({
        hostname: settings.hostIp,
        port: settings.port,
        ...tls,
        onListen() {},
        onError(error) {
          log.error(`Unexpected error: ${describeError(error)}`);
          return Response.json(
            { error: "internal", message: "Internal server error" },
            { status: 500 },
          );
        },
      }, (request, info) => handler(request, info));
    } catch (error) {
      throw listenError(settings, tls !== undefined, error);
    }

    const signals = options.signals.watchStop();
    // From here on, before any wait: a SIGHUP with no listener ends the
    // process, and hsyncd answers already (a reload sent right after the
    // "listening" line killed it while it looked up its own uid).
    const stopReloading = options.signals.onHangup(async () => {
      try {
        const next = await options.reload();
        const nextAuth = await readAuth(next.settings);
        const fresh = await handlerFor(next.settings, nextAuth);
        handler = fresh;
        const stale = needsRestart(active, next.settings);
        active = next.settings;
        for (const warning of next.warnings) log.warn(warning);
        for (const warning of nextAuth?.warnings ?? []) alert(warning);
        announce(
          "Reloaded the configuration on SIGHUP" +
            (stale.length > 0
              ? ` (changes to ${stale.join(", ")} apply after a restart)`
              : ""),
        );
      } catch (error) {
        alert(
          `Reload on SIGHUP failed, the previous configuration stays: ${
            describeError(error)
          }`,
        );
      }
    });

    const scheme = tls === undefined ? "http" : "https";
    const info: PidInfo = {
      pid: Deno.pid,
      host: settings.hostIp,
      port: server.addr.port,
      scheme,
      started: new Date().toISOString(),
      procStart: await ownProcessStart(),
      version: VERSION,
      args: options.startArgs,
      cwd: Deno.cwd(),
    };
    try {
      await writePidfile(pidfile, info);
      wrotePidfile = true;
    } catch (error) {
      stopReloading();
      await server.shutdown();
      throw new ConfigError(
        `Cannot write pidfile "${pidfile}": ${fileError(error)}`,
      );
    }
    const url = serverUrl(scheme, settings.hostIp, info.port);
    announce(`hsyncd ${VERSION} listening on ${url} (pid ${Deno.pid})`);
    const uid = (await systemProbe.self()).uid;
    const dirProblem = uid === undefined
      ? undefined
      : await pidfileDirProblem(dirname(pidfile), uid);
    if (dirProblem !== undefined) {
      alert(
        `Pidfile "${pidfile}" ${dirProblem}: "hsyncd stop" will not trust it`,
      );
    }
    if (auth !== undefined) {
      announce(
        `Requests must be signed by one of ${auth.keys} key(s) in Authorized_keys "${settings.authorizedKeys}"`,
      );
      const names = namesFor(settings);
      const cannot = names.wildcard ? interfacesProblem() : undefined;
      if (cannot !== undefined) alert(cannot);
      announce(
        `Signatures are accepted for ${
          names.list().join(", ")
        } (add other names to Server_name)`,
      );
    }
    const warning = exposureWarning(settings);
    if (warning !== undefined) alert(warning);
    const writes = writeWarning(settings);
    if (writes !== undefined) alert(writes);

    const signal = await signals.first;
    stopReloading();
    watchHub.close();
    log.info(
      `Received ${signal}: finishing in-flight responses (at most ${
        GRACE_MS / 1000
      } s)`,
    );
    let timer: ReturnType<typeof setTimeout> | undefined;
    const cut = await Promise.race([
      server.shutdown().then(() => undefined),
      new Promise<string>((done) =>
        timer = setTimeout(done, GRACE_MS, `after ${GRACE_MS / 1000} s`)
      ),
      signals.second.then((name) => `on a second ${name}`),
    ]);
    clearTimeout(timer);
    if (cut !== undefined) {
      alert(`Stopping ${cut} with responses still in flight`);
    }
    signals.remove();
    globalThis.removeEventListener("unhandledrejection", onUnhandled);
    await removePidfile(pidfile, Deno.pid);
    wrotePidfile = false;
    announce(`hsyncd stopped (pid ${Deno.pid})`);
    return 0;
  } catch (error) {
    if (log.file !== undefined) log.error(describeError(error));
    if (error instanceof Error) loggedErrors.add(error);
    throw error;
  } finally {
    if (wrotePidfile) await removePidfile(pidfile, Deno.pid).catch(() => {});
    await log.close();
  }
}

/** Keys whose change a reload cannot apply to a listening server (socket, TLS, log). */
function needsRestart(before: ServerSettings, after: ServerSettings): string[] {
  const keys: Array<[keyof ServerSettings, string]> = [
    ["hostIp", "Host_ip"],
    ["port", "Port"],
    ["certFile", "Cert_file"],
    ["keyFile", "Key_file"],
    ["logFile", "Log_file"],
    ["logMaxBytes", "Log_max_bytes"],
    ["logKeep", "Log_keep"],
  ];
  return keys.filter(([k]) => before[k] !== after[k]).map(([, name]) => name);
}

/** This machine's interface addresses: names of a server listening on a wildcard address. */
function interfaceAddresses(): string[] {
  return Deno.networkInterfaces().map((i) => i.address);
}

/** A warning when a wildcard listener cannot learn its addresses (a sandbox without netlink), so signatures naming them are refused. */
function interfacesProblem(): string | undefined {
  try {
    interfaceAddresses();
    return undefined;
  } catch (error) {
    return `Cannot list this machine's network addresses (${
      describeError(error)
    }): a signed request to one of them is refused unless Server_name lists it`;
  }
}

/** One line for a failure to listen, naming the address. */
function listenError(
  settings: ServerSettings,
  tls: boolean,
  error: unknown,
): Error {
  const where = hostPort(settings.hostIp, settings.port);
  if (error instanceof Deno.errors.AddrInUse) {
    return new ConfigError(`Cannot listen on ${where}: address already in use`);
  }
  if (error instanceof Deno.errors.PermissionDenied) {
    return new ConfigError(`Cannot listen on ${where}: permission denied`);
  }
  if (error instanceof Deno.errors.AddrNotAvailable) {
    return new ConfigError(
      `Cannot listen on ${where}: no such address on this machine`,
    );
  }
  if (tls) {
    return new ConfigError(
      `Cannot serve HTTPS on ${where} with Cert_file "${settings.certFile}" and Key_file "${settings.keyFile}": ${
        describeError(error)
      }`,
    );
  }
  return new ConfigError(
    `Cannot listen on ${where}: ${describeError(error)}`,
  );
}
