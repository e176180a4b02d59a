/** Tests of lib/server/handler.ts for /v1/watch and key authentication, through the handler. */
import assert from "node:assert/strict";
import { join } from "node:path";
import defaults from "../hsync.ini" with { type: "text" };
import {
  bodyDigest,
  createVerifier,
  generateKeys,
  loadIdentity,
  parseAuthorizedKeys,
  signRequest,
} from "../lib/shared/auth.ts";
import { BODY_DIGEST_HEADER } from "../lib/shared/wire.ts";
import { loadConfig, serverSettings } from "../lib/shared/config.ts";
import { createHandler, type HandlerOptions } from "../lib/server/handler.ts";
import { ServerNames } from "../lib/server/server_names.ts";
import { WatchHub } from "../lib/server/watch_hub.ts";
import type { WatchResult } from "../lib/shared/wire.ts";

const info: Deno.ServeHandlerInfo<Deno.NetAddr> = {
  remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 1 },
  completed: Promise.resolve(),
};

async function fixture(extra: Partial<HandlerOptions> = {}) {
  const root = await Deno.realPath(
    await Deno.makeTempDir({ prefix: "hsync_watch_" }),
  );
  const data = join(root, "data");
  await Deno.mkdir(data);
  const config = await loadConfig({
    defaults,
    hsyncDir: join(root, "h"),
    readTextFile: () => Promise.reject(new Deno.errors.NotFound("x")),
  });
  const watchHub = new WatchHub();
  const handler = await createHandler({
    settings: serverSettings(config, { Only_allowed_path: data }),
    hsyncDir: join(root, "h"),
    hostname: "test",
    watchHub,
    ...extra,
  });
  const call = (path: string, init?: RequestInit) =>
    handler(
      new Request(
        path.startsWith("/") ? `http://localhost${path}` : path,
        init,
      ),
      info,
    );
  return {
    data,
    call,
    q: (p: string) => encodeURIComponent(p),
    [Symbol.asyncDispose]: async () => {
      watchHub.close();
      await Deno.remove(root, { recursive: true });
    },
  };
}

Deno.test("GET /v1/watch gives a cursor, then returns an append as soon as it happens", async () => {
  await using f = await fixture();
  await Deno.writeTextFile(join(f.data, "run.log"), "line 1\n");
  const first = await (await f.call(`/v1/watch?path=${f.q(f.data)}`))
    .json() as WatchResult;
  assert.equal(first.rescan, true);
  const pending = f.call(
    `/v1/watch?path=${f.q(f.data)}&cursor=${first.cursor}&timeout=5`,
  );
  await new Promise((r) => setTimeout(r, 30));
  await Deno.writeTextFile(join(f.data, "run.log"), "line 2\n", {
    append: true,
  });
  const next = await (await pending).json() as WatchResult;
  assert.equal(next.rescan, false);
  assert.deepEqual([...new Set(next.changed)], ["run.log"]);
});

Deno.test("GET /v1/watch never names a file the rules refuse, and refuses a forbidden root", async () => {
  await using f = await fixture();
  const first = await (await f.call(`/v1/watch?path=${f.q(f.data)}`))
    .json() as WatchResult;
  await Deno.writeTextFile(join(f.data, "id_rsa"), "SECRET");
  await Deno.writeTextFile(join(f.data, "visible.txt"), "ok");
  await new Promise((r) => setTimeout(r, 50));
  const next = await (await f.call(
    `/v1/watch?path=${f.q(f.data)}&cursor=${first.cursor}&timeout=1`,
  )).json() as WatchResult;
  assert.ok(next.changed.includes("visible.txt"));
  assert.ok(!next.changed.includes("id_rsa"), JSON.stringify(next));
  const refused = await f.call(`/v1/watch?path=${f.q("/etc")}`);
  assert.equal(refused.status, 403);
  await refused.body?.cancel();
  const bad = await f.call(`/v1/watch?path=${f.q(f.data)}&timeout=abc`);
  assert.equal(bad.status, 400);
  await bad.body?.cancel();
});

Deno.test("GET /v1/watch answers 503 stopping once the hub is closed, even to a poll already waiting", async () => {
  const watchHub = new WatchHub();
  await using f = await fixture({ watchHub });
  const first = await (await f.call(`/v1/watch?path=${f.q(f.data)}`))
    .json() as WatchResult;
  const pending = f.call(
    `/v1/watch?path=${f.q(f.data)}&cursor=${first.cursor}&timeout=60`,
  );
  watchHub.close();
  const waited = await pending;
  assert.equal(waited.status, 503);
  assert.equal((await waited.json()).error, "stopping");
  const later = await f.call(`/v1/watch?path=${f.q(f.data)}&timeout=60`);
  assert.equal(later.status, 503);
  await later.body?.cancel();
});

Deno.test("with authentication on, unsigned and badly signed requests get 401 and signed ones pass", async () => {
  const keys = await generateKeys("test");
  const identity = await loadIdentity(keys.privatePem, "id");
  const verifier = await createVerifier(
    parseAuthorizedKeys(keys.publicLine, "ak"),
  );
  // The fixture's requests go to http://localhost/ (port 80).
  const serverNames = new ServerNames({
    tls: false,
    hostIp: "127.0.0.1",
    port: 80,
  });
  await using f = await fixture({ verifier, serverNames });
  await Deno.writeTextFile(join(f.data, "a.txt"), "secret data");

  const unsigned = await f.call(`/v1/file?path=${f.q(join(f.data, "a.txt"))}`);
  assert.equal(unsigned.status, 401);
  const body = await unsigned.text();
  assert.ok(!body.includes("secret data"));
  assert.deepEqual(JSON.parse(body), {
    error: "unauthorized",
    message: "Authentication required",
  });

  const url = new URL(
    `http://localhost/v1/file?path=${f.q(join(f.data, "a.txt"))}`,
  );
  const header = await signRequest(identity, "GET", url);
  const signed = await f.call(url.pathname + url.search, {
    headers: { authorization: header },
  });
  assert.equal(signed.status, 200);
  assert.equal(await signed.text(), "secret data");

  const replay = await f.call(url.pathname + url.search, {
    headers: { authorization: header },
  });
  assert.equal(replay.status, 401);
  await replay.body?.cancel();

  // A signed bundle request whose body was changed in flight is refused.
  const bundleUrl = new URL("http://localhost/v1/bundle");
  const good = new TextEncoder().encode(
    JSON.stringify({ root: f.data, paths: ["a.txt"] }),
  );
  const forged = new TextEncoder().encode(
    JSON.stringify({ root: f.data, paths: ["a.txt", "b"] }),
  );
  const sig = await signRequest(identity, "POST", bundleUrl, { body: good });
  const tampered = await f.call("/v1/bundle", {
    method: "POST",
    body: forged,
    headers: {
      authorization: sig,
      "content-type": "application/json",
      [BODY_DIGEST_HEADER]: bodyDigest(good),
    },
  });
  assert.equal(tampered.status, 401);
  await tampered.body?.cancel();
  const sig2 = await signRequest(identity, "POST", bundleUrl, { body: good });
  const ok = await f.call("/v1/bundle", {
    method: "POST",
    body: good,
    headers: {
      authorization: sig2,
      "content-type": "application/json",
      [BODY_DIGEST_HEADER]: bodyDigest(good),
    },
  });
  assert.equal(ok.status, 200);
  assert.ok(new Uint8Array(await ok.arrayBuffer()).length > 11);
});

Deno.test("with authentication on, a request signed for another server, or sent with a Host that is not one of the server's names, gets 401 and the log learns why", async () => {
  const keys = await generateKeys("test");
  const identity = await loadIdentity(keys.privatePem, "id");
  const verifier = await createVerifier(
    parseAuthorizedKeys(keys.publicLine, "ak"),
  );
  const reasons: string[] = [];
  await using f = await fixture({
    verifier,
    serverNames: new ServerNames({
      tls: false,
      hostIp: "127.0.0.1",
      port: 80,
      configured: [{ host: "data1.example", port: 8080 }],
    }),
    onUnauthorized: (reason) => reasons.push(reason),
  });
  await Deno.writeTextFile(join(f.data, "a.txt"), "secret data");
  const target = `/v1/file?path=${f.q(join(f.data, "a.txt"))}`;
  // `sentTo` stands for the Host header, from which Deno builds request.url.
  const send = async (
    signedFor: string,
    sentTo = "http://localhost",
    host?: string,
  ) => {
    const header = await signRequest(
      identity,
      "GET",
      new URL(signedFor + target),
    );
    const headers: Record<string, string> = { authorization: header };
    if (host !== undefined) headers.host = host;
    reasons.length = 0;
    const response = await f.call(sentTo + target, { headers });
    return { status: response.status, text: await response.text() };
  };
  const refusals: Array<[string, string, string | undefined, RegExp]> = [
    // Captured from a request to another server that trusts the same key.
    [
      "http://other.example:80",
      "http://localhost",
      undefined,
      /^bad signature/,
    ],
    ["https://localhost:80", "http://localhost", undefined, /^bad signature/],
    ["http://localhost:8080", "http://localhost", undefined, /^bad signature/],
    // Sent on to the other server as it was: not one of this server's names.
    [
      "http://other.example:80",
      "http://other.example",
      undefined,
      /^Host "other\.example" is not one of this server's names/,
    ],
    // A Host that is not host[:port] (as the route-smuggling one of issue 16).
    [
      "http://localhost:80",
      "http://localhost",
      "localhost/v1/health?x=#",
      /is not host\[:port\] or disagrees/,
    ],
  ];
  for (const [signedFor, sentTo, host, why] of refusals) {
    const r = await send(signedFor, sentTo, host);
    assert.equal(r.status, 401, `${signedFor} to ${sentTo}`);
    assert.ok(!r.text.includes("secret data"));
    // A name the server does not have is the one reason told: it says nothing of keys.
    assert.deepEqual(
      JSON.parse(r.text),
      host === undefined && sentTo === "http://other.example"
        ? {
          error: "unknown_server_name",
          message:
            `Host "other.example" is not one of this server's names (add it to Server_name on the server, or connect by a name it has)`,
        }
        : { error: "unauthorized", message: "Authentication required" },
    );
    assert.equal(reasons.length, 1);
    assert.match(reasons[0], why);
  }
  assert.deepEqual(await send("http://localhost"), {
    status: 200,
    text: "secret data",
  });
  assert.equal(
    (await send("http://data1.example:8080", "http://data1.example:8080"))
      .status,
    200,
  );
});
