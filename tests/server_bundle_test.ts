/** Tests of lib/server/endpoints/bundle.ts: /v1/bundle through the handler, its frames, limits, queue and read-ahead budget. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { decodeFrames } from "../lib/shared/bundle_codec.ts";
import type { BundleHeader, StatEntry } from "../lib/shared/wire.ts";
import {
  expectError,
  NON_ASCII,
  SECRET,
  withFixture,
} from "./_server_fixture.ts";

Deno.test("POST /v1/bundle round-trips files and reports refused ones in error frames", async () => {
  await withFixture(async (f) => {
    const large = await Deno.open(join(f.root, "large.bin"), {
      write: true,
      create: true,
    });
    await large.truncate(1024 * 1024 + 1);
    large.close();
    const paths = [
      "hello.txt",
      "nested/deep/leaf.txt",
      "id_rsa",
      "missing.txt",
      "../secret.txt",
      "nested",
      "with space.txt",
      "big.bin",
      "empty.bin",
      "large.bin",
      "link_out",
      "/etc/passwd",
      "a//b",
      "fifo",
      NON_ASCII,
    ];
    const res = await f.call("/v1/bundle", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ root: f.root, paths }),
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "application/octet-stream");
    const frames: Array<{ header: BundleHeader; data: Uint8Array }> = [];
    for await (const frame of decodeFrames(res.body!)) frames.push(frame);
    assert.deepEqual(
      frames.map((fr) => (fr.header as { path: string }).path),
      paths,
    );
    const byPath = new Map(
      frames.map((fr) => [(fr.header as { path: string }).path, fr]),
    );
    const text = (rel: string) =>
      new TextDecoder().decode(byPath.get(rel)!.data);
    const errorOf = (rel: string) =>
      (byPath.get(rel)!.header as { error?: string }).error;
    assert.equal(text("hello.txt"), "hello world");
    assert.equal(text("nested/deep/leaf.txt"), "leaf");
    assert.equal(text("with space.txt"), "space");
    assert.equal(text(NON_ASCII), "unicode");
    assert.deepEqual(byPath.get("big.bin")!.data, f.big);
    assert.equal(byPath.get("empty.bin")!.data.length, 0);
    const stat = await (await f.call(`/v1/stat?path=${f.q("hello.txt")}`))
      .json() as StatEntry;
    const header = byPath.get("hello.txt")!.header as Extract<
      BundleHeader,
      { size: number }
    >;
    assert.deepEqual(header, {
      path: "hello.txt",
      size: 11,
      mtime: stat.mtime,
      mode: stat.mode,
      etag: stat.etag,
    });
    assert.equal(errorOf("id_rsa"), "forbidden_file");
    assert.equal(errorOf("missing.txt"), "not_found");
    assert.equal(errorOf("../secret.txt"), "bad_path");
    assert.equal(errorOf("nested"), "not_a_file");
    assert.equal(errorOf("large.bin"), "too_large");
    assert.equal(errorOf("link_out"), "refused");
    assert.equal(errorOf("/etc/passwd"), "bad_path");
    assert.equal(errorOf("a//b"), "bad_path");
    assert.equal(errorOf("fifo"), "not_regular");
    for (const fr of frames) {
      assert.ok(!new TextDecoder().decode(fr.data).includes(SECRET));
    }
  });
});

Deno.test("POST /v1/bundle refuses malformed, oversized and unsafe requests", async () => {
  await withFixture(
    async (f) => {
      const post = (body: string) =>
        f.call("/v1/bundle", { method: "POST", body });
      await expectError(await post("not json"), 400, "bad_request");
      await expectError(
        await post(JSON.stringify({ root: f.root })),
        400,
        "bad_request",
      );
      await expectError(
        await post(JSON.stringify({ root: f.root, paths: [1] })),
        400,
        "bad_request",
      );
      await expectError(
        await post(
          JSON.stringify({ root: f.root, paths: ["a", "b", "c", "d"] }),
        ),
        400,
        "bad_request",
      );
      await expectError(
        await post(JSON.stringify({ root: f.root, paths: ["x".repeat(600)] })),
        413,
        "too_large",
      );
      await expectError(
        await post(JSON.stringify({ root: "/etc", paths: ["passwd"] })),
        403,
        "forbidden_dir",
      );
      await expectError(
        await post(
          JSON.stringify({ root: join(f.root, "hello.txt"), paths: ["x"] }),
        ),
        400,
        "not_a_directory",
      );
      const empty = await post(JSON.stringify({ root: f.root, paths: [] }));
      const frames = [];
      for await (const frame of decodeFrames(empty.body!)) frames.push(frame);
      assert.equal(frames.length, 0);
    },
    {},
    { limits: { bundleMaxPaths: 3, bundleMaxBodyBytes: 512 } },
  );
});

Deno.test("bundles beyond bundleJobs wait their turn in order, beyond bundleQueue get 503, and a client that leaves gives up its place", async () => {
  await withFixture(
    async (f) => {
      const post = (signal?: AbortSignal) =>
        f.call("/v1/bundle", {
          method: "POST",
          body: JSON.stringify({ root: f.root, paths: ["hello.txt"] }),
          signal,
        });
      const first = await post();
      assert.equal(first.status, 200);
      // The slot is taken: the next one waits, and one more than the queue holds is refused.
      const leaving = new AbortController();
      const gone = post(leaving.signal);
      const second = post();
      await new Promise((r) => setTimeout(r, 50));
      await expectError(await post(), 503, "busy");
      leaving.abort();
      // Its place is given up (what it is answered goes nowhere).
      await expectError(await gone, 503, "busy");
      let answered = false;
      void second.then(() => answered = true);
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(
        answered,
        false,
        "a waiting bundle is not answered while the slot is taken",
      );
      const frames = [];
      for await (const frame of decodeFrames(first.body!)) frames.push(frame);
      assert.equal(frames.length, 1);
      // The finished bundle freed its slot: the waiting one streams.
      const next = await second;
      assert.equal(next.status, 200);
      const got = [];
      for await (const frame of decodeFrames(next.body!)) got.push(frame);
      assert.equal(got.length, 1);
      // A cancelled bundle frees its slot too.
      const third = await post();
      assert.equal(third.status, 200);
      await third.body?.cancel();
      const after = await post();
      assert.equal(after.status, 200, "a cancelled bundle frees its slot");
      await after.body?.cancel();
    },
    {},
    { limits: { bundleJobs: 1, bundleQueue: 2 } },
  );
});

Deno.test("a slow client holds at most the read-ahead budget of a bundle in server memory", async () => {
  await withFixture(
    async (f) => {
      const dir = join(f.root, "many");
      await Deno.mkdir(dir);
      const names: string[] = [];
      for (let i = 0; i < 40; i++) {
        names.push(`many/f${i}`);
        await Deno.writeFile(
          join(dir, `f${i}`),
          new Uint8Array(64 * 1024).fill(0x41),
        );
      }
      const res = await f.call("/v1/bundle", {
        method: "POST",
        body: JSON.stringify({ root: f.root, paths: names }),
      });
      assert.equal(res.status, 200);
      await new Promise((r) => setTimeout(r, 100));
      for (let i = 0; i < 40; i++) {
        await Deno.writeFile(
          join(dir, `f${i}`),
          new Uint8Array(64 * 1024).fill(0x42),
        );
      }
      let old = 0;
      let count = 0;
      for await (const frame of decodeFrames(res.body!)) {
        count++;
        assert.equal(frame.data.length, 64 * 1024);
        if (frame.data[0] === 0x41) old++;
      }
      assert.equal(count, 40);
      // Read before the rewrite: the first chunk (frames up to 256 KiB, queued
      // for the connection) and the 128 KiB budget behind it, not all 40.
      assert.ok(old <= 7, `${old} files were read ahead`);
    },
    {},
    { limits: { bundleReadAhead: 40, bundleReadAheadBytes: 128 * 1024 } },
  );
});
