/** Tests of lib/server/handler.ts: every v1 endpoint through the handler, a table of hostile requests, and one real socket. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join, posix } from "node:path";
import defaults from "../hsync.ini" with { type: "text" };
import fc from "fast-check";
import {
  BODY_DIGEST_HEADER,
  createVerifier,
  generateKeys,
  parseAuthorizedKeys,
} from "../lib/shared/auth.ts";
import { decodeFrames } from "../lib/shared/bundle_codec.ts";
import {
  loadConfig,
  type Overrides,
  serverSettings,
} from "../lib/shared/config.ts";
import { ConfigError } from "../lib/shared/errors.ts";
import {
  type AccessLogEntry,
  createHandler,
  type Handler,
  type HandlerOptions,
} from "../lib/server/handler.ts";
import { DirectoryReads } from "../lib/server/directory_reads.ts";
import { VERSION } from "../lib/shared/version.ts";
import type {
  BundleHeader,
  ErrorBody,
  HashResult,
  Health,
  ListEntry,
  StatEntry,
} from "../lib/shared/wire.ts";

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

Deno.test("GET /v1/list?after= resumes a cut listing exactly after the last entry received", async () => {
  await withFixture(async (f) => {
    // Deep and wide: several batches in one directory, subdirectories at
    // several depths, a symlinked directory and refused entries on the way.
    const t = join(f.root, "tree");
    await Deno.mkdir(join(t, "b/c/d"), { recursive: true });
    await Deno.mkdir(join(t, "a"));
    await Deno.mkdir(join(t, "e"));
    for (let i = 0; i < 600; i++) {
      await Deno.writeTextFile(join(t, "a", `f${i}`), "x");
    }
    for (const p of ["b/1", "b/c/2", "b/c/d/3", "e/4", "z", "m"]) {
      await Deno.writeTextFile(join(t, p), "y");
    }
    await Deno.writeTextFile(join(t, "b/id_rsa"), SECRET);
    await Deno.symlink(join(t, "b/c"), join(t, "l"));
    const listing = async (after?: string) => {
      const q = after === undefined
        ? ""
        : `&after=${encodeURIComponent(after)}`;
      const res = await f.call(`/v1/list?path=${f.q("tree")}${q}`);
      assert.equal(res.status, 200);
      const text = await res.text();
      return text === ""
        ? []
        : text.trimEnd().split("\n").map((line) =>
          (JSON.parse(line) as ListEntry).path
        );
    };
    const all = await listing();
    assert.equal(all.length, 600 + 6 + 6 + 3, all.join(" "));
    assert.ok(!all.includes("b/id_rsa"));
    // A directory's own entries come sorted, before any of its subdirectories.
    const top = all.filter((p) => !p.includes("/"));
    assert.deepEqual(top, ["a", "b", "e", "l", "m", "z"]);
    assert.deepEqual(all.slice(0, 6), top);
    // Every cut: the rest, exactly.
    for (
      let k = 0;
      k < all.length;
      k += k < 20 || k > all.length - 20 ? 1 : 37
    ) {
      assert.deepEqual(
        await listing(all[k]),
        all.slice(k + 1),
        `after ${all[k]}`,
      );
    }
    // The entry the listing was cut after has gone: the rest still follows it.
    await Deno.remove(join(t, "b/c/2"));
    assert.deepEqual(
      await listing("b/c/2"),
      all.slice(all.indexOf("b/c/2") + 1).filter((p) => p !== "l/2"),
    );
    // A way down that has gone: its later siblings still come.
    await Deno.remove(join(t, "b"), { recursive: true });
    assert.deepEqual(
      await listing("b/c/d/3"),
      all.slice(all.indexOf("b/c/d/3") + 1).filter((p) => !p.startsWith("l/")),
    );
    for (const bad of ["", "/abs", "a/../b", "a//b", "./a", "a/."]) {
      await expectError(
        await f.call(
          `/v1/list?path=${f.q("tree")}&after=${encodeURIComponent(bad)}`,
        ),
        400,
        "bad_request",
      );
    }
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
        ["link_out", "refused"],
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
      // From another address: the shared queue refuses, not the first one's own.
      const busy = await f.call(
        `/v1/hash?path=${f.q("hello.txt")}`,
        {},
        "127.0.0.9",
      );
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
    // A whole 4 GiB file in one job (more than the default hashMaxBytes).
    { limits: { hashJobs: 1, hashQueue: 0, hashMaxBytes: 2 ** 33 } },
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

/** One hostile request target, sent through every endpoint that takes a path. */
interface Attack {
  name: string;
  /** The `path` query value exactly as sent (already percent-encoded). */
  query: string;
  status: number;
  code: string;
  /** When the attack can also be asked as a path relative to the root in a bundle: that path and the code of its error frame. */
  bundle?: [rel: string, code: string];
  /** Which handler: the fixture's (Only_allowed_path = root) or one with no allowed-path or directory rules. */
  open?: boolean;
}

/** Every request that takes a path, for one `path` value; each answers with the same refusal. */
function throughEveryEndpoint(
  query: string,
): Array<[endpoint: string, url: string, init: RequestInit]> {
  const root = new URLSearchParams(`path=${query}`).get("path") ?? "";
  return [
    ["stat", `/v1/stat?path=${query}`, {}],
    ["list", `/v1/list?path=${query}`, {}],
    ["file", `/v1/file?path=${query}`, {}],
    ["file (HEAD)", `/v1/file?path=${query}`, { method: "HEAD" }],
    ["file (Range)", `/v1/file?path=${query}`, {
      headers: { range: "bytes=0-3" },
    }],
    ["hash", `/v1/hash?path=${query}`, {}],
    ["hash (range)", `/v1/hash?path=${query}&offset=0&length=1`, {}],
    ["watch", `/v1/watch?path=${query}&timeout=0`, {}],
    ["bundle root", "/v1/bundle", {
      method: "POST",
      body: JSON.stringify({ root, paths: ["x"] }),
    }],
  ];
}

Deno.test("hostile requests are refused without leaking a secret byte", async (t) => {
  await withFixture(async (f) => {
    const outside = join(f.tmp, "outside");
    const root2 = join(f.tmp, "root2");
    for (const dir of [outside, root2, join(f.root, "blocked")]) {
      await Deno.mkdir(dir);
    }
    await Deno.writeTextFile(join(outside, "secret.txt"), SECRET);
    await Deno.writeTextFile(join(root2, "file.txt"), SECRET);
    await Deno.writeTextFile(join(f.root, "blocked/file.txt"), SECRET);
    await Deno.writeTextFile(join(f.root, "cert.pem"), SECRET);
    await Deno.writeTextFile(join(f.root, "authorized"), SECRET);
    await Deno.symlink(outside, join(f.root, "link_out_dir"));
    await Deno.symlink(root2, join(f.root, "link_root2"));
    await Deno.symlink("loop_b", join(f.root, "loop_a"));
    await Deno.symlink("loop_a", join(f.root, "loop_b"));
    await Deno.symlink(join(f.root, "id_rsa"), join(f.root, "innocent"));
    await Deno.symlink("/dev/zero", join(f.root, "zero_link"));
    await Deno.symlink("/proc/self/environ", join(f.root, "environ_link"));
    await Deno.symlink(
      join(f.hsyncDir, "hsyncd.pid"),
      join(f.root, "state_link"),
    );
    const socketPath = join(f.root, "socket");
    const socket = Deno.listen({ transport: "unix", path: socketPath });

    const strict = await settingsFor(f.hsyncDir, {
      Only_allowed_path: f.root,
      Key_file: f.keyFile,
      Cert_file: join(f.root, "cert-not-matching-any-glob"),
      Authorized_keys: join(f.root, "authorized"),
    });
    strict.forbiddenDir = [...strict.forbiddenDir, join(f.root, "blocked")];
    // No allowed-path and no directory rules: what is left must still refuse devices, pseudo-files and HSYNC_DIR.
    const open = await settingsFor(f.hsyncDir, {
      Only_allowed_path: "",
      Forbidden_dir: "",
      Key_file: f.keyFile,
    });
    const handlers = {
      strict: await createHandler({
        settings: strict,
        hsyncDir: f.hsyncDir,
        hostname: "x",
      }),
      open: await createHandler({
        settings: open,
        hsyncDir: f.hsyncDir,
        hostname: "x",
      }),
    };
    const E = encodeURIComponent;
    const R = (rel: string) => E(join(f.root, rel));
    const attacks: Attack[] = [
      {
        name: "percent-encoded traversal (%2F..%2F)",
        query: `${E(f.root)}%2F..%2Fsecret.txt`,
        status: 403,
        code: "outside_allowed",
      },
      {
        name: "raw traversal in the query",
        query: `${f.root}/../secret.txt`,
        status: 403,
        code: "outside_allowed",
      },
      {
        name: "encoded dot-dot (%2e%2e)",
        query: `${E(f.root)}%2F%2e%2e%2Foutside%2Fsecret.txt`,
        status: 403,
        code: "outside_allowed",
        bundle: ["../outside/secret.txt", "bad_path"],
      },
      {
        name: "deep traversal to /etc/shadow",
        query: `${E(f.root)}${"%2F..".repeat(20)}%2Fetc%2Fshadow`,
        status: 403,
        code: "forbidden_dir",
      },
      {
        name: "double-encoded traversal (%252e%252e%252F) is a literal name",
        query: `${E(f.root)}%2F%252e%252e%252Fsecret.txt`,
        status: 404,
        code: "not_found",
        bundle: ["%2e%2e%2Fsecret.txt", "not_found"],
      },
      {
        name: "double-encoded slash (..%252F) is a literal name",
        query: `${E(f.root)}%2F..%252F..%252Fsecret.txt`,
        status: 404,
        code: "not_found",
      },
      {
        name: "overlong UTF-8 dot-dot (%c0%ae) is a literal name",
        query: `${E(f.root)}%2F%c0%ae%c0%ae%2Fsecret.txt`,
        status: 404,
        code: "not_found",
      },
      {
        name: "backslash traversal is a literal name",
        query: `${E(f.root)}%2F..%5C..%5Csecret.txt`,
        status: 404,
        code: "not_found",
        // One relative-path rule on both sides: hsync never asks for a name
        // with a backslash (it refuses them from a listing).
        bundle: ["..\\..\\secret.txt", "bad_path"],
      },
      {
        name: "NUL byte truncation",
        query: `${R("hello.txt")}%00.png`,
        status: 400,
        code: "bad_path",
        bundle: ["hello.txt\0.png", "bad_path"],
      },
      {
        name: "NUL byte alone",
        query: "%00",
        status: 400,
        code: "bad_path",
      },
      {
        name: "relative path",
        query: "etc%2Fpasswd",
        status: 400,
        code: "bad_path",
      },
      {
        name: "empty path",
        query: "",
        status: 400,
        code: "bad_path",
      },
      {
        name: "very long path (over PATH_MAX)",
        query: R("a/".repeat(2100)),
        status: 400,
        code: "bad_path",
      },
      {
        name: "very long file name (over NAME_MAX)",
        query: R("n".repeat(300)),
        status: 400,
        code: "bad_path",
        bundle: ["n".repeat(300), "bad_path"],
      },
      {
        name: "symlink to a file outside",
        query: R("link_out"),
        status: 403,
        code: "refused",
        bundle: ["link_out", "refused"],
      },
      {
        name: "symlink to a directory outside",
        query: R("link_out_dir"),
        status: 403,
        code: "refused",
      },
      {
        name: "file through a symlinked directory outside",
        query: R("link_out_dir/secret.txt"),
        status: 403,
        code: "refused",
        bundle: ["link_out_dir/secret.txt", "refused"],
      },
      {
        name: "existence probe through a symlinked directory outside",
        query: R("link_out_dir/no-such-file"),
        status: 403,
        code: "refused",
        bundle: ["link_out_dir/no-such-file", "refused"],
      },
      {
        name: "symlink loop",
        query: R("loop_a"),
        status: 404,
        code: "not_found",
        bundle: ["loop_a", "not_found"],
      },
      {
        name: "path through a symlink loop",
        query: R("loop_a/x"),
        status: 404,
        code: "not_found",
      },
      {
        name: "allowed-path prefix confusion (root vs root2)",
        query: E(join(root2, "file.txt")),
        status: 403,
        code: "outside_allowed",
      },
      {
        name: "allowed-path prefix confusion through a symlink",
        query: R("link_root2/file.txt"),
        status: 403,
        code: "refused",
        bundle: ["link_root2/file.txt", "refused"],
      },
      {
        name: "absolute path outside the root",
        query: E(join(outside, "secret.txt")),
        status: 403,
        code: "outside_allowed",
      },
      {
        name: "forbidden name pattern (id_rsa*)",
        query: R("id_rsa"),
        status: 403,
        code: "forbidden_file",
        bundle: ["id_rsa", "forbidden_file"],
      },
      {
        name: "forbidden name pattern (*.pem)",
        query: R("cert.pem"),
        status: 403,
        code: "forbidden_file",
        bundle: ["cert.pem", "forbidden_file"],
      },
      {
        name: "forbidden name that does not exist (no existence oracle)",
        query: R("id_ed25519"),
        status: 403,
        code: "forbidden_file",
        bundle: ["id_ed25519", "forbidden_file"],
      },
      {
        name: "innocent-looking symlink to a forbidden name",
        query: R("innocent"),
        status: 403,
        code: "refused",
        bundle: ["innocent", "refused"],
      },
      {
        name: "forbidden directory by name (.ssh)",
        query: R(".ssh/known_hosts"),
        status: 403,
        code: "forbidden_dir",
        bundle: [".ssh/known_hosts", "forbidden_dir"],
      },
      {
        name: "forbidden directory by name, itself",
        query: R(".ssh"),
        status: 403,
        code: "forbidden_dir",
      },
      {
        name: "forbidden directory by absolute path",
        query: R("blocked/file.txt"),
        status: 403,
        code: "forbidden_dir",
        bundle: ["blocked/file.txt", "forbidden_dir"],
      },
      {
        name: "/etc/shadow",
        query: E("/etc/shadow"),
        status: 403,
        code: "forbidden_dir",
      },
      {
        name: "FIFO (must not hang)",
        query: R("fifo"),
        status: 403,
        code: "not_regular",
        bundle: ["fifo", "not_regular"],
      },
      {
        name: "Unix socket",
        query: R("socket"),
        status: 403,
        code: "not_regular",
        bundle: ["socket", "not_regular"],
      },
      {
        name: "symlink to a device (/dev is a Forbidden_dir)",
        query: R("zero_link"),
        status: 403,
        code: "refused",
        bundle: ["zero_link", "refused"],
      },
      {
        name: "device with no directory rule (/dev/zero)",
        query: E("/dev/zero"),
        status: 403,
        code: "not_regular",
        open: true,
      },
      {
        name: "device with no directory rule (/dev/null)",
        query: E("/dev/null"),
        status: 403,
        code: "not_regular",
        open: true,
      },
      {
        name: "/proc file (/proc/self/environ)",
        query: E("/proc/self/environ"),
        status: 403,
        code: "not_regular",
        open: true,
      },
      {
        name: "/proc link out (/proc/self/root)",
        query: E(`/proc/self/root${join(outside, "secret.txt")}`),
        status: 403,
        code: "not_regular",
        open: true,
      },
      {
        name: "/sys file",
        query: E("/sys/kernel/mm"),
        status: 403,
        code: "not_regular",
        open: true,
      },
      {
        name: "symlink to a /proc file",
        query: R("environ_link"),
        status: 403,
        code: "refused",
        bundle: ["environ_link", "refused"],
      },
      {
        name: "HSYNC_DIR",
        query: E(f.hsyncDir),
        status: 403,
        code: "forbidden",
      },
      {
        name: "pidfile in HSYNC_DIR",
        query: E(join(f.hsyncDir, "hsyncd.pid")),
        status: 403,
        code: "forbidden",
        bundle: ["state-dir/hsyncd.pid", "forbidden"],
      },
      {
        name: "HSYNC_DIR with no other rule",
        query: E(join(f.hsyncDir, "hsyncd.pid")),
        status: 403,
        code: "forbidden",
        open: true,
      },
      {
        name: "symlink into HSYNC_DIR",
        query: R("state_link"),
        status: 403,
        code: "refused",
        bundle: ["state_link", "refused"],
      },
      {
        name: "the server's key file",
        query: E(f.keyFile),
        status: 403,
        code: "forbidden",
        bundle: ["server-private.bin", "forbidden"],
      },
      {
        name: "the server's authorized-keys file",
        query: R("authorized"),
        status: 403,
        code: "forbidden",
        bundle: ["authorized", "forbidden"],
      },
    ];

    let cases = 0;
    const check = async (response: Response, a: Attack, what: string) => {
      const text = await response.text();
      assert.equal(response.status, a.status, `${what}: ${text}`);
      assert.ok(!text.includes(SECRET), `${what} leaked a secret byte`);
      // Messages echo the path as asked, never the path a symlink led to.
      const asked = new URLSearchParams(`path=${a.query}`).get("path") ?? "";
      if (!posix.normalize(asked).includes(outside)) {
        assert.ok(!text.includes(outside), `${what} leaked a real path`);
      }
      if (
        response.headers.get("content-type")?.startsWith("application/json")
      ) {
        const body = JSON.parse(text) as ErrorBody;
        assert.equal(body.error, a.code, `${what}: ${text}`);
        assert.ok(!body.message.includes("    at "));
      } else {
        assert.equal(text, "", `${what}: HEAD has no body`);
      }
      cases++;
    };
    for (const a of attacks) {
      await t.step(a.name, async () => {
        const handler = a.open ? handlers.open : handlers.strict;
        for (const [endpoint, url, init] of throughEveryEndpoint(a.query)) {
          const res = await handler(
            new Request(`http://localhost${url}`, init),
            fakeInfo("127.0.0.1"),
          );
          await check(res, a, `${endpoint} ${url.slice(0, 120)}`);
        }
        if (a.bundle !== undefined) {
          const [rel, code] = a.bundle;
          const res = await handler(
            new Request("http://localhost/v1/bundle", {
              method: "POST",
              body: JSON.stringify({ root: f.root, paths: [rel] }),
            }),
            fakeInfo("127.0.0.1"),
          );
          assert.equal(res.status, 200);
          const frames = [];
          for await (const frame of decodeFrames(res.body!)) frames.push(frame);
          assert.equal(frames.length, 1);
          assert.equal(
            (frames[0].header as { error?: string }).error,
            code,
            JSON.stringify(frames),
          );
          assert.equal(frames[0].data.length, 0);
          assert.ok(!JSON.stringify(frames[0].header).includes(SECRET));
          cases++;
        }
      });
    }

    await t.step(
      "the listing of the root never names refused entries",
      async () => {
        const res = await handlers.strict(
          new Request(`http://localhost/v1/list?path=${E(f.root)}`),
          fakeInfo("127.0.0.1"),
        );
        const text = await res.text();
        assert.equal(res.status, 200);
        assert.ok(text.includes('"hello.txt"'), "the listing works");
        for (
          const name of [
            "id_rsa",
            ".ssh",
            "state-dir",
            "server-private.bin",
            "link_out",
            "link_out_dir",
            "link_root2",
            "cert.pem",
            "authorized",
            "blocked",
            "innocent",
            "fifo",
            "socket",
            "zero_link",
            "environ_link",
            "state_link",
            "loop_a",
            "loop_b",
            '"loop',
            SECRET,
          ]
        ) {
          assert.ok(!text.includes(name), name);
        }
        cases++;
      },
    );
    await t.step(
      "a symlink loop back to the root is listed once, not forever",
      async () => {
        const res = await handlers.strict(
          new Request(`http://localhost/v1/list?path=${R("loop/loop/loop")}`),
          fakeInfo("127.0.0.1"),
        );
        const text = await res.text();
        assert.equal(res.status, 200);
        assert.ok(!text.includes(SECRET) && !text.includes("id_rsa"));
        assert.equal(text.split('"path":"hello.txt"').length, 2);
        cases++;
      },
    );
    socket.close();
    // Every case ran (the closing note of issue 4 reports this count: 440).
    const endpoints = throughEveryEndpoint("").length;
    const bundled = attacks.filter((a) => a.bundle !== undefined).length;
    assert.equal(cases, attacks.length * endpoints + bundled + 2);
  });
});

Deno.test("GET /v1/list never lists a directory that was swapped for a symlink while the listing streamed", async () => {
  await withFixture(async (f) => {
    const outside = join(f.tmp, "outside");
    await Deno.mkdir(outside);
    await Deno.writeTextFile(join(outside, "outside-name.txt"), SECRET);
    const res = await f.call(`/v1/list?path=${f.q("")}`);
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    // The first chunk is the root's own entries; "nested" is still to be entered.
    let text = dec.decode((await reader.read()).value);
    assert.ok(text.includes('"path":"nested"'));
    assert.ok(!text.includes('"nested/deep"'));
    await Deno.rename(join(f.root, "nested"), join(f.tmp, "nested_old"));
    await Deno.symlink(outside, join(f.root, "nested"));
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      text += dec.decode(value);
    }
    assert.ok(!text.includes("outside-name.txt"), text);
    assert.ok(!text.includes(SECRET));
  });
});

Deno.test("oversized request targets and headers get 414 and 431 before any path work", async () => {
  await withFixture(
    async (f) => {
      const longTarget = `/v1/stat?path=${f.q("hello.txt")}&pad=${
        "x".repeat(2000)
      }`;
      await expectError(await f.call(longTarget), 414, "uri_too_long");
      // Refused before the jail: a NUL path in an oversized target is still a 414.
      await expectError(
        await f.call(`/v1/stat?path=%00&pad=${"x".repeat(2000)}`),
        414,
        "uri_too_long",
      );
      await expectError(
        await f.call(`/v1/stat?path=${f.q("hello.txt")}`, {
          headers: { "x-junk": "y".repeat(1100) },
        }),
        431,
        "headers_too_large",
      );
      const many = new Headers();
      for (let i = 0; i < 200; i++) many.set(`x-h${i}`, "v");
      await expectError(
        await f.call(`/v1/stat?path=${f.q("hello.txt")}`, { headers: many }),
        431,
        "headers_too_large",
      );
      const fine = await f.call(`/v1/stat?path=${f.q("hello.txt")}`);
      assert.equal(fine.status, 200);
      await fine.body?.cancel();
    },
    {},
    { limits: { maxUrlBytes: 1024, maxHeaderBytes: 1024 } },
  );
});

Deno.test("a saturated server answers 503 busy with Retry-After until a request completes", async () => {
  await withFixture(
    async (f) => {
      const finishers: Array<() => void> = [];
      const held = () => {
        let done!: () => void;
        const completed = new Promise<void>((r) => done = r);
        finishers.push(done);
        return { ...fakeInfo("127.0.0.1"), completed };
      };
      const get = () =>
        f.handler(
          new Request(`http://localhost/v1/stat?path=${f.q("hello.txt")}`),
          held(),
        );
      for (let i = 0; i < 2; i++) {
        const r = await get();
        assert.equal(r.status, 200);
        await r.body?.cancel();
      }
      const busy = await get();
      assert.equal(busy.headers.get("retry-after"), "1");
      await expectError(busy, 503, "busy");
      // The refused one completes too, then one of the first two.
      finishers[2]();
      finishers[0]();
      await Promise.resolve();
      await new Promise((r) => setTimeout(r, 0));
      const again = await get();
      assert.equal(again.status, 200);
      await again.body?.cancel();
      for (const finish of finishers) finish();
    },
    {},
    { limits: { maxRequests: 2 } },
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

Deno.test("whole files and ranges to the end are streamed natively, other ranges through JavaScript", async () => {
  await withFixture(async (f) => {
    const size = 2 * 1024 * 1024;
    const data = new Uint8Array(size);
    for (let i = 0; i < size; i++) data[i] = (i * 13 + (i >> 10)) & 0xff;
    await Deno.writeFile(join(f.root, "n.bin"), data);
    const get = async (range?: string) => {
      const res = await f.call(`/v1/file?path=${f.q("n.bin")}`, {
        headers: range === undefined ? {} : { range },
      });
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
    const whole = await get();
    assert.equal(whole.first, 64 * 1024);
    assert.deepEqual(whole.all, data);
    const tail = await get(`bytes=${size - 300_000}-`);
    assert.equal(tail.first, 64 * 1024);
    assert.deepEqual(tail.all, data.subarray(size - 300_000));
    const middle = await get(`bytes=1000-${size - 2}`);
    assert.equal(middle.first, 512 * 1024);
    assert.deepEqual(middle.all, data.subarray(1000, size - 1));
  });
});

Deno.test("range bodies short of the end read large chunks when few stream at once, smaller ones when many do, and count themselves out", async () => {
  await withFixture(async (f) => {
    const size = 2 * 1024 * 1024;
    const data = new Uint8Array(size);
    for (let i = 0; i < size; i++) data[i] = (i * 7 + (i >> 12)) & 0xff;
    // One byte more on disk: the ranges below stop short of the end, so they
    // stream through JavaScript (a body to the end of the file goes natively).
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
    assert.ok(firsts.some((c) => c.length === 128 * 1024));
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

Deno.test("with authentication on, a request body is checked against its signature before it is read, and a refused one is dropped, never kept", async () => {
  const keys = await generateKeys("t");
  const real = await createVerifier(
    parseAuthorizedKeys(keys.publicLine, "ak"),
  );
  let pulled = 0;
  let pulledAtVerdict = -1;
  const verifier: typeof real = async (...args) => {
    pulledAtVerdict = pulled;
    return await real(...args);
  };
  const chunk = 64 * 1024;
  const maxBody = 1024 * 1024;
  await withFixture(
    async (f) => {
      for (
        const headers of <Array<Record<string, string>>> [
          {},
          { authorization: "HSync-Ed25519 key=x, ts=1, nonce=y, sig=z" },
          { [BODY_DIGEST_HEADER]: "0".repeat(64), authorization: "Basic eA==" },
        ]
      ) {
        pulled = 0;
        pulledAtVerdict = -1;
        // An endless body: only a bounded drain after the refusal ends it.
        const body = new ReadableStream<Uint8Array>({
          pull(controller) {
            pulled++;
            controller.enqueue(new Uint8Array(chunk));
          },
        }, { highWaterMark: 0 });
        await expectError(
          await f.call("/v1/bundle", { method: "POST", body, headers }),
          401,
          "unauthorized",
        );
        assert.ok(pulledAtVerdict <= 0, `${pulledAtVerdict} chunks read first`);
        assert.ok(pulled * chunk <= maxBody + 2 * chunk, `${pulled} chunks`);
      }
    },
    {},
    { verifier, limits: { bundleMaxBodyBytes: maxBody } },
  );
});

Deno.test("for any path and Range, the server refuses or serves bytes from inside the root, never a secret", async () => {
  await withFixture(async (f) => {
    const segment = fc.constantFrom(
      "..",
      ".",
      "",
      "%2e%2e",
      "%00",
      "\0",
      "hello.txt",
      "nested",
      "deep",
      "leaf.txt",
      "link_out",
      "link_in_dir",
      "loop",
      "id_rsa",
      ".ssh",
      "known_hosts",
      "state-dir",
      "hsyncd.pid",
      "server-private.bin",
      "secret.txt",
      "fifo",
      "root",
    );
    const prefix = fc.constantFrom(f.root, f.tmp, "/", "", "/proc/self");
    const range = fc.oneof(
      fc.constant(null),
      fc.string({ maxLength: 20 }),
      fc.tuple(fc.nat(400_000), fc.nat(400_000)).map(([a, b]) =>
        `bytes=${a}-${b}`
      ),
      fc.nat(400_000).map((n) => `bytes=-${n}`),
    );
    const endpoint = fc.constantFrom("stat", "file", "hash", "list");
    await fc.assert(
      fc.asyncProperty(
        prefix,
        fc.array(fc.oneof(segment, fc.string({ maxLength: 4 })), {
          maxLength: 7,
        }),
        range,
        endpoint,
        async (p, segments, rangeHeader, ep) => {
          const path = [p, ...segments].join("/");
          const headers = new Headers();
          if (rangeHeader !== null) {
            try {
              headers.set("range", rangeHeader);
            } catch {
              // Not a valid header value: no Range at all.
            }
          }
          const res = await f.call(
            `/v1/${ep}?path=${encodeURIComponent(path)}`,
            { headers },
          );
          const bytes = new Uint8Array(await res.arrayBuffer());
          const text = new TextDecoder().decode(bytes);
          assert.ok(
            [200, 206, 400, 403, 404, 409, 416].includes(res.status),
            `${res.status} for ${JSON.stringify(path)}: ${text.slice(0, 200)}`,
          );
          assert.ok(!text.includes(SECRET), `secret for ${path}`);
        },
      ),
      { numRuns: 300 },
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

Deno.test("listings beyond listJobs wait in line, and one past listQueue gets 503 busy", async () => {
  await withFixture(
    async (f) => {
      for (let i = 0; i < 600; i++) {
        await Deno.writeTextFile(join(f.root, `many-${i}.txt`), "x");
      }
      const first = await f.call(`/v1/list?path=${f.q("")}`);
      assert.equal(first.status, 200);
      const reader = first.body!.getReader();
      assert.ok(!(await reader.read()).done);
      // The first holds the only slot (its body is not finished): the second waits.
      let secondDone = false;
      const second = f.call(`/v1/list?path=${f.q("")}`).then((r) => {
        secondDone = true;
        return r;
      });
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(secondDone, false);
      await expectError(await f.call(`/v1/list?path=${f.q("")}`), 503, "busy");
      await reader.cancel();
      const res = await second;
      assert.equal(res.status, 200);
      const text = await res.text();
      assert.ok(text.includes('"path":"many-599.txt"'));
    },
    {},
    {
      limits: { listJobs: 1, listQueue: 1, peerListings: 1, peerListQueue: 1 },
    },
  );
});

Deno.test("readDirectory() reads a directory once for listings that share a cache, and again once it changes", async () => {
  await withFixture(async (f) => {
    const dir = join(f.root, "big");
    await Deno.mkdir(dir);
    for (let i = 0; i < 5000; i++) {
      Deno.writeFileSync(join(dir, `n-${i}`), new Uint8Array());
    }
    const { createPathGuard } = await import(
      "../lib/server/jail/path_guard.ts"
    );
    const guard = await createPathGuard({ onlyAllowedPath: [f.root] });
    const checked = await guard.check(dir);
    const cache = new DirectoryReads();
    const a = guard.readDirectory(checked, cache);
    const b = guard.readDirectory(checked, cache);
    assert.equal(a?.length, 5000);
    // The very same array: the second listing did not read the directory.
    assert.ok(a === b);
    // A new name changes the directory's times: it is read again.
    await new Promise((r) => setTimeout(r, 5));
    await Deno.writeTextFile(join(dir, "zz-new"), "");
    const c = guard.readDirectory(checked, cache);
    assert.ok(c !== a);
    assert.equal(c?.at(-1), "zz-new");
    // Without a cache every call reads.
    assert.ok(guard.readDirectory(checked) !== guard.readDirectory(checked));
  });
});

Deno.test("DirectoryReads runs reads one at a time and leaves the event loop free after a long one", async () => {
  const reads = new DirectoryReads();
  const busy = (ms: number) => {
    const end = performance.now() + ms;
    while (performance.now() < end) { /* a long synchronous read */ }
    return performance.now();
  };
  let timerRan = 0;
  const firstEnd = reads.run(() => busy(40));
  const secondStart = reads.run(() => performance.now());
  setTimeout(() => timerRan = performance.now(), 0);
  const [end1, start2] = await Promise.all([firstEnd, secondStart]);
  assert.ok(
    start2 - end1 >= 35,
    `the next read started ${start2 - end1} ms after`,
  );
  // Something else got the event loop in between.
  assert.ok(timerRan > end1 && timerRan < start2);
});
