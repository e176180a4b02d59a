/** Tests of lib/shared/config.ts: layer precedence, validation messages, unknown keys, echo-config output. */
import assert from "node:assert/strict";
import { join } from "node:path";
import defaults from "../hsync.ini" with { type: "text" };
import {
  BUILTIN,
  clientSettings,
  formatConfig,
  loadConfig,
  parseBytes,
  resolveHsyncDir,
  serverSettings,
} from "../lib/shared/config.ts";
import { ConfigError } from "../lib/shared/errors.ts";
import {
  BUILTIN_DEFAULTS,
  BUILTIN_TEXT,
  parseIni,
  parseIniText,
} from "../lib/shared/ini_text.ts";

function fakeFs(files: Record<string, string>) {
  return (path: string) => {
    const text = files[path];
    if (text === undefined) {
      return Promise.reject(new Deno.errors.NotFound(`no ${path}`));
    }
    return Promise.resolve(text);
  };
}

Deno.test("the built-in defaults read at start-up are hsync.ini as the INI parser reads it, and a copy each time", async () => {
  assert.equal(BUILTIN_TEXT, defaults);
  // As JSON: the parser's objects have no prototype.
  const plain = (o: unknown) => JSON.parse(JSON.stringify(o));
  assert.deepEqual(
    BUILTIN_DEFAULTS,
    plain(await parseIniText(defaults)),
    "lib/shared/hsync_ini.json is not hsync.ini any more: run deno task defaults",
  );
  const first = await parseIni(defaults);
  (first.hscp as Record<string, string>).Port = "1";
  assert.deepEqual(await parseIni(defaults), BUILTIN_DEFAULTS);
  // Any other text goes through the parser.
  assert.deepEqual(plain(await parseIni("[hscp]\nPort = 2\n")), {
    hscp: { Port: "2" },
  });
});

Deno.test("the built-in defaults alone give valid settings for every section", async () => {
  const config = await loadConfig({
    defaults,
    hsyncDir: "/nonexistent",
    readTextFile: fakeFs({}),
  });
  assert.deepEqual(config.warnings, []);
  const server = serverSettings(config);
  assert.deepEqual(server.port, 10808);
  assert.deepEqual(server.hostIp, "0.0.0.0");
  assert(server.forbiddenDir.includes(".ssh"));
  const hscp = clientSettings(config, "hscp");
  assert.deepEqual(hscp.port, 10808);
  assert.deepEqual(hscp.tls, false);
  assert.deepEqual(clientSettings(config, "hsync").syncIntervalSec, 2);
});

Deno.test("precedence is flag > -c FILE > $HSYNC_DIR/hsync.ini > built-in defaults", async () => {
  const readTextFile = fakeFs({
    "/h/hsync.ini": "[hscp]\nPort = 2000\nMax_part_num = 3\nData_timeout = 7\n",
    "/etc/c.ini": "[hscp]\nPort = 3000\nMax_part_num = 4\n",
  });
  const config = await loadConfig({
    defaults,
    hsyncDir: "/h",
    configFile: "/etc/c.ini",
    readTextFile,
  });
  assert.deepEqual(config.searched.map((f) => f.path), [
    BUILTIN,
    "/h/hsync.ini",
    "/etc/c.ini",
  ]);
  const s = clientSettings(config, "hscp", { Port: "4000" });
  assert.deepEqual(s.port, 4000); // flag
  assert.deepEqual(s.maxPartNum, 4); // -c
  assert.deepEqual(s.dataTimeout, 7); // $HSYNC_DIR
  assert.deepEqual(s.maxRangesInFlight, 16); // built-in
  assert.deepEqual(clientSettings(config, "hscp").port, 3000);
});

Deno.test("Max_part_num is the same bound for every address and direction: no host is assumed near or far", async () => {
  const builtIn = await loadConfig({
    defaults,
    hsyncDir: "/nonexistent",
    readTextFile: fakeFs({}),
  });
  for (const section of ["hscp", "hsync"] as const) {
    const parts = (host: string, overrides = {}) =>
      clientSettings(builtIn, section, { Host_ip: host, ...overrides })
        .maxPartNum;
    for (
      const host of [
        "127.0.0.1",
        "::1",
        "localhost",
        "10.0.0.7",
        "fd00::1",
        "data.example",
      ]
    ) assert.equal(parts(host), 16, host);
    assert.equal(parts("127.0.0.1", { Max_part_num: "2" }), 2); // a flag stands
  }
});

Deno.test("a missing $HSYNC_DIR/hsync.ini is noted, a missing -c file is an error naming it", async () => {
  const config = await loadConfig({
    defaults,
    hsyncDir: "/h",
    readTextFile: fakeFs({}),
  });
  assert.deepEqual(config.searched[1], { path: "/h/hsync.ini", found: false });
  await assert.rejects(
    () =>
      loadConfig({
        defaults,
        hsyncDir: "/h",
        configFile: "/nope.ini",
        readTextFile: fakeFs({}),
      }),
    (e: Error) =>
      e instanceof ConfigError && /"\/nope.ini": no such file/.test(e.message),
  );
});

Deno.test("unknown keys and sections are warned about by name, keys match case-insensitively", async () => {
  const readTextFile = fakeFs({
    "/h/hsync.ini": "[hscp]\nport = 99\nMax_tcp_conns = 3\n[hscpp]\nA = 1\n",
  });
  const config = await loadConfig({ defaults, hsyncDir: "/h", readTextFile });
  assert.deepEqual(clientSettings(config, "hscp").port, 99);
  assert.deepEqual(config.warnings.length, 2);
  assert.match(
    config.warnings[0],
    /Unknown key "Max_tcp_conns" in \[hscp\] of "\/h\/hsync.ini"/,
  );
  assert.match(config.warnings[1], /Unknown section \[hscpp\]/);
});

const BAD_VALUES: Array<[string, string, string, RegExp]> = [
  ["hsyncd", "Port", "70000", /a port is a whole number from 1 to 65535/],
  ["hsyncd", "Port", "abc", /a port/],
  ["hscp", "Max_part_num", "-1", /whole number from 1/],
  ["hscp", "Max_runing", "0", /whole number from 1/],
  ["hscp", "Max_timeout_retry", "1.5", /whole number from 0/],
  ["hscp", "Data_timeout", "0", /seconds above 0/],
  ["hscp", "Tls", "maybe", /expected yes or no/],
  ["hscp", "Min_part_size", "12Q", /size in bytes/],
  ["hsync", "Sync_interval_sec", "-2", /seconds above 0/],
  [
    "hsyncd",
    "Server_name",
    "good.example, bad name",
    /: "bad name" is not host, host:port or https:\/\/host\[:port\]/,
  ],
  ["hsyncd", "Server_name", "a:70000", /"a:70000" is not host, host:port/],
  ["hsyncd", "Server_name", "fd00::1", /IPv6 address goes in brackets/],
  ["hsyncd", "Server_name", "https://a/b", /"https:\/\/a\/b" is not host/],
];

for (const [section, key, value, why] of BAD_VALUES) {
  Deno.test(`a malformed ${key} = ${value} stops with file, section, key and value named`, async () => {
    const readTextFile = fakeFs({
      "/c.ini": `[${section}]\n${key} = ${value}\n`,
    });
    const config = await loadConfig({
      defaults,
      hsyncDir: "/h",
      configFile: "/c.ini",
      readTextFile,
    });
    assert.throws(
      () =>
        section === "hsyncd"
          ? serverSettings(config)
          : clientSettings(config, section as "hscp"),
      (e: Error) => {
        assert(e instanceof ConfigError);
        assert(e.message.includes(`"${value}"`), e.message);
        assert(e.message.includes(`"/c.ini" [${section}] ${key}`), e.message);
        assert.match(e.message, why);
        return true;
      },
    );
  });
}

Deno.test("a bad command-line value names the option", async () => {
  const config = await loadConfig({
    defaults,
    hsyncDir: "/h",
    readTextFile: fakeFs({}),
  });
  assert.throws(
    () => clientSettings(config, "hscp", { Port: "0" }),
    /"0" for command line option for Port/,
  );
});

Deno.test("parseBytes() reads plain numbers and binary suffixes", () => {
  assert.deepEqual(parseBytes("1048576"), 1048576);
  assert.deepEqual(parseBytes("64K"), 65536);
  assert.deepEqual(parseBytes("64MiB"), 64 * 1024 * 1024);
  assert.deepEqual(parseBytes("1g"), 1024 ** 3);
  assert.deepEqual(parseBytes("x"), undefined);
  assert.deepEqual(parseBytes("-1"), undefined);
});

Deno.test("lists are comma-separated and trimmed; empty means none", async () => {
  const readTextFile = fakeFs({
    "/c.ini":
      "[hsyncd]\nAllowed_host = 10.0.0.0/8 , 192.168.*.*,\nOnly_allowed_path =\n",
  });
  const config = await loadConfig({
    defaults,
    hsyncDir: "/h",
    configFile: "/c.ini",
    readTextFile,
  });
  const s = serverSettings(config);
  assert.deepEqual(s.allowedHost, ["10.0.0.0/8", "192.168.*.*"]);
  assert.deepEqual(s.onlyAllowedPath, []);
});

Deno.test("Server_name takes host, host:port, [IPv6]:port and https://host[:port] entries; empty (the default) means none", async () => {
  const readTextFile = fakeFs({
    "/c.ini":
      "[hsyncd]\nServer_name = Data1.Lab.Example, localhost:2222 ,[::1]:2222, https://files.example,\n",
  });
  const config = await loadConfig({
    defaults,
    hsyncDir: "/h",
    configFile: "/c.ini",
    readTextFile,
  });
  assert.deepEqual(serverSettings(config).serverName, [
    { host: "data1.lab.example" },
    { host: "localhost", port: 2222 },
    { host: "[::1]", port: 2222 },
    { scheme: "https", host: "files.example" },
  ]);
  const builtIn = await loadConfig({
    defaults,
    hsyncDir: "/h",
    readTextFile: fakeFs({}),
  });
  assert.deepEqual(serverSettings(builtIn).serverName, []);
});

Deno.test("formatConfig() lists the files searched and every key by section with its source", async () => {
  const readTextFile = fakeFs({ "/h/hsync.ini": "[hsyncd]\nPort = 2222\n" });
  const config = await loadConfig({ defaults, hsyncDir: "/h", readTextFile });
  const text = formatConfig(config);
  assert.match(text, /; {3}\(built-in defaults\)\n; {3}\/h\/hsync.ini\n/);
  assert.match(
    text,
    /\[hsyncd\]\nHost_ip = 0.0.0.0\nPort = 2222 {2}; from \/h\/hsync.ini\n/,
  );
  assert.match(text, /\[hsync\][^[]*Sync_interval_sec = 2/);
  assert.match(text, /\[hscp\][^[]*Max_part_num = 16\n/);
  const remote = formatConfig(
    await loadConfig({
      defaults,
      hsyncDir: "/h",
      readTextFile: fakeFs({ "/h/hsync.ini": "[hscp]\nHost_ip = 10.0.0.7\n" }),
    }),
  );
  assert.match(remote, /\[hscp\][^[]*Max_part_num = 16\n/);
  // --sync takes Host_ip from [hscp] (no file sets it in [hsync]): remote too.
  assert.match(
    remote,
    /\[hsync\][^[]*Host_ip = 10\.0\.0\.7 {2}; from \/h\/hsync.ini \[hscp\]\n/,
  );
  assert.match(remote, /\[hsync\]\n(?:.*\n)*?Max_part_num = 16\n/);
});

Deno.test("clientSettings() for --sync takes connection keys from [hscp] unless [hsync] sets them in a file of equal or higher precedence", async () => {
  const config = await loadConfig({
    defaults,
    hsyncDir: "/h",
    configFile: "/c.ini",
    readTextFile: fakeFs({
      "/h/hsync.ini": "[hsync]\nPort = 1111\nCA_file = /old.pem\n",
      "/c.ini":
        "[hscp]\nTls = yes\nPort = 2222\nCA_file = /ca.pem\nData_timeout = 9\n[hsync]\nCA_file = /sync.pem\n",
    }),
  });
  const sync = clientSettings(config, "hsync");
  assert.equal(sync.tls, true);
  // -c outranks $HSYNC_DIR/hsync.ini: its [hscp] Port wins over the user's [hsync] one.
  assert.equal(sync.port, 2222);
  // In one file, [hsync] wins.
  assert.equal(sync.caFile, "/sync.pem");
  // Only connection keys are shared: tuning stays per section.
  assert.equal(
    sync.dataTimeout,
    clientSettings(config, "hsync", {}).dataTimeout,
  );
  assert.notEqual(sync.dataTimeout, 9);
  assert.equal(clientSettings(config, "hscp").caFile, "/ca.pem");
});

Deno.test("resolveHsyncDir() prefers $HSYNC_DIR, else $HOME/.hsync", () => {
  assert.deepEqual(resolveHsyncDir({ HSYNC_DIR: "/x", HOME: "/home/u" }), "/x");
  assert.deepEqual(
    resolveHsyncDir({ HOME: "/home/u" }),
    join("/home/u", ".hsync"),
  );
});
