/** Tests of lib/server.ts: every v1 endpoint through the handler, a table of hostile requests, and one real socket. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import defaults from "../hsync.ini" with { type: "text" };
import { decodeFrames } from "../lib/bundle_codec.ts";
import { loadConfig, type Overrides, serverSettings } from "../lib/config.ts";
import { ConfigError } from "../lib/errors.ts";
import {
  type AccessLogEntry,
  createHandler,
  type Handler,
  type HandlerOptions,
} from "../lib/server.ts";
import { VERSION } from "../lib/version.ts";
import type {
  BundleHeader,
  ErrorBody,
  HashResult,
  Health,
  ListEntry,
  StatEntry,
} from "../lib/wire.ts";

const SECRET = "TOP-SECRET-BYTES";
const NON_ASCII = "naïve 日本.txt";

interface Fixture {
  tmp: string;
  root: string;
  hsyncDir: string;
  keyFile: string;
  big: Uint8Array;
  handler: Handler;
  logs: AccessLogEntry[];
  /** Calls the handler like Deno.serve would, from 127.0.0.1 unless told otherwise. */
  call(path: string, init?: RequestInit, remote?: string): Promise<Response>;
  /** Absolute path of a fixture entry, percent-encoded for a query. */
  q(rel: string): string;
  remove(): Promise<void>;
}

function fakeInfo(hostname: string): Deno.ServeHandlerInfo<Deno.NetAddr> {
  return {
    remoteAddr: { transport: "tcp", hostname, port: 1234 },
    completed: Promise.resolve(),
  };
}

async function settingsFor(hsyncDir: string, overrides: Overrides) {
  const config = await loadConfig({
    defaults,
    hsyncDir,
    readTextFile: () => Promise.reject(new Deno.errors.NotFound("none")),
  });
  return serverSettings(config, overrides);
}

async function makeFixture(
  overrides: Overrides = {},
  extra: Partial<HandlerOptions> = {},
): Promise<Fixture> {
  const tmp = await Deno.realPath(
    await Deno.makeTempDir({ prefix: "hsync_server_" }),
  );
  const root = join(tmp, "root");
  const hsyncDir = join(root, "state-dir");
  const keyFile = join(root, "server-private.bin");
  for (const dir of ["nested/deep", "emptydir", ".ssh", "state-dir"]) {
    await Deno.mkdir(join(root, dir), { recursive: true });
  }
  const big = new Uint8Array(300_000).map((_, i) => (i * 7 + (i >> 8)) & 255);
  await Deno.writeTextFile(join(root, "hello.txt"), "hello world");
  await Deno.writeFile(join(root, "empty.bin"), new Uint8Array(0));
  await Deno.writeFile(join(root, "big.bin"), big);
  await Deno.writeTextFile(join(root, "nested/deep/leaf.txt"), "leaf");
  await Deno.writeTextFile(join(root, "with space.txt"), "space");
  await Deno.writeTextFile(join(root, NON_ASCII), "unicode");
  await Deno.writeTextFile(join(root, "id_rsa"), SECRET);
  await Deno.writeTextFile(join(root, ".ssh/known_hosts"), SECRET);
  await Deno.writeTextFile(join(hsyncDir, "hsyncd.pid"), SECRET);
  await Deno.writeTextFile(keyFile, SECRET);
  await Deno.writeTextFile(join(tmp, "secret.txt"), SECRET);
  await Deno.symlink(join(tmp, "secret.txt"), join(root, "link_out"));
  await Deno.symlink(join(root, "nested"), join(root, "link_in_dir"));
  await Deno.symlink(".", join(root, "loop"));
  const fifo = await new Deno.Command("mkfifo", { args: [join(root, "fifo")] })
    .output();
  assert.equal(fifo.code, 0);

  const settings = await settingsFor(hsyncDir, {
    Only_allowed_path: root,
    Key_file: keyFile,
    ...overrides,
  });
  const logs: AccessLogEntry[] = [];
  const handler = await createHandler({
    settings,
    hsyncDir,
    hostname: "test-host",
    log: (entry) => logs.push(entry),
    ...extra,
  });
  return {
    tmp,
    root,
    hsyncDir,
    keyFile,
    big,
    handler,
    logs,
    call: (path, init, remote = "127.0.0.1") =>
      handler(new Request(`http://localhost${path}`, init), fakeInfo(remote)),
    q: (rel) => encodeURIComponent(rel === "" ? root : join(root, rel)),
    remove: () => Deno.remove(tmp, { recursive: true }),
  };
}

async function withFixture(
  fn: (f: Fixture) => Promise<void>,
  overrides?: Overrides,
  extra?: Partial<HandlerOptions>,
): Promise<void> {
  const f = await makeFixture(overrides, extra);
  try {
    await fn(f);
  } finally {
    await f.remove();
  }
}

async function expectError(
  response: Response,
  status: number,
  code: string,
): Promise<ErrorBody> {
  const text = await response.text();
  assert.equal(response.status, status, text);
  assert.match(
    response.headers.get("content-type") ?? "",
    /^application\/json/,
  );
  const body = JSON.parse(text) as ErrorBody;
  assert.equal(body.error, code, text);
  assert.equal(typeof body.message, "string");
  assert.ok(!text.includes(SECRET));
  assert.ok(!text.includes("    at "), "no stack trace in a body");
  return body;
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

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

Deno.test("missing paths, unknown endpoints and wrong methods get JSON errors", async () => {
  await withFixture(async (f) => {
    const missing = await expectError(
      await f.call(`/v1/stat?path=${f.q("nope.txt")}`),
      404,
      "not_found",
    );
    assert.equal(
      missing.message,
      `Cannot serve ${
        JSON.stringify(join(f.root, "nope.txt"))
      }: no such file or directory`,
    );
    await expectError(await f.call("/v1/nothing"), 404, "not_found");
    await expectError(await f.call("/"), 404, "not_found");
    await expectError(await f.call("/v1/stat"), 400, "bad_request");
    await expectError(await f.call(`/v1/stat?path=relative`), 400, "bad_path");
    const post = await f.call(`/v1/file?path=${f.q("hello.txt")}`, {
      method: "POST",
    });
    assert.equal(post.headers.get("allow"), "GET, HEAD");
    await expectError(post, 405, "method_not_allowed");
    const get = await f.call("/v1/bundle");
    assert.equal(get.headers.get("allow"), "POST");
    await expectError(get, 405, "method_not_allowed");
  });
});

Deno.test("GET /v1/list streams well-formed NDJSON without refused entries", async () => {
  await withFixture(async (f) => {
    const res = await f.call(`/v1/list?path=${f.q("")}`);
    assert.equal(res.status, 200);
    assert.equal(
      res.headers.get("content-type"),
      "application/x-ndjson; charset=utf-8",
    );
    const text = await res.text();
    assert.ok(text.endsWith("\n"));
    const entries = text.trimEnd().split("\n").map((line) =>
      JSON.parse(line) as ListEntry
    );
    const paths = entries.map((e) => e.path);
    assert.deepEqual(
      [...paths].sort(),
      [
        "big.bin",
        "empty.bin",
        "emptydir",
        "hello.txt",
        "link_in_dir",
        "link_in_dir/deep",
        "link_in_dir/deep/leaf.txt",
        NON_ASCII,
        "nested",
        "nested/deep",
        "nested/deep/leaf.txt",
        "with space.txt",
      ].sort(),
    );
    for (const e of entries) {
      assert.ok(e.type === "file" || e.type === "dir");
      assert.ok(!e.path.startsWith("/") && e.path !== "");
      assert.match(e.etag, /^"[0-9a-f-]+"$/);
      const slash = e.path.lastIndexOf("/");
      if (slash > 0) {
        const parent = paths.indexOf(e.path.slice(0, slash));
        assert.ok(
          parent >= 0 && parent < paths.indexOf(e.path),
          `${e.path} after its directory`,
        );
      }
    }
    const byPath = new Map(entries.map((e) => [e.path, e]));
    assert.equal(byPath.get("empty.bin")!.size, 0);
    assert.equal(byPath.get("big.bin")!.size, f.big.length);
    assert.equal(byPath.get("emptydir")!.type, "dir");
    assert.equal(byPath.get("link_in_dir")!.type, "dir");
    assert.ok(!text.includes(SECRET));

    const stat = await (await f.call(`/v1/stat?path=${f.q("hello.txt")}`))
      .json() as StatEntry;
    assert.equal(byPath.get("hello.txt")!.etag, stat.etag);

    const empty = await f.call(`/v1/list?path=${f.q("emptydir")}`);
    assert.equal(await empty.text(), "");
    await expectError(
      await f.call(`/v1/list?path=${f.q("hello.txt")}`),
      400,
      "not_a_directory",
    );
    await expectError(
      await f.call(`/v1/list?path=${f.q(".ssh")}`),
      403,
      "forbidden_dir",
    );
  });
});

Deno.test("GET /v1/list walks a wide tree in batches", async () => {
  await withFixture(async (f) => {
    const wide = join(f.root, "wide");
    await Deno.mkdir(wide);
    for (let i = 0; i < 300; i++) {
      if (i % 50 === 0) await Deno.mkdir(join(wide, `d${i}`));
      await Deno.writeTextFile(
        join(wide, i % 50 === 0 ? `d${i}/f` : `f${i}`),
        "x",
      );
    }
    const res = await f.call(`/v1/list?path=${f.q("wide")}`);
    const reader = res.body!.getReader();
    let chunks = 0;
    let text = "";
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks++;
      text += new TextDecoder().decode(value);
    }
    assert.ok(chunks > 1, "streamed in several chunks");
    assert.equal(text.trimEnd().split("\n").length, 300 + 6);
  });
});

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

Deno.test("GET /v1/hash matches node:crypto over the same bytes, whole and ranged", async () => {
  await withFixture(async (f) => {
    const stat = await (await f.call(`/v1/stat?path=${f.q("big.bin")}`))
      .json() as StatEntry;
    const whole = await (await f.call(`/v1/hash?path=${f.q("big.bin")}`))
      .json() as HashResult;
    assert.deepEqual(whole, {
      sha256: sha256(f.big),
      offset: 0,
      length: f.big.length,
      etag: stat.etag,
    });
    const part = await (await f.call(
      `/v1/hash?path=${f.q("big.bin")}&offset=1000&length=5000`,
    )).json() as HashResult;
    assert.deepEqual(part, {
      sha256: sha256(f.big.subarray(1000, 6000)),
      offset: 1000,
      length: 5000,
      etag: stat.etag,
    });
    const tail =
      await (await f.call(`/v1/hash?path=${f.q("big.bin")}&offset=299000`))
        .json() as HashResult;
    assert.equal(tail.sha256, sha256(f.big.subarray(299000)));
    assert.equal(tail.length, 1000);
    const again = await (await f.call(`/v1/hash?path=${f.q("big.bin")}`))
      .json() as HashResult;
    assert.deepEqual(again, whole);
    const empty = await (await f.call(`/v1/hash?path=${f.q("empty.bin")}`))
      .json() as HashResult;
    assert.equal(empty.sha256, sha256(new Uint8Array(0)));

    await Deno.writeTextFile(join(f.root, "big.bin"), "changed");
    const fresh = await (await f.call(`/v1/hash?path=${f.q("big.bin")}`))
      .json() as HashResult;
    assert.equal(fresh.sha256, sha256(new TextEncoder().encode("changed")));

    await expectError(
      await f.call(`/v1/hash?path=${f.q("big.bin")}&offset=-1`),
      400,
      "bad_request",
    );
    await expectError(
      await f.call(`/v1/hash?path=${f.q("big.bin")}&length=1e3`),
      400,
      "bad_request",
    );
    await expectError(
      await f.call(`/v1/hash?path=${f.q("big.bin")}&offset=5&length=100`),
      416,
      "bad_range",
    );
    await expectError(
      await f.call(`/v1/hash?path=${f.q("nested")}`),
      400,
      "not_a_file",
    );
  });
});

Deno.test("GET /v1/hash enforces the path rules (no hash oracle)", async () => {
  await withFixture(async (f) => {
    const secretHash = sha256(new TextEncoder().encode(SECRET));
    for (
      const [rel, code] of [
        ["id_rsa", "forbidden_file"],
        ["link_out", "outside_allowed"],
        [".ssh/known_hosts", "forbidden_dir"],
        ["state-dir/hsyncd.pid", "forbidden"],
      ]
    ) {
      const res = await f.call(`/v1/hash?path=${f.q(rel)}`);
      const text = await res.clone().text();
      assert.ok(!text.includes(secretHash));
      await expectError(res, 403, code);
    }
    await expectError(
      await f.call(
        `/v1/hash?path=${encodeURIComponent(join(f.tmp, "secret.txt"))}`,
      ),
      403,
      "outside_allowed",
    );
  });
});

Deno.test("GET /v1/hash answers 503 busy beyond its queue", async () => {
  await withFixture(
    async (f) => {
      const huge = join(f.root, "huge.bin");
      const file = await Deno.open(huge, { write: true, create: true });
      await file.truncate(4 * 1024 * 1024 * 1024);
      file.close();
      const abort = new AbortController();
      const first = f.call(`/v1/hash?path=${f.q("huge.bin")}`, {
        signal: abort.signal,
      });
      await new Promise((done) => setTimeout(done, 50));
      const busy = await f.call(`/v1/hash?path=${f.q("hello.txt")}`);
      assert.equal(busy.headers.get("retry-after"), "1");
      await expectError(busy, 503, "busy");
      abort.abort();
      const gone = await first;
      assert.equal(gone.status, 499);
      await gone.body?.cancel();
      const ok = await f.call(`/v1/hash?path=${f.q("hello.txt")}`);
      assert.equal(ok.status, 200);
      await ok.body?.cancel();
    },
    {},
    { limits: { hashJobs: 1, hashQueue: 0 } },
  );
});

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
    assert.equal(errorOf("link_out"), "outside_allowed");
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

Deno.test("Allowed_host refuses a peer before any path work", async () => {
  await withFixture(async (f) => {
    for (
      const url of [
        "/v1/health",
        `/v1/file?path=${f.q("hello.txt")}`,
        "/v1/stat?path=%00",
        "/v1/nothing",
      ]
    ) {
      const body = await expectError(
        await f.call(url),
        403,
        "host_not_allowed",
      );
      assert.equal(
        body.message,
        "Cannot serve 127.0.0.1: refused by Allowed_host",
      );
    }
    const mapped = await f.call("/v1/health", {}, "::ffff:10.1.2.3");
    assert.equal(mapped.status, 200);
    await mapped.body?.cancel();
    const v6 = await f.call(`/v1/stat?path=${f.q("hello.txt")}`, {}, "fd00::5");
    assert.equal(v6.status, 200);
    await v6.body?.cancel();
    assert.equal(f.logs.at(-2)!.remote, "10.1.2.3");
  }, { Allowed_host: "10.0.0.0/8, fd00::/8" });
});

Deno.test("every request is logged once with status, bytes and duration", async () => {
  await withFixture(async (f) => {
    await (await f.call(`/v1/file?path=${f.q("hello.txt")}`, {
      headers: { range: "bytes=0-4" },
    })).text();
    await (await f.call(`/v1/stat?path=${f.q("nope")}`)).text();
    await f.call(`/v1/file?path=${f.q("hello.txt")}`, { method: "HEAD" });
    await (await f.call(`/v1/list?path=${f.q("")}`)).text();
    assert.equal(f.logs.length, 4);
    const [range, missing, head, list] = f.logs;
    assert.equal(range.status, 206);
    assert.equal(range.bytes, 5);
    assert.equal(range.method, "GET");
    assert.equal(range.remote, "127.0.0.1");
    assert.equal(range.url, `/v1/file?path=${f.q("hello.txt")}`);
    assert.ok(range.time instanceof Date && range.ms >= 0);
    assert.equal(missing.status, 404);
    assert.ok((missing.bytes ?? 0) > 0);
    assert.equal(head.bytes, 0);
    assert.equal(list.bytes, null);
  });
});

Deno.test("unexpected errors answer a generic 500, reach onError, and a broken logger is harmless", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "hsync_server_" });
  try {
    const errors: unknown[] = [];
    const handler = await createHandler({
      settings: await settingsFor(tmp, { Only_allowed_path: tmp }),
      hsyncDir: join(tmp, "state"),
      get hostname(): string {
        throw new Error("Boom in /very/secret/place");
      },
      log: () => {
        throw new Error("The logger broke");
      },
      onError: (error) => errors.push(error),
    });
    const res = await handler(
      new Request("http://localhost/v1/health"),
      fakeInfo("127.0.0.1"),
    );
    const body = await expectError(res, 500, "internal");
    assert.equal(body.message, "Internal server error");
    assert.equal(errors.length, 1);
    assert.equal((errors[0] as Error).message, "Boom in /very/secret/place");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("createHandler() refuses a missing Only_allowed_path and a bad Allowed_host", async () => {
  const settings = await settingsFor("/nonexistent/hsync", {
    Only_allowed_path: "/no/such/hsync/root",
  });
  await assert.rejects(
    createHandler({ settings, hsyncDir: "/nonexistent/hsync", hostname: "x" }),
    (e: unknown) =>
      e instanceof ConfigError && e.message.includes('"/no/such/hsync/root"'),
  );
  const bad = await settingsFor("/nonexistent/hsync", {
    Allowed_host: "10.0.0.0/99",
  });
  await assert.rejects(
    createHandler({
      settings: bad,
      hsyncDir: "/nonexistent/hsync",
      hostname: "x",
    }),
    (e: unknown) =>
      e instanceof ConfigError && e.message.includes('"10.0.0.0/99"'),
  );
});

Deno.test("hostile requests are refused without leaking a secret byte", async (t) => {
  await withFixture(async (f) => {
    const secretPath = join(f.tmp, "secret.txt");
    const rows: Array<[string, string, number, string]> = [
      [
        "percent-encoded traversal",
        `/v1/file?path=${encodeURIComponent(f.root)}%2F..%2Fsecret.txt`,
        403,
        "outside_allowed",
      ],
      [
        "raw traversal in the query",
        `/v1/file?path=${f.root}/../secret.txt`,
        403,
        "outside_allowed",
      ],
      [
        "double-encoded traversal",
        `/v1/file?path=${
          encodeURIComponent(f.root)
        }%2F%252e%252e%252Fsecret.txt`,
        404,
        "not_found",
      ],
      ["NUL byte", `/v1/file?path=${f.q("hello.txt")}%00.png`, 400, "bad_path"],
      ["empty path", `/v1/file?path=`, 400, "bad_path"],
      [
        "very long path",
        `/v1/stat?path=${f.q("a/".repeat(2100))}`,
        400,
        "bad_path",
      ],
      [
        "symlink out of the root",
        `/v1/file?path=${f.q("link_out")}`,
        403,
        "outside_allowed",
      ],
      [
        "absolute path outside the root",
        `/v1/file?path=${encodeURIComponent(secretPath)}`,
        403,
        "outside_allowed",
      ],
      ["/etc/shadow", `/v1/file?path=%2Fetc%2Fshadow`, 403, "forbidden_dir"],
      [
        "/proc/self/environ",
        `/v1/file?path=%2Fproc%2Fself%2Fenviron`,
        403,
        "not_regular",
      ],
      ["/dev/zero", `/v1/file?path=%2Fdev%2Fzero`, 403, "forbidden_dir"],
      [
        "forbidden file name",
        `/v1/file?path=${f.q("id_rsa")}`,
        403,
        "forbidden_file",
      ],
      [
        "forbidden bare directory name",
        `/v1/file?path=${f.q(".ssh/known_hosts")}`,
        403,
        "forbidden_dir",
      ],
      [
        "HSYNC_DIR",
        `/v1/list?path=${encodeURIComponent(f.hsyncDir)}`,
        403,
        "forbidden",
      ],
      [
        "pidfile in HSYNC_DIR",
        `/v1/file?path=${encodeURIComponent(join(f.hsyncDir, "hsyncd.pid"))}`,
        403,
        "forbidden",
      ],
      [
        "the server's key file",
        `/v1/file?path=${encodeURIComponent(f.keyFile)}`,
        403,
        "forbidden",
      ],
      [
        "a FIFO (must not hang)",
        `/v1/file?path=${f.q("fifo")}`,
        403,
        "not_regular",
      ],
      [
        "a FIFO through stat",
        `/v1/stat?path=${f.q("fifo")}`,
        403,
        "not_regular",
      ],
      [
        "a FIFO through hash",
        `/v1/hash?path=${f.q("fifo")}`,
        403,
        "not_regular",
      ],
      [
        "stat of a forbidden file",
        `/v1/stat?path=${f.q("id_rsa")}`,
        403,
        "forbidden_file",
      ],
      [
        "list through a symlink loop",
        `/v1/list?path=${f.q("loop/loop/loop")}`,
        200,
        "",
      ],
    ];
    for (const [name, url, status, code] of rows) {
      await t.step(name, async () => {
        const res = await f.call(url);
        if (status === 200) {
          const text = await res.text();
          assert.equal(res.status, 200);
          assert.ok(!text.includes(SECRET) && !text.includes("id_rsa"));
          return;
        }
        await expectError(res, status, code);
      });
    }
    await t.step(
      "the listing of the root never names refused entries",
      async () => {
        const text = await (await f.call(`/v1/list?path=${f.q("")}`)).text();
        for (
          const name of [
            "id_rsa",
            ".ssh",
            "state-dir",
            "server-private.bin",
            "link_out",
            "fifo",
            '"loop',
          ]
        ) {
          assert.ok(!text.includes(name), name);
        }
      },
    );
  });
});

Deno.test("a real socket serves health, ranges and HEAD over HTTP", async () => {
  await withFixture(async (f) => {
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      f.handler,
    );
    try {
      const base = `http://127.0.0.1:${server.addr.port}`;
      const health = await fetch(`${base}/v1/health`);
      assert.equal((await health.json() as Health).name, "hsyncd");
      const range = await fetch(`${base}/v1/file?path=${f.q("big.bin")}`, {
        headers: { range: "bytes=10-19" },
      });
      assert.equal(range.status, 206);
      assert.deepEqual(
        new Uint8Array(await range.arrayBuffer()),
        f.big.subarray(10, 20),
      );
      const head = await fetch(`${base}/v1/file?path=${f.q("big.bin")}`, {
        method: "HEAD",
      });
      assert.equal(head.headers.get("content-length"), String(f.big.length));
      assert.equal((await head.arrayBuffer()).byteLength, 0);
      const whole = await fetch(`${base}/v1/file?path=${f.q("big.bin")}`);
      assert.deepEqual(new Uint8Array(await whole.arrayBuffer()), f.big);
      const refused = await fetch(`${base}/v1/file?path=${f.q("id_rsa")}`);
      assert.equal(refused.status, 403);
      assert.ok(!(await refused.text()).includes(SECRET));
    } finally {
      await server.shutdown();
    }
  });
});

const curl = await hasCurl();

async function hasCurl(): Promise<boolean> {
  try {
    const out = await new Deno.Command("curl", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

Deno.test({
  name: curl
    ? "curl -r 0-99 and curl -OJ download from the server"
    : "curl -r 0-99 and curl -OJ download from the server (ignored: curl is not installed)",
  ignore: !curl,
  fn: async () => {
    await withFixture(async (f) => {
      const server = Deno.serve({
        hostname: "127.0.0.1",
        port: 0,
        onListen() {},
      }, f.handler);
      const out = await Deno.makeTempDir({ prefix: "hsync_curl_" });
      try {
        const base = `http://127.0.0.1:${server.addr.port}`;
        const ranged = await new Deno.Command("curl", {
          args: [
            "-sS",
            "-f",
            "-r",
            "0-99",
            `${base}/v1/file?path=${f.q("big.bin")}`,
          ],
        }).output();
        assert.equal(ranged.code, 0, new TextDecoder().decode(ranged.stderr));
        assert.deepEqual(ranged.stdout, f.big.subarray(0, 100));

        const named = await new Deno.Command("curl", {
          args: [
            "-sS",
            "-f",
            "-O",
            "-J",
            `${base}/v1/file?path=${f.q(NON_ASCII)}`,
          ],
          cwd: out,
        }).output();
        assert.equal(named.code, 0, new TextDecoder().decode(named.stderr));
        const files = [...Deno.readDirSync(out)].map((e) => e.name);
        assert.equal(files.length, 1);
        assert.equal(await Deno.readTextFile(join(out, files[0])), "unicode");

        const plain = await new Deno.Command("curl", {
          args: [
            "-sS",
            "-f",
            "-O",
            "-J",
            `${base}/v1/file?path=${f.q("big.bin")}`,
          ],
          cwd: out,
        }).output();
        assert.equal(plain.code, 0);
        assert.deepEqual(await Deno.readFile(join(out, "big.bin")), f.big);
      } finally {
        await server.shutdown();
        await Deno.remove(out, { recursive: true });
      }
    });
  },
});
