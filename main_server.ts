// deno-lint-ignore-file no-console
/** Entry of hsyncd: command line and configuration -> lib/server.ts -> Deno.serve, and start/stop/restart/status. */
import defaults from "./hsync.ini" with { type: "text" };
import { dirname, join, resolve } from "node:path";
import {
  loadConfig,
  resolveHsyncDir,
  type ServerSettings,
  serverSettings,
} from "./lib/shared/config.ts";
import {
  ConfigError,
  describeError,
  exitCodeFor,
  isExpected,
} from "./lib/shared/errors.ts";
import { VERSION } from "./lib/shared/version.ts";
import {
  parseServerArgs,
  SERVER_USAGE,
  type ServerArgs,
} from "./lib/server/server_args.ts";
import {
  appendLogLine,
  checkLogFileName,
  openServerLog,
  type ServerLog,
} from "./lib/server/server_log.ts";
import { createHandler } from "./lib/server/server.ts";
import { WatchHub } from "./lib/server/watch_hub.ts";
import { type AuthorizedKeys, loadAuthorizedKeys } from "./lib/shared/auth.ts";
import { ServerNames } from "./lib/server/server_names.ts";
import {
  checkPidfile,
  exposureWarning,
  formatUptime,
  ownProcessStart,
  pidfileDirProblem,
  pidfilePath,
  type PidfileState,
  type PidInfo,
  removePidfile,
  selfCommand,
  serverUrl,
  spawnDetached,
  systemProbe,
  waitForPortFree,
  waitForStart,
  waitUntilGone,
  writePidfile,
} from "./lib/server/daemon.ts";

/** After SIGTERM, in-flight responses get this long before the process exits anyway. */
const GRACE_MS = 10_000;
/** `stop` waits this long for the process to go (the grace period and a margin). */
const STOP_WAIT_MS = GRACE_MS + 5_000;
/** `start` waits this long for the detached server to answer. */
const START_WAIT_MS = 20_000;
/** `restart` waits this long for the old server's port to be free. */
const PORT_FREE_WAIT_MS = 10_000;
/** LSB exit code of `status` when the program is not running. */
const NOT_RUNNING = 3;

/** Everything a command needs once the configuration is loaded. */
interface Context {
  args: ServerArgs;
  hsyncDir: string;
  pidfile: string;
  settings: ServerSettings;
  /** Configuration warnings, already printed on stderr. */
  warnings: string[];
}

/** Errors already written to the log, so they are not written twice. */
const loggedErrors = new WeakSet<Error>();

async function main(args: ServerArgs): Promise<number> {
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
  const pidfile = pidfilePath(hsyncDir);
  if (args.command === "status") return await status(pidfile);
  if (args.command === "stop") return await stop(pidfile);

  const config = await loadConfig({
    defaults,
    hsyncDir,
    configFile: args.configFile,
  });
  for (const warning of config.warnings) {
    console.error(`hsyncd: warning: ${warning}`);
  }
  const settings = serverSettings(config, args.overrides);
  const context: Context = {
    args,
    hsyncDir,
    pidfile,
    settings,
    warnings: config.warnings,
  };
  switch (args.command) {
    case "run":
      return await serve(context);
    case "start":
      return await start(context);
    case "restart":
      return await restart(context);
  }
}

/** Serves in the foreground until SIGTERM or SIGINT. */
async function serve(context: Context): Promise<number> {
  const { settings, pidfile } = context;
  const state = await checkPidfile(pidfile);
  refuseToStart(state, pidfile);
  const tls = await readTls(settings);
  const auth = await readAuth(settings);
  const log = await openServerLog({
    file: settings.logFile === "" ? undefined : resolve(settings.logFile),
    maxBytes: settings.logMaxBytes,
    keep: settings.logKeep,
    stream: Deno.stderr.writable,
    onWriteError: (line) => console.error(`hsyncd: ${line}`),
  });
  let wrotePidfile = false;
  try {
    if (log.file !== undefined) {
      for (const warning of context.warnings) log.warn(warning);
    }
    if (state.state === "stale") {
      alert(log, `Replacing stale pidfile "${pidfile}": ${state.reason}`);
    }
    for (const warning of auth?.warnings ?? []) alert(log, warning);
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
        hsyncDir: context.hsyncDir,
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

    const signals = watchSignals();
    const scheme = tls === undefined ? "http" : "https";
    const info: PidInfo = {
      pid: Deno.pid,
      host: settings.hostIp,
      port: server.addr.port,
      scheme,
      started: new Date().toISOString(),
      procStart: await ownProcessStart(),
      version: VERSION,
    };
    try {
      await writePidfile(pidfile, info);
      wrotePidfile = true;
    } catch (error) {
      await server.shutdown();
      throw new ConfigError(
        `Cannot write pidfile "${pidfile}": ${fileError(error)}`,
      );
    }
    const url = serverUrl(scheme, settings.hostIp, info.port);
    announce(log, `hsyncd ${VERSION} listening on ${url} (pid ${Deno.pid})`);
    const uid = (await systemProbe.self()).uid;
    const dirProblem = uid === undefined
      ? undefined
      : await pidfileDirProblem(dirname(pidfile), uid);
    if (dirProblem !== undefined) {
      alert(
        log,
        `Pidfile "${pidfile}" ${dirProblem}: "hsyncd stop" will not trust it`,
      );
    }
    if (auth !== undefined) {
      announce(
        log,
        `Requests must be signed by one of ${auth.keys} key(s) in Authorized_keys "${settings.authorizedKeys}"`,
      );
      const names = namesFor(settings);
      const cannot = names.wildcard ? interfacesProblem() : undefined;
      if (cannot !== undefined) alert(log, cannot);
      announce(
        log,
        `Signatures are accepted for ${
          names.list().join(", ")
        } (add other names to Server_name)`,
      );
    }
    const warning = exposureWarning(settings);
    if (warning !== undefined) alert(log, warning);

    const onHangup = async () => {
      try {
        const next = await reloadSettings(context);
        const nextAuth = await readAuth(next.settings);
        const fresh = await handlerFor(next.settings, nextAuth);
        handler = fresh;
        const stale = needsRestart(active, next.settings);
        active = next.settings;
        for (const warning of next.warnings) log.warn(warning);
        for (const warning of nextAuth?.warnings ?? []) alert(log, warning);
        announce(
          log,
          "Reloaded the configuration on SIGHUP" +
            (stale.length > 0
              ? ` (changes to ${stale.join(", ")} apply after a restart)`
              : ""),
        );
      } catch (error) {
        alert(
          log,
          `Reload on SIGHUP failed, the previous configuration stays: ${
            describeError(error)
          }`,
        );
      }
    };
    Deno.addSignalListener("SIGHUP", onHangup);

    const signal = await signals.first;
    Deno.removeSignalListener("SIGHUP", onHangup);
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
      alert(log, `Stopping ${cut} with responses still in flight`);
    }
    signals.remove();
    globalThis.removeEventListener("unhandledrejection", onUnhandled);
    await removePidfile(pidfile, Deno.pid);
    wrotePidfile = false;
    announce(log, `hsyncd stopped (pid ${Deno.pid})`);
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

/** The configuration read again the way `main` read it (same files, same command-line overrides). */
async function reloadSettings(
  context: Context,
): Promise<{ settings: ServerSettings; warnings: string[] }> {
  const config = await loadConfig({
    defaults,
    hsyncDir: context.hsyncDir,
    configFile: context.args.configFile,
  });
  return {
    settings: serverSettings(config, context.args.overrides),
    warnings: config.warnings,
  };
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

/** SIGTERM and SIGINT: the first stops the server gracefully, a second one stops waiting. */
function watchSignals(): {
  first: Promise<Deno.Signal>;
  second: Promise<Deno.Signal>;
  remove(): void;
} {
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
}

/** Detaches: runs the foreground form in its own session and waits until it answers. */
async function start(context: Context): Promise<number> {
  const { settings, pidfile, args } = context;
  const state = await checkPidfile(pidfile);
  refuseToStart(state, pidfile);
  if (state.state === "stale") {
    await removePidfile(pidfile);
    console.error(
      `hsyncd: Removed stale pidfile "${pidfile}": ${state.reason}`,
    );
  }
  await readTls(settings);
  for (const warning of (await readAuth(settings))?.warnings ?? []) {
    console.error(`hsyncd: warning: ${warning}`);
  }
  const warning = exposureWarning(settings);
  if (warning !== undefined) console.error(`hsyncd: ${warning}`);

  const logFile = resolve(
    settings.logFile === ""
      ? join(context.hsyncDir, "hsyncd.log")
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
      mainModule: import.meta.url,
      standalone: Deno.build.standalone,
      args: childArgs,
    }),
    { cwd: Deno.cwd(), env: { HSYNC_DIR: context.hsyncDir } },
  );
  const outcome = await waitForStart({
    child,
    pidfile,
    timeoutMs: START_WAIT_MS,
  });
  if (outcome.outcome === "ready") {
    const { info } = outcome;
    console.log(
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
async function restart(context: Context): Promise<number> {
  // A configuration that cannot start must not stop the running server.
  await readTls(context.settings);
  await readAuth(context.settings);
  const state = await checkPidfile(context.pidfile);
  refuseToSignal(state, context.pidfile);
  if (state.state === "running") {
    await stopProcess(state.info, context.pidfile);
  } else {
    if (state.state === "stale") await removePidfile(context.pidfile);
    console.log(notRunning(context.pidfile, state, true));
  }
  const { hostIp, port } = context.settings;
  if (!await waitForPortFree(hostIp, port, PORT_FREE_WAIT_MS)) {
    throw new ConfigError(
      `Cannot listen on ${hostPort(hostIp, port)}: address still in use after ${
        PORT_FREE_WAIT_MS / 1000
      } s`,
    );
  }
  return await start(context);
}

/** `stop`: exit 0 when the server is gone, whether it was running or not; 1 when the pidfile cannot be trusted (nothing is signalled). */
async function stop(pidfile: string): Promise<number> {
  const state = await checkPidfile(pidfile);
  refuseToSignal(state, pidfile);
  if (state.state !== "running") {
    if (state.state === "stale") await removePidfile(pidfile);
    console.log(notRunning(pidfile, state, true));
    return 0;
  }
  await stopProcess(state.info, pidfile);
  return 0;
}

/** Sends SIGTERM to a verified hsyncd and waits until it is gone. */
async function stopProcess(info: PidInfo, pidfile: string): Promise<void> {
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
  console.log(`hsyncd stopped (pid ${info.pid})`);
}

/** `status`: exit 0 when running, 3 when not, 1 when the pidfile cannot be trusted. */
async function status(pidfile: string): Promise<number> {
  const state = await checkPidfile(pidfile);
  if (state.state === "untrusted") {
    throw new ConfigError(
      `Cannot tell whether hsyncd runs: pidfile "${pidfile}" ${state.reason}`,
    );
  }
  if (state.state !== "running") {
    console.log(notRunning(pidfile, state));
    return NOT_RUNNING;
  }
  const { info } = state;
  const up = formatUptime(Date.now() - Date.parse(info.started));
  console.log(
    `hsyncd is running (pid ${info.pid}) on ${
      serverUrl(info.scheme, info.host, info.port)
    }, up ${up}`,
  );
  return 0;
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

/** `start` and `run` go ahead only without a running hsyncd and with a pidfile they may replace. */
function refuseToStart(state: PidfileState, pidfile: string): void {
  if (state.state === "running") {
    throw new ConfigError(alreadyRunning(state.info));
  }
  if (state.state === "untrusted") {
    throw new ConfigError(
      `Cannot start: pidfile "${pidfile}" ${state.reason}; remove it if no hsyncd runs`,
    );
  }
}

/** Nothing is signalled on the word of a pidfile that cannot be trusted. */
function refuseToSignal(state: PidfileState, pidfile: string): void {
  if (state.state === "untrusted") {
    throw new ConfigError(
      `Cannot stop hsyncd: pidfile "${pidfile}" ${state.reason}; no signal was sent`,
    );
  }
}

function alreadyRunning(info: PidInfo): string {
  return `Cannot start: hsyncd is already running (pid ${info.pid}) on ${
    serverUrl(info.scheme, info.host, info.port)
  }; stop it with "hsyncd stop"`;
}

/** The certificate and key for HTTPS, or undefined for plain HTTP. */
async function readTls(
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
async function readAuth(
  settings: ServerSettings,
): Promise<AuthorizedKeys | undefined> {
  if (settings.authorizedKeys === "") return undefined;
  return await loadAuthorizedKeys(settings.authorizedKeys);
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

/** The cause of a failed file operation, without Deno's os error details. */
function fileError(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such file or directory";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.IsADirectory) return "is a directory";
  return describeError(error);
}

function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** A line for the operator: stdout, and the log file when there is one. */
function announce(log: ServerLog, line: string): void {
  console.log(line);
  if (log.file !== undefined) log.info(line);
}

/** A warning: to the log, and also to stderr when the log is a file. */
function alert(log: ServerLog, line: string): void {
  log.warn(line);
  if (log.file !== undefined) console.error(`hsyncd: ${line}`);
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

/** Reports an error in one line (a stack trace only with --debug) and returns the exit code. */
function report(
  error: unknown,
  args: ServerArgs | undefined,
): number {
  const message = describeError(error);
  console.error(`hsyncd: ${message}`);
  if (!isExpected(error)) {
    if (args?.debug && error instanceof Error) console.error(error.stack);
    else console.error("hsyncd: run with --debug for details");
  }
  // A detached server has no stderr: a failure before its log was open still
  // goes to the log file it was given, where `start` looks for it.
  const logged = error instanceof Error && loggedErrors.has(error);
  if (args?.command === "run" && args.logFile !== undefined && !logged) {
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
    args = parseServerArgs(Deno.args);
    code = await main(args);
  } catch (error) {
    code = report(error, args);
  }
  Deno.exit(code);
}
