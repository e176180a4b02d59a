/** A pull's first requests (lib/client/opening.ts): sent when the opening is made, before the engine runs, and never sent again by the run that takes them. */
import assert from "node:assert/strict";
import { join } from "node:path";
import defaults from "../hsync.ini" with { type: "text" };
import { clientSettings, loadConfig } from "../lib/shared/config.ts";
import { PullOpening, WARM_CONNECTIONS } from "../lib/client/opening.ts";
import { pull, type PullOptions } from "../lib/client/pull.ts";
import { tempDir, waitFor } from "./_programs.ts";
import { realServer } from "./_real_server.ts";

const MiB = 1024 * 1024;

/** The request lines a server got: path, `iffile` when asked, and the range. */
function requestLine(request: Request): string {
  const url = new URL(request.url);
  return `${url.pathname}${url.searchParams.has("iffile") ? " iffile" : ""}${
    request.headers.has("range") ? ` ${request.headers.get("range")}` : ""
  }`;
}

Deno.test("a pull's stat, listing, first bytes and warm connections go out when its opening is made, and the run that takes it asks none of them again", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  const content = new Uint8Array(12 * MiB + 5).map((_, i) => (i * 7) & 0xff);
  await Deno.writeFile(join(data, "big.bin"), content);
  const log: string[] = [];
  await using server = await realServer(data, (r) => log.push(requestLine(r)));
  const config = await loadConfig({ defaults, hsyncDir: "/nonexistent-hsync" });
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
      log.includes("/v1/stat") && log.includes("/v1/list") &&
      log.includes(`/v1/file iffile bytes=0-${8 * MiB - 1}`) &&
      log.filter((l) => l === "/v1/health").length === WARM_CONNECTIONS,
  );
  const summary = await pull(options);
  assert.deepEqual(summary.failures, []);
  assert.deepEqual(await Deno.readFile(options.localPath), content);
  const count = (line: string) => log.filter((l) => l === line).length;
  assert.equal(count("/v1/stat"), 1, log.join("\n"));
  assert.equal(count("/v1/list"), 1, log.join("\n"));
  // The early bytes were taken: the rest came in other ranges, none from 0.
  const files = log.filter((l) => l.startsWith("/v1/file"));
  assert.equal(files.filter((l) => l.includes("iffile")).length, 1);
  assert.ok(files.length > 1, log.join("\n"));
  assert.ok(
    files.slice(1).every((l) => !l.includes("bytes=0-")),
    log.join("\n"),
  );
});

Deno.test("a pull's opening asks for the stat before the listing: hsyncd answers in the order requests come, and a listing's first lines take it milliseconds", () => {
  const sent: string[] = [];
  const realFetch = globalThis.fetch;
  globalThis.fetch = (input: RequestInfo | URL) => {
    const url = input instanceof Request ? input.url : String(input);
    sent.push(new URL(url).pathname);
    return Promise.reject(new TypeError("no network in this test"));
  };
  const stop = new AbortController();
  try {
    const options = {
      baseUrl: "http://127.0.0.1:9",
      remotePath: "/data/tree",
      localPath: "/nonexistent-hsync/out",
      settings: {
        dataTimeout: 5,
        pinnedParts: false,
      } as PullOptions["settings"],
      parallelFiles: 4,
    } as PullOptions;
    new PullOpening(options, stop.signal);
  } finally {
    globalThis.fetch = realFetch;
    stop.abort();
  }
  assert.equal(sent[0], "/v1/stat", sent.join(", "));
  assert.ok(sent.includes("/v1/list"), sent.join(", "));
});
