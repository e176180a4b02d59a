/** Tests of hsyncd's command-line parser: old and new flags, subcommands, one-line errors. */
import assert from "node:assert/strict";
import {
  parseServerArgs,
  type ServerArgs,
  type ServerCommand,
} from "../lib/server/server_args.ts";
import { UsageError } from "../lib/shared/errors.ts";

function parsed(
  command: ServerCommand,
  more: Partial<ServerArgs> = {},
): ServerArgs {
  return {
    command,
    configFile: undefined,
    logFile: undefined,
    overrides: {},
    help: false,
    version: false,
    debug: false,
    ...more,
  };
}

const accepted: Array<[string[], ServerArgs]> = [
  [[], parsed("run")],
  [["start"], parsed("start")],
  [["stop"], parsed("stop")],
  [["restart"], parsed("restart")],
  [["status"], parsed("status")],
  [["-d"], parsed("start")],
  [["--daemon"], parsed("start")],
  [["start", "-d"], parsed("start")],
  [["-host", "1.2.3.4"], parsed("run", { overrides: { Host_ip: "1.2.3.4" } })],
  [["-host=1.2.3.4"], parsed("run", { overrides: { Host_ip: "1.2.3.4" } })],
  [
    ["--host-ip", "1.2.3.4"],
    parsed("run", { overrides: { Host_ip: "1.2.3.4" } }),
  ],
  [["--host-ip=::1"], parsed("run", { overrides: { Host_ip: "::1" } })],
  [["-p", "8080"], parsed("run", { overrides: { Port: "8080" } })],
  [["--port=8080"], parsed("run", { overrides: { Port: "8080" } })],
  [
    ["-l", "/var/log/h.log"],
    parsed("run", {
      logFile: "/var/log/h.log",
      overrides: { Log_file: "/var/log/h.log" },
    }),
  ],
  [["--config", "x.ini"], parsed("run", { configFile: "x.ini" })],
  [["-c", "x.ini", "status"], parsed("status", { configFile: "x.ini" })],
  [["-h"], parsed("run", { help: true })],
  [["--help"], parsed("run", { help: true })],
  [["--version"], parsed("run", { version: true })],
  [["--debug"], parsed("run", { debug: true })],
  [
    ["restart", "-host", "127.0.0.1", "-p", "10809", "-d"],
    parsed("restart", { overrides: { Host_ip: "127.0.0.1", Port: "10809" } }),
  ],
];

for (const [argv, expected] of accepted) {
  Deno.test(`parseServerArgs() accepts ${JSON.stringify(argv)}`, () => {
    assert.deepEqual(parseServerArgs(argv), expected);
  });
}

const refused: Array<[string[], string]> = [
  [
    ["-p", "70000"],
    '-p needs a port number (1-65535), got "70000"',
  ],
  [
    ["--port", "0"],
    '-p needs a port number (1-65535), got "0"',
  ],
  [
    ["-p", "http"],
    '-p needs a port number (1-65535), got "http"',
  ],
  [["-p"], 'Option "-p/--port" needs a value'],
  [["-p", "-d"], 'Option "-p/--port" needs a value'],
  [["-host"], 'Option "-host/--host-ip" needs a value'],
  [
    ["-host="],
    '-host needs an IP address or host name, got ""',
  ],
  [["--daemon=yes"], 'Option "-d/--daemon" does not take a value'],
  [["--foo"], 'Unknown option "--foo": see hsyncd --help'],
  [["-x"], 'Unknown option "-x": see hsyncd --help'],
  [["-hostname", "a"], 'Unknown option "-hostname": see hsyncd --help'],
  [
    ["begin"],
    'Unknown command "begin": expected start, stop, restart or status',
  ],
  [["start", "now"], 'Unexpected argument "now"'],
  [["stop", "-d"], 'Option "-d" cannot be used with "stop"'],
  [["status", "--daemon"], 'Option "-d" cannot be used with "status"'],
  [["-l", ""], 'Option "-l/--log" needs a file name'],
  [["-c", " "], 'Option "-c/--config" needs a file name'],
];

for (const [argv, message] of refused) {
  Deno.test(`parseServerArgs() refuses ${JSON.stringify(argv)}`, () => {
    assert.throws(() => parseServerArgs(argv), (error: unknown) => {
      assert.ok(error instanceof UsageError);
      assert.equal(error.message, message);
      return true;
    });
  });
}

Deno.test("parseServerArgs() leaves arguments after -- alone", () => {
  assert.throws(
    () => parseServerArgs(["--", "-host"]),
    (error: unknown) => {
      assert.ok(error instanceof UsageError);
      assert.equal(
        error.message,
        'Unknown command "-host": expected start, stop, restart or status',
      );
      return true;
    },
  );
});
