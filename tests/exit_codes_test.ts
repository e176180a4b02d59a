/** Exit codes a script can act on: 3 when the server answered and refused (or the path is missing), 4 when it could not be reached. */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  ConnectError,
  EXIT,
  exitCodeFor,
  HttpError,
  ProtocolError,
  UsageError,
} from "../lib/shared/errors.ts";
import { RedirectRefused, TimeoutError } from "../lib/client/remote.ts";
import { tooManyEntries } from "../lib/client/listing.ts";
import { freePort, runClient, startServer, tempDir } from "./_programs.ts";

Deno.test("exitCodeFor: answered and refused is 3, not reached is 4", () => {
  assert.equal(EXIT.refused, 3);
  assert.equal(EXIT.unreachable, 4);
  const refused = [
    new ConnectError("missing", { status: 404 }),
    new ConnectError("no key", { status: 401 }),
    new ConnectError("no", { status: 403 }),
    new ConnectError("busy writing", { status: 409 }),
    new ConnectError("too many", { status: 413 }),
    new RedirectRefused("redirected"),
    tooManyEntries("/x", "h:1", 5),
    new HttpError(404, "not_found", "gone"),
  ];
  for (const e of refused) assert.equal(exitCodeFor(e), 3, e.message);
  const unreachable = [
    new ConnectError("Cannot reach h:1: connection refused"),
    new ConnectError("server error", { status: 500 }),
    new ConnectError("not hsyncd", { status: 404, refused: false }),
    new ProtocolError("garbled"),
    new TimeoutError("No data from h:1 for 30 seconds"),
    new TypeError("fetch failed", { cause: new Error("connection reset") }),
    new HttpError(503, "busy", "busy"),
  ];
  for (const e of unreachable) assert.equal(exitCodeFor(e), 4, e.message);
  assert.equal(exitCodeFor(new UsageError("bad")), 1);
});

Deno.test("hsync exits 4 when nothing listens on the port, for a pull and a push", async () => {
  await using dir = await tempDir();
  const port = freePort();
  const pull = await runClient([`127.0.0.1:${port}:/x`, join(dir.path, "o")], {
    HSYNC_DIR: dir.path,
  });
  assert.equal(pull.code, 4, pull.stderr);
  assert.match(pull.stderr, /^hsync: Cannot reach 127\.0\.0\.1:\d+/);
  await Deno.writeTextFile(join(dir.path, "f.txt"), "data");
  const push = await runClient(
    [join(dir.path, "f.txt"), `127.0.0.1:${port}:/in/`],
    { HSYNC_DIR: dir.path },
  );
  assert.equal(push.code, 4, push.stderr);
});

Deno.test("hsync exits 4 when the port does not speak HTTP", async () => {
  await using dir = await tempDir();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const serving = (async () => {
    for await (const conn of listener) {
      await conn.write(new TextEncoder().encode("SSH-2.0-OpenSSH_9.6\r\n"))
        .catch(() => {});
      conn.close();
    }
  })();
  try {
    const r = await runClient([`127.0.0.1:${port}:/x`, join(dir.path, "o")], {
      HSYNC_DIR: dir.path,
    });
    assert.equal(r.code, 4, r.stderr);
  } finally {
    listener.close();
    await serving.catch(() => {});
  }
});

Deno.test("hsync exits 3 for a missing remote path and for a server that wants a key it was not given", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await Deno.mkdir(data);
  const home = join(dir.path, "home");
  await Deno.mkdir(home);
  const keygen = await runClient(["keygen"], { HSYNC_DIR: home });
  assert.equal(keygen.code, 0, keygen.stderr);
  await Deno.writeTextFile(join(dir.path, "keys"), keygen.stdout);
  await using server = await startServer({
    dir: dir.path,
    config: `[hsyncd]\nOnly_allowed_path = ${data}\nAuthorized_keys = ${
      join(dir.path, "keys")
    }\n`,
  });
  const at = `127.0.0.1:${server.port}`;
  const missing = await runClient(
    [`${at}:${data}/nothing-here`, join(dir.path, "o")],
    { HSYNC_DIR: home },
  );
  assert.equal(missing.code, 3, missing.stderr);
  assert.match(missing.stderr, /does not exist/);
  const stranger = join(dir.path, "stranger");
  await Deno.mkdir(stranger);
  const unsigned = await runClient([`${at}:${data}`, join(dir.path, "o")], {
    HSYNC_DIR: stranger,
  });
  assert.equal(unsigned.code, 3, unsigned.stderr);
  assert.match(unsigned.stderr, /requires a key: run "hsync keygen"/);
});
