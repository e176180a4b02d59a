// deno-lint-ignore-file no-console
/** Entry of hsync: command line + configuration -> lib/client (pull, follow); the only part that prints, exits and listens for signals. */
import defaults from "./hsync.ini" with { type: "text" };
import {
  CLIENT_USAGE,
  type ClientCommand,
  isMultiSource,
  parseClientArgs,
  type PullCommand,
  type PushCommand,
  transferOptions,
} from "./lib/client/client_args.ts";
import {
  type ClientSettings,
  clientSettings,
  formatConfig,
  loadConfig,
  type LoadedConfig,
  type Overrides,
  resolveHsyncDir,
} from "./lib/shared/config.ts";
import {
  describeError,
  EXIT,
  exitCodeFor,
  isExpected,
  UsageError,
} from "./lib/shared/errors.ts";
import type { FilterOptions } from "./lib/client/filters.ts";
import { printable } from "./lib/client/printable.ts";
import type { PullEvent, PullOptions, PullSummary } from "./lib/client/pull.ts";
import { PullOpening } from "./lib/client/opening.ts";
import { PushOpening } from "./lib/client/push_opening.ts";
import type { PushOptions } from "./lib/client/push_context.ts";
import { checkSources } from "./lib/client/push_sources.ts";
import { Remote } from "./lib/client/remote.ts";
import { selectionOptions } from "./lib/client/selection.ts";
import {
  createReporter,
  formatFailedList,
  formatOutcomes,
  formatSummary,
  notTransferred,
  planLine,
  type Reporter,
} from "./lib/client/progress.ts";
import {
  DEFAULT_IDENTITY,
  identityFileOf,
  openTransport,
  type Transport,
} from "./lib/client/transport.ts";
import { type AuthFacts, withAuthAdvice } from "./lib/client/auth_advice.ts";
import { TokenBucket } from "./lib/client/bandwidth.ts";
import {
  errorSummaryJson,
  followEventJson,
  followSummaryJson,
  type JsonEvent,
  pullEventJson,
  summaryJson,
} from "./lib/client/json_events.ts";
import { DEFAULT_COLUMNS } from "./lib/client/progress_line.ts";
import { profileFor } from "./lib/shared/host_profiles.ts";
import { checkHostResolves } from "./lib/client/host_lookup.ts";
import { VERSION } from "./lib/shared/version.ts";
import { enterInvocationDir } from "./lib/shared/invocation_dir.ts";
import { sleep } from "./lib/shared/sleep.ts";

const encoder = new TextEncoder();

/** `--json`: whether it was asked for, and whether the summary that ends the output was written. */
const json = { on: false, ended: false, started: performance.now() };

/** Writes one `--json` line on standard output (the only thing written there). */
function writeJson(event: JsonEvent | undefined): void {
  if (event === undefined) return;
  if (event.type === "summary") json.ended = true;
  console.log(JSON.stringify(event));
}

function elapsedMs(): number {
  return performance.now() - json.started;
}

function writeErr(text: string): void {
  Deno.stderr.writeSync(encoder.encode(text));
}

function hsyncDirOf(): string {
  return resolveHsyncDir({
    HSYNC_DIR: Deno.env.get("HSYNC_DIR"),
    HOME: Deno.env.get("HOME"),
  });
}

async function loadFor(
  configFile: string | undefined,
): Promise<LoadedConfig & { hsyncDir: string }> {
  const hsyncDir = hsyncDirOf();
  const config = await loadConfig({ defaults, hsyncDir, configFile });
  for (const w of config.warnings) console.error(`hsync: warning: ${w}`);
  for (const n of config.notes ?? []) console.error(`hsync: note: ${n}`);
  return { ...config, hsyncDir };
}

function formatHost(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

/** Settings, server URL and transport of a pull or a push. */
async function connectionFor(cmd: PullCommand | PushCommand): Promise<{
  settings: ClientSettings;
  baseUrl: string;
  transport: Transport;
  hsyncDir: string;
  bandwidth?: TokenBucket;
}> {
  const config = await loadFor(cmd.configFile);
  const overrides: Overrides = {};
  // A `[host:NAME]` profile is used as ssh uses a Host alias; any other name must resolve.
  const profile = cmd.host === undefined
    ? undefined
    : profileFor(config.profiles, cmd.host);
  if (profile === undefined && cmd.host !== undefined) {
    await checkHostResolves(cmd.host);
    overrides.Host_ip = cmd.host;
  } else if (profile?.hostIp !== undefined) overrides.Host_ip = profile.hostIp;
  if (cmd.port !== undefined) overrides.Port = cmd.port;
  if (cmd.tls) overrides.Tls = "yes";
  const section = cmd.kind === "pull" && cmd.sync ? "hsync" : "hscp";
  const settings = clientSettings(config, section, overrides, profile?.name);
  const baseUrl = `${settings.tls ? "https" : "http"}://${
    formatHost(settings.hostIp)
  }:${settings.port}`;
  // Transport (issue 4 seam): TLS client and request signing.
  const transport = await openTransport(settings, config.hsyncDir, {
    sshAuthSock: Deno.env.get("SSH_AUTH_SOCK"),
  });
  authFacts = {
    host: new URL(baseUrl).host,
    signed: transport.sign !== undefined,
    identityFile: transport.identityFile,
    fingerprint: transport.fingerprint,
    hsyncDir: config.hsyncDir,
  };
  // One bucket for every connection of the run, both directions.
  const bandwidth = cmd.bwlimit === undefined
    ? undefined
    : new TokenBucket(cmd.bwlimit);
  return {
    settings,
    baseUrl,
    transport,
    hsyncDir: config.hsyncDir,
    bandwidth,
  };
}

async function runPull(cmd: PullCommand): Promise<number> {
  const { settings, baseUrl, transport, hsyncDir, bandwidth } =
    await connectionFor(cmd);
  if (cmd.sync) {
    return await runFollow(
      cmd,
      settings,
      baseUrl,
      transport,
      hsyncDir,
      bandwidth,
    );
  }

  const controller = new AbortController();
  const reporter = await reporterFor(cmd);
  let interrupted = false;
  const stopListening = onStopSignal(() => {
    if (interrupted) Deno.exit(130);
    interrupted = true;
    // The bar goes first, so nothing of it stays above the lines that end the run.
    reporter.stop();
    writeErr("hsync: interrupted, stopping (partial files are kept)\n");
    controller.abort();
  });
  try {
    const options: PullOptions = {
      baseUrl,
      ...transferOptions(cmd),
      ...await selectionOf(cmd),
      settings,
      verify: cmd.verify,
      checksum: cmd.checksum,
      deleteExtra: cmd.mirror.delete,
      maxDelete: cmd.mirror.maxDelete,
      dryRun: cmd.mirror.dryRun,
      signal: controller.signal,
      onEvent: (event) => toTerminal(event, reporter),
      client: transport.client,
      sign: transport.sign,
      noWait: cmd.noWait,
      onLockWait: cmd.quiet ? undefined : waitLine,
      bandwidth,
      earlyRange: true,
    };
    let summary;
    if (isMultiSource(cmd.remotePaths)) {
      const { expandSources, pullSources } = await import(
        "./lib/client/sources.ts"
      );
      const remote = new Remote({
        baseUrl,
        client: transport.client,
        sign: transport.sign,
        idleTimeoutMs: settings.dataTimeout * 1000,
        bandwidth,
      });
      const sources = await expandSources(remote, cmd.remotePaths, {
        maxEntries: cmd.maxEntries,
        signal: controller.signal,
      });
      summary = await pullSources(options, sources);
    } else {
      // The first requests go out before the engine (and node's crypto
      // module under it) is loaded: loading it then overlaps their round
      // trip instead of preceding it.
      options.opening = new PullOpening(options, controller.signal);
      const { pull } = await afterFirstRequests(() =>
        import("./lib/client/pull.ts")
      );
      summary = await pull(options);
    }
    reporter.stop();
    return finish(summary, reporter, {
      interrupted,
      dryRun: cmd.mirror.dryRun,
      quiet: cmd.quiet,
    });
  } finally {
    reporter.stop();
    stopListening();
  }
}

/** The one line a run waiting for another hsync's destination lock prints. */
function waitLine(dir: string, pid: number | undefined): void {
  writeErr(
    `hsync: waiting for another hsync writing into ${
      printable(JSON.stringify(dir))
    }${pid === undefined ? "" : ` (pid ${pid})`}\n`,
  );
}

/** What a pull or a push selects: the globs, the regular expressions and the `-from` files read (`-` is standard input). */
async function selectionOf(
  cmd: PullCommand | PushCommand,
): Promise<FilterOptions> {
  return await selectionOptions(
    cmd.select,
    cmd.include,
    cmd.exclude,
    readSelectionFile,
  );
}

/** An event of a pull or a push: a dry run's plan line (or with `--json` every event told) on standard output, anything else to the progress reporter. */
function toTerminal(event: PullEvent, reporter: Reporter): void {
  if (json.on) writeJson(pullEventJson(event));
  const line = planLine(event);
  if (line === undefined) reporter.onEvent(event);
  else if (!json.on) console.log(line);
}

/** The terminal's width in columns (stderr's, else any standard stream's), or 80 when none is a terminal. */
function terminalColumns(): number {
  try {
    return Deno.consoleSize().columns || DEFAULT_COLUMNS;
  } catch {
    return DEFAULT_COLUMNS;
  }
}

/** The progress reporter of a pull or a push: a bar as wide as the terminal on one, plain lines otherwise. */
async function reporterFor(cmd: PullCommand | PushCommand): Promise<Reporter> {
  return await createReporter({
    quiet: cmd.quiet || cmd.mirror.dryRun,
    isTerminal: Deno.stderr.isTerminal(),
    columns: terminalColumns,
    write: writeErr,
  });
}

/**
 * The end of a pull or a push: every omission named, the summary line (not
 * with `--quiet`, unless interrupted), what failed by name, and the exit
 * code (a dry run changed nothing: what it found is printed, and it
 * succeeded).
 */
function finish(
  summary: PullSummary,
  reporter: Reporter,
  run: { interrupted: boolean; dryRun: boolean; quiet: boolean },
): number {
  const { interrupted, dryRun } = run;
  for (const line of formatOutcomes(summary)) console.error(line);
  if (!run.quiet || interrupted) {
    console.error(formatSummary(summary, { ...reporter.tally(), interrupted }));
  }
  for (const line of formatFailedList(summary)) console.error(line);
  const code = interrupted
    ? EXIT.interrupted
    : dryRun
    ? EXIT.ok
    : summary.failed > 0 || notTransferred(summary) > 0
    ? EXIT.partial
    : EXIT.ok;
  if (json.on) writeJson(summaryJson(summary, code, elapsedMs()));
  return code;
}

/** A push: local files and trees to the server; the same progress, summary and exit codes as a pull. */
async function runPush(cmd: PushCommand): Promise<number> {
  // A bad local path is told before any request (nothing sent).
  const sources = checkSources(cmd.sources);
  const selection = await selectionOf(cmd);
  const { settings, baseUrl, transport, bandwidth, hsyncDir } =
    await connectionFor(cmd);
  const controller = new AbortController();
  const reporter = await reporterFor(cmd);
  let interrupted = false;
  const stopListening = onStopSignal(() => {
    if (interrupted) Deno.exit(130);
    interrupted = true;
    reporter.stop();
    writeErr(
      "hsync: interrupted, stopping (what the server holds is kept for a rerun)\n",
    );
    controller.abort();
  });
  try {
    const options: PushOptions = {
      baseUrl,
      sources: cmd.sources,
      remotePath: cmd.remotePath,
      scpPlacement: cmd.scpStyle,
      settings,
      parallelFiles: cmd.parallel,
      ...selection,
      deleteExtra: cmd.mirror.delete,
      maxDelete: cmd.mirror.maxDelete,
      dryRun: cmd.mirror.dryRun,
      preserve: cmd.preserve,
      ...cmd.copy,
      verify: cmd.verify,
      checksum: cmd.checksum,
      maxEntries: cmd.maxEntries,
      signal: controller.signal,
      onEvent: (event) => toTerminal(event, reporter),
      client: transport.client,
      caCerts: transport.caCerts,
      sign: transport.sign,
      bandwidth,
      noWait: cmd.noWait,
      onLockWait: cmd.quiet ? undefined : waitLine,
      leaseRecords: `${hsyncDir}/leases`,
    };
    // The first requests go out before the engine is loaded (as a pull's).
    options.opening = new PushOpening(options, sources);
    const opening = options.opening;
    const { push } = await afterFirstRequests(
      () => import("./lib/client/push.ts"),
      () => opening.settle(),
      true,
    );
    const summary = await push(options);
    reporter.stop();
    return finish(summary, reporter, {
      interrupted,
      dryRun: cmd.mirror.dryRun,
      quiet: cmd.quiet,
    });
  } catch (error) {
    if (interrupted) {
      reporter.stop();
      return EXIT.interrupted;
    }
    throw error;
  } finally {
    reporter.stop();
    stopListening();
  }
}

/** `--sync`: follows until SIGINT/SIGTERM (exit 0) or until the server stays unreachable (throws `ConnectError`, exit 4). */
async function runFollow(
  cmd: PullCommand,
  settings: ClientSettings,
  baseUrl: string,
  transport: Transport,
  hsyncDir: string,
  bandwidth: TokenBucket | undefined,
): Promise<number> {
  // Loaded only for --sync: a one-shot pull starts sooner without them.
  const [{ follow }, report, { followStatePath }] = await Promise.all([
    import("./lib/client/follow.ts"),
    import("./lib/client/follow_report.ts"),
    import("./lib/client/follow_state.ts"),
  ]);
  const controller = new AbortController();
  const stopListening = onStopSignal(() => {
    if (controller.signal.aborted) return;
    writeErr("\nhsync: stopping: finishing the write in progress\n");
    controller.abort();
  });
  const reporter = await report.createFollowReporter({
    write: writeErr,
    isTerminal: Deno.stderr.isTerminal(),
    columns: terminalColumns,
    quiet: cmd.quiet,
    debug: cmd.debug,
    host: new URL(baseUrl).host,
  });
  try {
    const summary = await follow({
      baseUrl,
      ...transferOptions(cmd),
      settings,
      fromNow: cmd.fromNow,
      stateFile: followStatePath(
        hsyncDir,
        baseUrl,
        cmd.remotePath,
        cmd.localPath,
      ),
      signal: controller.signal,
      onEvent: (event) => {
        if (json.on) writeJson(followEventJson(event));
        reporter.onEvent(event);
      },
      client: transport.client,
      sign: transport.sign,
      bandwidth,
    });
    if (!cmd.quiet) writeErr(`${report.formatFollowSummary(summary)}\n`);
    if (json.on) writeJson(followSummaryJson(summary, EXIT.ok, elapsedMs()));
    return EXIT.ok;
  } finally {
    reporter.stop();
    stopListening();
  }
}

/** Calls `onSignal` on SIGINT and SIGTERM until the returned function is called. */
function onStopSignal(onSignal: () => void): () => void {
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  return () => {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  };
}

async function run(command: ClientCommand): Promise<number> {
  switch (command.kind) {
    case "help":
      console.log(CLIENT_USAGE);
      return EXIT.ok;
    case "version":
      console.log(`hsync ${VERSION}`);
      return EXIT.ok;
    case "echo-config": {
      const config = await loadFor(command.configFile);
      // Validate every section so a bad value is reported here too.
      const shown: Record<string, Record<string, string>> = {};
      for (const section of ["hscp", "hsync"] as const) {
        const settings = clientSettings(config, section);
        if (settings.identityFile !== "") continue;
        const used = await identityFileOf(settings, config.hsyncDir);
        shown[section] = {
          Identity_file: used === undefined
            ? `  ; none: no "${DEFAULT_IDENTITY}" in $HSYNC_DIR (requests are not signed)`
            : `${used}  ; default: ${DEFAULT_IDENTITY} in $HSYNC_DIR`,
        };
      }
      console.log(formatConfig(config, shown));
      return EXIT.ok;
    }
    case "keygen": {
      if (command.publicOf !== undefined) {
        const { publicLineOfFile } = await import(
          "./lib/client/ssh_identity.ts"
        );
        console.log(await publicLineOfFile(command.publicOf));
        return EXIT.ok;
      }
      const hsyncDir = hsyncDirOf();
      const user = (Deno.env.get("HOME") ?? "").split("/").filter(Boolean)
        .pop() ?? "hsync";
      const { writeKeyPair } = await import("./lib/shared/auth.ts");
      const keys = await writeKeyPair(hsyncDir, {
        force: command.force,
        comment: `${user}@hsync-${new Date().toISOString().slice(0, 10)}`,
      });
      console.error(
        `hsync: wrote private key "${keys.privateFile}" (mode 0600) and public key "${keys.publicFile}"`,
      );
      console.error(
        "hsync: append this line to the server's Authorized_keys file:",
      );
      console.log(keys.publicLine);
      return EXIT.ok;
    }
    case "pull":
      return await runPull(command);
    case "push":
      return await runPush(command);
  }
}

/** How this run authenticates, once it is known: a 401 is then told with what to do. */
let authFacts: AuthFacts | undefined;

async function main(argv: string[]): Promise<number> {
  let debug = argv.includes("--debug");
  json.on = argv.includes("--json");
  try {
    // Before any path is read: relative paths are the user's, not the repository's.
    enterInvocationDir();
    const command = parseClientArgs(argv);
    const transfer = command.kind === "pull" || command.kind === "push";
    debug = transfer && command.debug;
    json.on = transfer && command.json;
    const code = await run(command);
    // A run that ended without its summary (a push interrupted before it had one).
    if (json.on && !json.ended) {
      writeJson(
        errorSummaryJson(
          code === EXIT.interrupted ? "Interrupted" : "Stopped",
          code,
          elapsedMs(),
        ),
      );
    }
    return code;
  } catch (thrown) {
    const error = authFacts === undefined
      ? thrown
      : withAuthAdvice(thrown, authFacts);
    const code = exitCodeFor(error);
    console.error(`hsync: ${printable(describeError(error))}`);
    if (json.on && !json.ended) {
      writeJson(errorSummaryJson(describeError(error), code, elapsedMs()));
    }
    if (error instanceof UsageError) {
      console.error("Try 'hsync --help' for more information.");
    }
    if (debug || !isExpected(error)) {
      if (error instanceof Error && error.stack && debug) {
        console.error(error.stack);
      }
    }
    return code;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}

/**
 * Imports an engine once the first requests are sent, in steps, the
 * heaviest of node's modules first, the event loop turning before each (an
 * asynchronous `lstat` of `/` is one turn; it cannot fail in a way that
 * matters, and a failure is ignored): the first requests' connections write
 * their bytes between the steps, not after the whole engine is evaluated.
 * First a wait of 1 ms (`first`; a push's waits for its first answer:
 * `PushOpening.settle`): an `lstat` turn does not always let the runtime look
 * at its sockets (a stat hsyncd was sent during a listing waited 17 such
 * turns), a timer does, and the connections opened meanwhile then write
 * their requests (through the 10 ms relay, the first request's bytes left
 * 4-7 ms after its SYN instead of 11-37). node's fs is a step of a push's
 * (its engine reads local files through node descriptors), not of a pull's:
 * a pull loads it only to set a mode (lib/shared/part_file.ts's
 * `readyToSetModes`).
 */
async function afterFirstRequests<T>(
  engine: () => Promise<T>,
  first: () => Promise<void> = () => sleep(1),
  nodeFs = false,
): Promise<T> {
  const turn = () => Deno.lstat("/").catch(() => undefined);
  await first();
  const steps: Array<() => Promise<unknown>> = [() => import("node:crypto")];
  if (nodeFs) steps.unshift(() => import("node:fs"));
  for (const step of steps) {
    await turn();
    await step();
  }
  await turn();
  return await engine();
}

/** Reads a `-from` file of the selection flags; `-` is standard input. */
async function readSelectionFile(name: string): Promise<string> {
  return name === "-"
    ? await new Response(Deno.stdin.readable).text()
    : await Deno.readTextFile(name);
}
