/** A pull's first requests (lib/client/opening.ts): sent when the opening is made, before the engine runs, and never sent again by the run that takes them. */
import assert from "node:assert/strict";
import { join } from "node:path";
import defaults from "../hsync.ini" with { type: "text" };
import {
  clientSettings,
  loadConfig,
  serverSettings,
} from "../lib/shared/config.ts";
import { PullOpening } from "../lib/client/opening.ts";
import { pull, type PullOptions } from "../lib/client/pull.ts";
import { createHandler } from "../lib/server/handler.ts";
import { tempDir, waitFor } from "./_programs.ts";

const MiB = 1024 * 1024;

/** The real hsyncd handler serving `root`, telling each request it gets (`path` and the query's `iffile` and the range). */
async function loggingServer(root: string, hsyncDir: string) {
  const config = await loadConfig({ defaults, hsyncDir });
  const handler = await createHandler({
    settings: serverSettings(config, { Only_allowed_path: root }),
    hsyncDir,
    hostname: "test",
  });
  const log: string[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request, info) => {
      const url = new URL(request.url);
      log.push(
        `${url.pathname}${url.searchParams.has("iffile") ? " iffile" : ""}${
          request.headers.has("range") ? ` ${request.headers.get("range")}` : ""
        }`,
      );
      return handler(request, info);
    },
  );
  return {
    baseUrl: `http://127.0.0.1:${server.addr.port}`,
    log,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
    },
  };
}

Deno.test("a pull's stat, listing, first bytes and warm connections go out when its opening is made, and the run that takes it asks none of them again", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  const home = join(dir.path, "home");
  await Deno.mkdir(data);
  await Deno.mkdir(home);
  const content = new Uint8Array(12 * MiB + 5).map((_, i) => (i * 7) & 0xff);
  await Deno.writeFile(join(data, "big.bin"), content);
  await using server = await loggingServer(data, home);
  const config = await loadConfig({ defaults, hsyncDir: home });
  const options: PullOptions = {
    baseUrl: server.baseUrl,
    remotePath: join(data, "big.bin"),
    localPath: join(dir.path, "out.bin"),
    settings: clientSettings(config, "hscp", { Min_part_size: "1M" }),
    parallelFiles: 4,
    earlyRange: true,
  };
  const stop = new AbortController();
  options.opening = new PullOpening(options, stop.signal);
  // Before pull() is called at all.
  await waitFor(
    "the first requests at the server",
    () =>
      server.log.includes("/v1/stat") && server.log.includes("/v1/list") &&
      server.log.includes(`/v1/file iffile bytes=0-${8 * MiB - 1}`) &&
      server.log.filter((l) => l === "/v1/health").length === 4,
  );
  const summary = await pull(options);
  assert.deepEqual(summary.failures, []);
  assert.deepEqual(await Deno.readFile(options.localPath), content);
  const count = (line: string) => server.log.filter((l) => l === line).length;
  assert.equal(count("/v1/stat"), 1, server.log.join("\n"));
  assert.equal(count("/v1/list"), 1, server.log.join("\n"));
  // The early bytes were taken: the rest came in other ranges, none from 0.
  const files = server.log.filter((l) => l.startsWith("/v1/file"));
  assert.equal(files.filter((l) => l.includes("iffile")).length, 1);
  assert.ok(files.length > 1, server.log.join("\n"));
  assert.ok(
    files.slice(1).every((l) => !l.includes("bytes=0-")),
    server.log.join("\n"),
  );
});
