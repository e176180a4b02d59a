/** Tests of lib/shared/host_profiles.ts through loadConfig: [host:NAME] sections, their precedence, their warnings and echo-config. */
import assert from "node:assert/strict";
import defaults from "../hsync.ini" with { type: "text" };
import {
  clientSettings,
  formatConfig,
  loadConfig,
} from "../lib/shared/config.ts";
import { profileFor } from "../lib/shared/host_profiles.ts";
import { checkHostResolves } from "../lib/client/host_lookup.ts";
import { ConnectError } from "../lib/shared/errors.ts";

const USER = "/h/hsync.ini";
const TEXT = `[hscp]
Port = 9000
Identity_file = base_key

[host:lab]
Host_ip = 10.0.0.7
Port = 2222
Tls = yes
CA_file = lab-ca.pem
Identity_file = /keys/lab
Max_part_num = 8
Colour = blue

[host:bare]
Port = 4444
`;

async function load() {
  return await loadConfig({
    defaults,
    hsyncDir: "/h",
    readTextFile: (path) =>
      path === USER
        ? Promise.resolve(TEXT)
        : Promise.reject(new Deno.errors.NotFound(path)),
  });
}

Deno.test("a [host:NAME] profile's keys win over [hscp], the command line wins over the profile", async () => {
  const config = await load();
  assert.deepEqual(config.warnings, [
    `Unknown key "Colour" in [host:lab] of "${USER}" is ignored`,
  ]);
  const lab = profileFor(config.profiles, "lab");
  assert.deepEqual(lab, { name: "lab", hostIp: undefined });
  const s = clientSettings(config, "hscp", {}, "lab");
  assert.equal(s.hostIp, "10.0.0.7");
  assert.equal(s.port, 2222);
  assert.equal(s.tls, true);
  assert.equal(s.caFile, "lab-ca.pem");
  assert.equal(s.identityFile, "/keys/lab");
  assert.equal(s.maxPartNum, 8);
  assert.equal(
    clientSettings(config, "hscp", { Port: "7" }, "lab").port,
    7,
  );
  // Without the profile, [hscp] as before.
  const plain = clientSettings(config, "hscp");
  assert.equal(plain.port, 9000);
  assert.equal(plain.identityFile, "base_key");
});

Deno.test("a profile without Host_ip connects to its own name; a name that is no profile is undefined", async () => {
  const config = await load();
  assert.deepEqual(profileFor(config.profiles, "bare"), {
    name: "bare",
    hostIp: "bare",
  });
  const s = clientSettings(config, "hscp", { Host_ip: "bare" }, "bare");
  assert.equal(s.port, 4444);
  assert.equal(s.identityFile, "base_key");
  assert.equal(profileFor(config.profiles, "other"), undefined);
});

Deno.test("echo-config shows each profile with the file its keys came from", async () => {
  const text = formatConfig(await load());
  assert.match(
    text,
    /\n\[host:lab\]\nHost_ip = 10\.0\.0\.7 {2}; from \/h\/hsync\.ini\nPort = 2222 {2}; from \/h\/hsync\.ini\n/,
  );
  assert.match(text, /\n\[host:bare\]\nPort = 4444 {2}; from \/h\/hsync\.ini$/);
});

Deno.test("a bad value in a profile names the file, the profile and the key", async () => {
  const config = await loadConfig({
    defaults,
    hsyncDir: "/h",
    readTextFile: (path) =>
      path === USER
        ? Promise.resolve("[host:lab]\nPort = 99999\n")
        : Promise.reject(new Deno.errors.NotFound(path)),
  });
  assert.throws(
    () => clientSettings(config, "hscp", {}, "lab"),
    (e: Error) =>
      e.message ===
        `Invalid value "99999" for "${USER}" [host:lab] Port: a port is a whole number from 1 to 65535`,
  );
});

Deno.test("a host that is neither a profile nor resolvable is one ConnectError line; IP addresses are not looked up", async () => {
  await assert.rejects(
    () =>
      checkHostResolves("lab", () => Promise.reject(new Error("ENOTFOUND"))),
    (e: unknown) =>
      e instanceof ConnectError && e.status === undefined &&
      e.message ===
        `"lab" is neither a [host:lab] profile nor a resolvable host`,
  );
  let asked = 0;
  const count = () => {
    asked++;
    return Promise.resolve();
  };
  await checkHostResolves("127.0.0.1", count);
  await checkHostResolves("::1", count);
  assert.equal(asked, 0);
  await checkHostResolves("localhost");
});
