/**
 * A pull in a process of its own (for what a process loads): `deno run -P=hsync
 * tests/_pull_child.ts BASE_URL REMOTE LOCAL [preserve]` pulls REMOTE into
 * LOCAL and prints `{ files, failures, modesLoaded }` as JSON, where
 * `modesLoaded` tells whether it loaded what setting a mode takes (node's
 * fs, lib/shared/chmod_opened.ts).
 */
import defaults from "../hsync.ini" with { type: "text" };
import { clientSettings, loadConfig } from "../lib/shared/config.ts";
import { chmodReady } from "../lib/shared/chmod_opened.ts";
import { pull } from "../lib/client/pull.ts";

const [baseUrl, remotePath, localPath, preserve] = Deno.args;
const config = await loadConfig({ defaults, hsyncDir: "/nonexistent-hsync" });
const summary = await pull({
  baseUrl,
  remotePath,
  localPath,
  preserve: preserve === "preserve",
  settings: clientSettings(config, "hscp", { Data_timeout: "5" }),
  parallelFiles: 4,
});
// deno-lint-ignore no-console
console.log(JSON.stringify({
  files: summary.files,
  failures: summary.failures,
  modesLoaded: chmodReady(),
}));
