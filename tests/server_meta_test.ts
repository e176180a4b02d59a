/** Tests of lib/server/endpoints/meta.ts: /v1/health and /v1/stat through the handler. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { VERSION } from "../lib/shared/version.ts";
import type { Health, StatEntry } from "../lib/shared/wire.ts";
import { withFixture } from "./_server_fixture.ts";

Deno.test("GET /v1/health names the server, its version and API", async () => {
  await withFixture(async (f) => {
    const res = await f.call("/v1/health");
    assert.equal(res.status, 200);
    assert.equal(
      res.headers.get("content-type"),
      "application/json; charset=utf-8",
    );
    const body = await res.json() as Health;
    assert.deepEqual(body, {
      name: "hsyncd",
      version: VERSION,
      api: 1,
      host: "test-host",
    });
  });
});

Deno.test("GET /v1/stat describes a file and a directory", async () => {
  await withFixture(async (f) => {
    const res = await f.call(`/v1/stat?path=${f.q("hello.txt")}`);
    assert.equal(res.status, 200);
    const entry = await res.json() as StatEntry;
    const info = await Deno.lstat(join(f.root, "hello.txt"));
    assert.equal(entry.type, "file");
    assert.equal(entry.size, 11);
    assert.equal(entry.mtime, info.mtime!.getTime());
    assert.equal(entry.mode, info.mode! & 0o7777);
    assert.match(entry.etag, /^"[0-9a-f-]+"$/);

    const dir = await (await f.call(`/v1/stat?path=${f.q("nested")}`))
      .json() as StatEntry;
    assert.equal(dir.type, "dir");
    assert.equal(dir.size, 0);
  });
});

Deno.test("the ETag changes when a file is rewritten or replaced", async () => {
  await withFixture(async (f) => {
    const etag = async () =>
      ((await (await f.call(`/v1/stat?path=${f.q("hello.txt")}`))
        .json()) as StatEntry).etag;
    const first = await etag();
    assert.equal(await etag(), first);
    await Deno.writeTextFile(join(f.root, "hello.txt"), "hello world!");
    const second = await etag();
    assert.notEqual(second, first);
    await Deno.writeTextFile(join(f.root, "tmp.txt"), "hello world!");
    await Deno.rename(join(f.root, "tmp.txt"), join(f.root, "hello.txt"));
    assert.notEqual(await etag(), second);
  });
});
