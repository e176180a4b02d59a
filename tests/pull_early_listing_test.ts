/** A pull asks for its tree's listing with the root's stat, not a round trip after it (lib/client/pull.ts). */
import assert from "node:assert/strict";
import { join } from "node:path";
import { tempDir } from "./_programs.ts";
import { bytesContent, listServer, ROOT, run, text } from "./_list_server.ts";

Deno.test("a tree's listing is asked for before the root's stat is answered, and a file's is dropped", async () => {
  await using dir = await tempDir();
  await using server = listServer({
    root: ROOT,
    lines: [
      { path: "a.txt", type: "file", content: bytesContent(text("a")) },
      { path: "sub", type: "dir" },
      { path: "sub/b.txt", type: "file", content: bytesContent(text("bb")) },
    ],
    statDelayMs: 200,
  });
  const { summary } = await run(server.baseUrl, join(dir.path, "out"));
  assert.equal(summary.failed, 0);
  assert.equal(summary.files, 2);
  assert.equal(
    await Deno.readTextFile(join(dir.path, "out", "sub", "b.txt")),
    "bb",
  );
  const list = server.log.findIndex((l) => l.startsWith("GET /v1/list"));
  const answered = server.log.indexOf("stat answered");
  assert.ok(list >= 0 && answered >= 0, server.log.join("\n"));
  assert.ok(list < answered, server.log.join("\n"));
  // Listed once: the early answer was the one read.
  assert.equal(
    server.log.filter((l) => l.startsWith("GET /v1/list")).length,
    1,
  );

  // A single file: the listing asked for with the stat fails (not a
  // directory) and is dropped; the file still arrives, with no warning.
  const one = await run(server.baseUrl, join(dir.path, "one"), {
    remotePath: `${ROOT}/a.txt`,
  });
  assert.equal(one.summary.failed, 0);
  assert.equal(one.summary.files, 1);
  assert.deepEqual(one.events.filter((e) => e.type === "warning"), []);
  assert.equal(await Deno.readTextFile(join(dir.path, "one")), "a");
});
