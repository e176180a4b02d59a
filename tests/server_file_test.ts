/** Tests of lib/server/endpoints/file.ts: /v1/file through the handler, whole, ranged, HEAD, native and streamed bodies. */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { StatEntry } from "../lib/shared/wire.ts";
import { expectError, NON_ASCII, withFixture } from "./_server_fixture.ts";

Deno.test("GET /v1/file serves the whole file with download headers", async () => {
  await withFixture(async (f) => {
    const stat = await (await f.call(`/v1/stat?path=${f.q("big.bin")}`))
      .json() as StatEntry;
    const res = await f.call(`/v1/file?path=${f.q("big.bin")}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("accept-ranges"), "bytes");
    assert.equal(res.headers.get("content-length"), String(f.big.length));
    assert.equal(res.headers.get("content-type"), "application/octet-stream");
    assert.equal(res.headers.get("etag"), stat.etag);
    assert.equal(
      res.headers.get("last-modified"),
      new Date(stat.mtime).toUTCString(),
    );
    assert.equal(
      res.headers.get("content-disposition"),
      `attachment; filename="big.bin"; filename*=UTF-8''big.bin`,
    );
    assert.equal(res.headers.get("content-range"), null);
    assert.deepEqual(new Uint8Array(await res.arrayBuffer()), f.big);
  });
});

Deno.test("GET /v1/file answers single ranges with 206 and impossible ones with 416", async (t) => {
  await withFixture(async (f) => {
    const size = f.big.length;
    const get = (range: string, headers: Record<string, string> = {}) =>
      f.call(`/v1/file?path=${f.q("big.bin")}`, {
        headers: { range, ...headers },
      });
    const cases: Array<[string, string, number, number]> = [
      ["first 100 bytes", "bytes=0-99", 0, 99],
      ["a middle range", "bytes=1000-1999", 1000, 1999],
      ["an open range", `bytes=${size - 10}-`, size - 10, size - 1],
      ["a suffix range", "bytes=-100", size - 100, size - 1],
      [
        "an end past the file",
        `bytes=${size - 5}-${size + 1000}`,
        size - 5,
        size - 1,
      ],
      ["a range across read chunks", "bytes=200000-299999", 200000, 299999],
    ];
    for (const [name, range, start, end] of cases) {
      await t.step(name, async () => {
        const res = await get(range);
        assert.equal(res.status, 206);
        assert.equal(
          res.headers.get("content-range"),
          `bytes ${start}-${end}/${size}`,
        );
        assert.equal(
          res.headers.get("content-length"),
          String(end - start + 1),
        );
        assert.deepEqual(
          new Uint8Array(await res.arrayBuffer()),
          f.big.subarray(start, end + 1),
        );
      });
    }
    await t.step("an unsatisfiable range", async () => {
      const res = await get(`bytes=${size}-`);
      assert.equal(res.headers.get("content-range"), `bytes */${size}`);
      await expectError(res, 416, "bad_range");
    });
    await t.step(
      "several ranges are answered with the whole file",
      async () => {
        const res = await get("bytes=0-1,5-6");
        assert.equal(res.status, 200);
        assert.equal((await res.arrayBuffer()).byteLength, size);
      },
    );
    await t.step(
      "a garbage range is answered with the whole file",
      async () => {
        const res = await get("bytes=x-y");
        assert.equal(res.status, 200);
        await res.body?.cancel();
      },
    );
    await t.step("an empty file ignores Range", async () => {
      const res = await f.call(`/v1/file?path=${f.q("empty.bin")}`, {
        headers: { range: "bytes=0-10" },
      });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-length"), "0");
      assert.equal((await res.arrayBuffer()).byteLength, 0);
    });
    const etag = (await (await f.call(`/v1/stat?path=${f.q("big.bin")}`))
      .json() as StatEntry).etag;
    const lastModified =
      (await f.call(`/v1/file?path=${f.q("big.bin")}`, { method: "HEAD" }))
        .headers.get("last-modified")!;
    await t.step("If-Range with the current ETag keeps the range", async () => {
      const res = await get("bytes=0-9", { "if-range": etag });
      assert.equal(res.status, 206);
      await res.body?.cancel();
    });
    await t.step(
      "If-Range with another ETag sends the whole file",
      async () => {
        const res = await get("bytes=0-9", { "if-range": '"1-2-3-4"' });
        assert.equal(res.status, 200);
        assert.equal((await res.arrayBuffer()).byteLength, size);
      },
    );
    await t.step("If-Range with a weak ETag sends the whole file", async () => {
      const res = await get("bytes=0-9", { "if-range": `W/${etag}` });
      assert.equal(res.status, 200);
      await res.body?.cancel();
    });
    await t.step(
      "If-Range with the Last-Modified date keeps the range",
      async () => {
        const res = await get("bytes=0-9", { "if-range": lastModified });
        assert.equal(res.status, 206);
        await res.body?.cancel();
      },
    );
    await t.step(
      "If-Range with an older date sends the whole file",
      async () => {
        const res = await get("bytes=0-9", {
          "if-range": "Thu, 01 Jan 1970 00:00:00 GMT",
        });
        assert.equal(res.status, 200);
        await res.body?.cancel();
      },
    );
  });
});

Deno.test("HEAD /v1/file has the headers of GET and no body", async () => {
  await withFixture(async (f) => {
    const res = await f.call(`/v1/file?path=${f.q("big.bin")}`, {
      method: "HEAD",
    });
    assert.equal(res.status, 200);
    assert.equal(res.body, null);
    assert.equal(res.headers.get("content-length"), String(f.big.length));
    assert.equal(res.headers.get("accept-ranges"), "bytes");
    const ranged = await f.call(`/v1/file?path=${f.q("big.bin")}`, {
      method: "HEAD",
      headers: { range: "bytes=0-99" },
    });
    assert.equal(ranged.status, 206);
    assert.equal(ranged.body, null);
    assert.equal(ranged.headers.get("content-length"), "100");
    const stat = await f.call(`/v1/stat?path=${f.q("big.bin")}`, {
      method: "HEAD",
    });
    assert.equal(stat.status, 200);
    assert.equal(stat.body, null);
    assert.ok(Number(stat.headers.get("content-length")) > 0);
  });
});

Deno.test("Content-Disposition is safe for non-ASCII names and quotes", async () => {
  await withFixture(async (f) => {
    const res = await f.call(`/v1/file?path=${f.q(NON_ASCII)}`, {
      method: "HEAD",
    });
    assert.equal(
      res.headers.get("content-disposition"),
      `attachment; filename="na_ve __.txt"; filename*=UTF-8''na%C3%AFve%20%E6%97%A5%E6%9C%AC.txt`,
    );
    await Deno.writeTextFile(join(f.root, `a"b\\c'd%.txt`), "x");
    const odd = await f.call(`/v1/file?path=${f.q(`a"b\\c'd%.txt`)}`, {
      method: "HEAD",
    });
    assert.equal(
      odd.headers.get("content-disposition"),
      `attachment; filename="a_b_c'd_.txt"; filename*=UTF-8''a%22b%5Cc%27d%25.txt`,
    );
    await expectError(
      await f.call(`/v1/file?path=${f.q("nested")}`),
      400,
      "not_a_file",
    );
  });
});

Deno.test("a slow client holds at most a few chunks of a file in server memory", async () => {
  await withFixture(async (f) => {
    const size = 8 * 1024 * 1024;
    const path = join(f.root, "slow.bin");
    await Deno.writeFile(path, new Uint8Array(size).fill(0x41));
    const res = await f.call(`/v1/file?path=${f.q("slow.bin")}`);
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const first = await reader.read();
    assert.ok(!first.done && first.value.length > 0);
    // Give a read-ahead (if there were one) every chance to run.
    await new Promise((r) => setTimeout(r, 100));
    // Rewrite the file in place: bytes read from now on are "B".
    const file = await Deno.open(path, { write: true });
    await file.write(new Uint8Array(size).fill(0x42));
    file.close();
    let old = first.value.length;
    let total = first.value.length;
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      old += value.filter((b) => b === 0x41).length;
    }
    assert.equal(total, size);
    assert.ok(old <= 3 * 256 * 1024, `${old} bytes were read ahead`);
  });
});

Deno.test("over HTTP/1.1, whole files, ranges to the end and ranges over one chunk are streamed natively; short ranges, and all over HTTP/2, through JavaScript", async () => {
  await withFixture(async (f) => {
    const size = 2 * 1024 * 1024;
    const data = new Uint8Array(size);
    for (let i = 0; i < size; i++) data[i] = (i * 13 + (i >> 10)) & 0xff;
    await Deno.writeFile(join(f.root, "n.bin"), data);
    // HTTP/1.1 requests carry a Host header, HTTP/2 ones do not.
    const get = async (http1: boolean, range?: string) => {
      const headers: Record<string, string> = http1
        ? { host: "localhost" }
        : {};
      if (range !== undefined) headers.range = range;
      const res = await f.call(`/v1/file?path=${f.q("n.bin")}`, { headers });
      const chunks: Uint8Array[] = [];
      for await (const chunk of res.body!) chunks.push(chunk);
      const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      let at = 0;
      for (const c of chunks) {
        all.set(c, at);
        at += c.length;
      }
      return { first: chunks[0].length, all };
    };
    // Deno reads a file resource 64 KiB at a time; fileBody reads 512 KiB.
    for (const http1 of [true, false]) {
      const whole = await get(http1);
      assert.equal(whole.first, http1 ? 64 * 1024 : 512 * 1024);
      assert.deepEqual(whole.all, data);
      const tail = await get(http1, `bytes=${size - 300_000}-`);
      assert.equal(tail.first, http1 ? 64 * 1024 : 300_000);
      assert.deepEqual(tail.all, data.subarray(size - 300_000));
      const short = await get(http1, "bytes=1000-300999");
      assert.equal(short.first, 300_000);
      assert.deepEqual(short.all, data.subarray(1000, 301_000));
    }
    // A long range in the middle: natively, the resource reads on past it
    // (Deno.serve sends `content-length` bytes: tests/e2e_server_test.ts).
    const middle = await get(true, `bytes=1000-${size - 2}`);
    assert.equal(middle.first, 64 * 1024);
    assert.deepEqual(
      middle.all.subarray(0, size - 1001),
      data.subarray(1000, size - 1),
    );
    const exact = await get(false, `bytes=1000-${size - 2}`);
    assert.equal(exact.first, 512 * 1024);
    assert.deepEqual(exact.all, data.subarray(1000, size - 1));
  });
});

Deno.test("range bodies short of the end read large chunks when few stream at once, smaller ones when many do, and count themselves out", async () => {
  await withFixture(async (f) => {
    const size = 2 * 1024 * 1024;
    const data = new Uint8Array(size);
    for (let i = 0; i < size; i++) data[i] = (i * 7 + (i >> 12)) & 0xff;
    // One byte more on disk: the ranges below stop short of the end, and
    // without a Host header (as over HTTP/2) they stream through JavaScript.
    const disk = new Uint8Array(size + 1);
    disk.set(data);
    await Deno.writeFile(join(f.root, "many.bin"), disk);
    const open = async () => {
      const res = await f.call(`/v1/file?path=${f.q("many.bin")}`, {
        headers: { range: `bytes=0-${size - 1}` },
      });
      assert.equal(res.status, 206);
      return res.body!.getReader();
    };
    const firstChunk = async (
      reader: ReadableStreamDefaultReader<Uint8Array>,
    ) => {
      const r = await reader.read();
      assert.ok(!r.done);
      return r.value;
    };
    // Alone: a large chunk.
    const alone = await open();
    assert.equal((await firstChunk(alone)).length, 512 * 1024);
    await alone.cancel();
    // Forty at once: the later ones read smaller chunks.
    const readers = [];
    const firsts: Uint8Array[] = [];
    for (let i = 0; i < 40; i++) {
      const reader = await open();
      readers.push(reader);
      firsts.push(await firstChunk(reader));
    }
    assert.ok(firsts.some((c) => c.length === 64 * 1024));
    // Half are cancelled, half read to the end: every byte is right.
    for (let i = 0; i < readers.length; i++) {
      if (i % 2 === 0) {
        await readers[i].cancel();
        continue;
      }
      const got = new Uint8Array(size);
      got.set(firsts[i]);
      let at = firsts[i].length;
      while (true) {
        const { done, value } = await readers[i].read();
        if (done) break;
        got.set(value, at);
        at += value.length;
      }
      assert.equal(at, size);
      assert.deepEqual(got, data);
    }
    // All of them finished or cancelled (either alone would leave more than
    // eight counted): alone again, a large chunk again.
    const again = await open();
    assert.equal((await firstChunk(again)).length, 512 * 1024);
    await again.cancel();
  });
});

Deno.test("GET /v1/file?iffile=1 answers 204 and nothing more for a directory, the bytes of a file as without it, 404 for a missing path", async () => {
  await withFixture(async (f) => {
    const dir = await f.call(`/v1/file?path=${f.q("nested")}&iffile=1`);
    assert.equal(dir.status, 204);
    assert.equal(await dir.text(), "");
    // Without it, a directory is still refused as not a file.
    const plain = await f.call(`/v1/file?path=${f.q("nested")}`);
    assert.equal(plain.status, 400);
    await plain.body?.cancel();
    const file = await f.call(`/v1/file?path=${f.q("big.bin")}&iffile=1`, {
      headers: { range: "bytes=0-99" },
    });
    assert.equal(file.status, 206);
    assert.deepEqual(
      new Uint8Array(await file.arrayBuffer()),
      f.big.subarray(0, 100),
    );
    const missing = await f.call(`/v1/file?path=${f.q("nope")}&iffile=1`);
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
    const bad = await f.call(`/v1/file?path=${f.q("nested")}&iffile=yes`);
    assert.equal(bad.status, 400);
    await bad.body?.cancel();
  });
});
