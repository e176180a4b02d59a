/** A push's first requests (lib/client/push_opening.ts): sent when the opening is made, before the engine runs; the run takes them instead of asking again, and a lease it never took is given back. */
import assert from "node:assert/strict";
import { join } from "node:path";
import defaults from "../hsync.ini" with { type: "text" };
import { clientSettings, loadConfig } from "../lib/shared/config.ts";
import { push, type PushOptions } from "../lib/client/push.ts";
import { firstAsk, PushOpening } from "../lib/client/push_opening.ts";
import { checkSources } from "../lib/client/push_sources.ts";
import { tempDir, waitFor } from "./_programs.ts";
import { pushServer } from "./_push_server.ts";

const TOKEN = "0123456789abcdef0123456789abcdef";

/** A local tree of three small files, a writable server that grants leases, and the options of a push of the tree to `dst/run`. */
async function setup(dir: string) {
  const src = join(dir, "src", "run");
  const dst = join(dir, "dst");
  await Deno.mkdir(src, { recursive: true });
  await Deno.mkdir(dst);
  for (const name of ["a", "b", "c"]) {
    await Deno.writeTextFile(join(src, name), `${name}\n`);
  }
  const server = pushServer({
    writable: dst,
    hook: (url) => {
      if (url.pathname !== "/v1/lock") return undefined;
      return Response.json({
        token: TOKEN,
        expires_ms: 30_000,
        ...(url.searchParams.has("stat") ? { entry: null } : {}),
      });
    },
  });
  const config = await loadConfig({ defaults, hsyncDir: "/nonexistent-hsync" });
  const options: PushOptions = {
    baseUrl: server.baseUrl,
    sources: [src],
    remotePath: join(dst, "run"),
    settings: clientSettings(config, "hscp", { Max_timeout_retry: "0" }),
    parallelFiles: 4,
  };
  return { src, dst, server, options };
}

const locks = (log: string[]) =>
  log.filter((l) => l.startsWith("POST /v1/lock?") && !l.includes("release"));
const releases = (log: string[]) =>
  log.filter((l) => l.startsWith("POST /v1/lock?") && l.includes("release"));

Deno.test("a push's lease and warm connections go out when its opening is made, and the run that takes it asks for no lease again", async () => {
  await using dir = await tempDir();
  const { src, dst, server, options } = await setup(dir.path);
  await using _ = server;
  const sources = checkSources(options.sources);
  // A tree to a path without /: the lease first, its answer the stat.
  assert.deepEqual(
    firstAsk(options.remotePath, options.remotePath, sources, false),
    {
      kind: "lease",
      lease: options.remotePath,
    },
  );
  options.opening = new PushOpening(options, sources);
  // Before push() is called at all.
  await waitFor(
    "the first requests at the server",
    () =>
      locks(server.log).length === 1 &&
      server.log.filter((l) => l.startsWith("GET /v1/health")).length >= 1,
  );
  const summary = await push(options);
  assert.deepEqual(summary.failures, []);
  assert.equal(summary.files, 3);
  for (const name of ["a", "b", "c"]) {
    assert.equal(
      await Deno.readTextFile(join(dst, "run", name)),
      await Deno.readTextFile(join(src, name)),
    );
  }
  assert.equal(locks(server.log).length, 1, server.log.join("\n"));
  // No stat before the lease's answer: it carried the destination's.
  assert.equal(
    server.log.filter((l) => l.startsWith("GET /v1/stat")).length,
    0,
    server.log.join("\n"),
  );
  assert.equal(releases(server.log).length, 1, server.log.join("\n"));
});

Deno.test("a lease the opening took is given back when the push stops before it takes it", async () => {
  await using dir = await tempDir();
  const { server, options } = await setup(dir.path);
  await using _ = server;
  const opening = new PushOpening(options, checkSources(options.sources));
  await waitFor(
    "the first requests at the server",
    () => locks(server.log).length === 1,
  );
  await opening.close();
  assert.equal(releases(server.log).length, 1, server.log.join("\n"));
  // Closed twice, released once.
  await opening.close();
  assert.equal(releases(server.log).length, 1);
});

Deno.test("one file pushed to a new name: its stat and its directory's go out together when the opening is made, and the run asks neither again", async () => {
  await using dir = await tempDir();
  const { src, dst, server, options } = await setup(dir.path);
  await using _ = server;
  options.sources = [join(src, "a")];
  options.remotePath = join(dst, "new-name");
  const sources = checkSources(options.sources);
  assert.deepEqual(
    firstAsk(options.remotePath, options.remotePath, sources, false),
    { kind: "stat" },
  );
  options.opening = new PushOpening(options, sources);
  const stats = () => server.log.filter((l) => l.startsWith("GET /v1/stat"));
  await waitFor("the first requests at the server", () => stats().length === 2);
  const summary = await push(options);
  assert.deepEqual(summary.failures, []);
  assert.equal(await Deno.readTextFile(join(dst, "new-name")), "a\n");
  assert.equal(stats().length, 2, server.log.join("\n"));
  assert.ok(
    stats().some((l) =>
      l.includes(encodeURIComponent(dst) + "&") ||
      l.endsWith(encodeURIComponent(dst))
    ),
    server.log.join("\n"),
  );
});

/** A server granting leases as hsyncd does with `name` (of `path/NAME` when `path` is a directory, told in `path`), unless `older`; `refuseFirst` answers the first 409. */
async function leasingServer(
  dir: string,
  options: { older?: boolean; refuseFirst?: boolean } = {},
) {
  const base = await setup(dir);
  await base.server[Symbol.asyncDispose]();
  let refused = false;
  const server = pushServer({
    writable: base.dst,
    hook: async (url) => {
      if (url.pathname !== "/v1/lock") return undefined;
      if (options.refuseFirst && !refused) {
        refused = true;
        return Response.json({ error: "locked", message: "held" }, {
          status: 409,
        });
      }
      let path = url.searchParams.get("path")!;
      const name = url.searchParams.get("name");
      if (name !== null && !options.older) {
        const isDir = await Deno.stat(path).then(
          (s) => s.isDirectory,
          () => false,
        );
        if (isDir) path = join(path, name);
      }
      return Response.json({
        token: TOKEN,
        expires_ms: 30_000,
        ...(url.searchParams.has("stat") ? { entry: null } : {}),
        ...(name !== null && !options.older ? { path } : {}),
      });
    },
  });
  return {
    ...base,
    server,
    options: { ...base.options, baseUrl: server.baseUrl },
  };
}

Deno.test("one file pushed to a path without /: its lease goes with its stats when the opening is made (name=, of the path or of path/NAME as the server tells), and the run asks for no lease again", async () => {
  for (const into of ["new-name", ""]) {
    await using dir = await tempDir();
    const { src, dst, server, options } = await leasingServer(dir.path);
    await using _ = server;
    options.sources = [join(src, "a")];
    options.remotePath = into === "" ? dst : join(dst, into);
    const sources = checkSources(options.sources);
    options.opening = new PushOpening(options, sources);
    await waitFor(
      "the lease at the server",
      () => locks(server.log).length === 1,
    );
    const summary = await push(options);
    assert.deepEqual(summary.failures, []);
    assert.equal(await Deno.readTextFile(join(dst, into || "a")), "a\n");
    const asked = locks(server.log);
    assert.equal(asked.length, 1, server.log.join("\n"));
    assert.match(
      asked[0],
      new RegExp(
        `^POST /v1/lock\\?path=${
          encodeURIComponent(options.remotePath)
        }&token=[0-9a-f]{32}&stat=1&name=a$`,
      ),
    );
    // Given back as the path the server leased.
    assert.deepEqual(releases(server.log).length, 1);
    assert.match(
      releases(server.log)[0],
      new RegExp(`path=${encodeURIComponent(join(dst, into || "a"))}&`),
    );
  }
});

Deno.test("one file pushed to a directory without /: an older server's lease of the directory itself goes back and the run asks for dir/NAME; held by another push, it is asked again by the run (which waits as always)", async () => {
  for (const older of [true, false]) {
    await using dir = await tempDir();
    const { src, dst, server, options } = await leasingServer(dir.path, {
      older,
      refuseFirst: !older,
    });
    await using _ = server;
    options.sources = [join(src, "a")];
    options.remotePath = dst;
    options.opening = new PushOpening(options, checkSources(options.sources));
    const summary = await push(options);
    assert.deepEqual(summary.failures, []);
    assert.equal(await Deno.readTextFile(join(dst, "a")), "a\n");
    const asked = locks(server.log);
    assert.equal(asked.length, 2, server.log.join("\n"));
    assert.match(asked[0], /&name=a$/);
    assert.match(
      asked[1],
      new RegExp(`path=${encodeURIComponent(join(dst, "a"))}&token=`),
    );
    if (older) {
      // The directory's lease went back before dir/NAME was asked for.
      const back = server.log.findIndex((l) =>
        l.startsWith(
          `POST /v1/lock?path=${
            encodeURIComponent(dst)
          }&token=${TOKEN}&release=1`,
        )
      );
      assert.ok(
        back >= 0 && back < server.log.indexOf(asked[1]),
        server.log.join("\n"),
      );
    }
  }
});
