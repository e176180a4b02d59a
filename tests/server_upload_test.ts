/** Tests of the push endpoints of hsyncd (lib/server/endpoints/upload.ts, commit.ts, upload_bundle.ts, mkdir.ts, lib/server/uploads.ts), in process. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { encodeFrames } from "../lib/shared/bundle_codec.ts";
import { ConfigError } from "../lib/shared/errors.ts";
import type {
  CommitResult,
  LockLease,
  UploadBundleHeader,
  UploadBundleResult,
  UploadStatus,
} from "../lib/shared/wire.ts";
import { createHandler } from "../lib/server/handler.ts";
import { keptBodyBytes } from "../lib/server/body_buffers.ts";
import { ServerNames } from "../lib/server/server_names.ts";
import {
  bodyDigest,
  createVerifier,
  generateKeys,
  loadIdentity,
  parseAuthorizedKeys,
  signRequest,
} from "../lib/shared/auth.ts";
import { BODY_DIGEST_HEADER } from "../lib/shared/wire.ts";
import {
  expectError,
  fakeInfo,
  type Fixture,
  settingsFor,
  withFixture,
} from "./_server_fixture.ts";

const WRITABLE = { Host_ip: "127.0.0.1", Writable_path: "@root" };

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** `PUT /v1/upload` of `bytes[start, end)` of a file of `bytes.length`. */
function put(
  f: Fixture,
  rel: string,
  bytes: Uint8Array,
  start: number,
  end: number,
  options: { source?: string; session?: string; restart?: boolean } = {},
  call: Fixture["call"] = f.call,
): Promise<Response> {
  const query = new URLSearchParams({
    path: join(f.root, rel),
    size: String(bytes.length),
    source: options.source ?? "src-1",
  });
  if (options.restart) query.set("restart", "1");
  return call(`/v1/upload?${query}`, {
    method: "PUT",
    headers: {
      "content-range": `bytes ${start}-${end - 1}/${bytes.length}`,
      "content-length": String(end - start),
      "x-hsync-upload-session": options.session ?? "session-a",
    },
    body: bytes.slice(start, end),
  });
}

function commit(
  f: Fixture,
  rel: string,
  body: Record<string, unknown>,
  session = "session-a",
): Promise<Response> {
  return f.call(
    `/v1/upload/commit?path=${encodeURIComponent(join(f.root, rel))}`,
    {
      method: "POST",
      headers: { "x-hsync-upload-session": session },
      body: JSON.stringify({ source: "src-1", mode: 0o640, ...body }),
    },
  );
}

/** The fixture's handler behind a `Deno.serve` on a loopback port (real connections, real bodies), and a `call` through it. */
function overLoopback(f: Fixture): {
  server: Deno.HttpServer<Deno.NetAddr>;
  call: Fixture["call"];
} {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request, info) => f.handler(request, info),
  );
  const call: Fixture["call"] = (path, init) =>
    fetch(`http://127.0.0.1:${server.addr.port}${path}`, init);
  return { server, call };
}

const DATA: Uint8Array<ArrayBuffer> = new Uint8Array(200_000).map((_, i) =>
  (i * 13 + (i >> 7)) & 255
);

Deno.test("a file pushed in ranges, out of order, is held as it arrives and committed with its mode and time", async () => {
  await withFixture(async (f) => {
    await Deno.mkdir(join(f.root, "in"));
    assert.equal(
      (await put(f, "in/a.bin", DATA, 100_000, 200_000)).status,
      200,
    );
    const status = await (await f.call(
      `/v1/upload?path=${f.q("in/a.bin")}`,
    )).json() as UploadStatus;
    assert.deepEqual(status, {
      size: DATA.length,
      source: "src-1",
      held: [[100_000, 200_000]],
    });
    // Not complete: no final name yet.
    await expectError(
      await commit(f, "in/a.bin", {
        size: DATA.length,
        mtime: 1_700_000_000_000,
      }),
      409,
      "incomplete",
    );
    assert.throws(() => Deno.statSync(join(f.root, "in/a.bin")));
    assert.equal((await put(f, "in/a.bin", DATA, 0, 100_000)).status, 200);
    const res = await commit(f, "in/a.bin", {
      size: DATA.length,
      mtime: 1_700_000_000_000,
      sha256: sha256(DATA),
    });
    assert.equal(res.status, 200, await res.clone().text());
    const result = await res.json() as CommitResult;
    assert.equal(result.sha256, sha256(DATA));
    assert.deepEqual(await Deno.readFile(join(f.root, "in/a.bin")), DATA);
    const info = await Deno.stat(join(f.root, "in/a.bin"));
    assert.equal(info.mtime?.getTime(), 1_700_000_000_000);
    assert.equal((info.mode ?? 0) & 0o777, 0o640 & ~Deno.umask());
    assert.deepEqual(
      [...Deno.readDirSync(join(f.root, "in"))].map((e) => e.name),
      ["a.bin"],
    );
    await expectError(
      await f.call(`/v1/upload?path=${f.q("in/a.bin")}`),
      404,
      "not_found",
    );
  }, WRITABLE);
});

Deno.test("a PUT with commit=1 commits the upload when its range completes it, with the time (to the millisecond) and mode it carries; one that does not only writes", async () => {
  await withFixture(async (f) => {
    await Deno.mkdir(join(f.root, "in"));
    const path = join(f.root, "in/c.bin");
    const committing = (
      start: number,
      end: number,
      more: Record<string, string> = {},
    ) => {
      const query = new URLSearchParams({
        path,
        size: String(DATA.length),
        source: "src-1",
        commit: "1",
        mtime: "1796578193554",
        mode: String(0o640),
        ...more,
      });
      return f.call(`/v1/upload?${query}`, {
        method: "PUT",
        headers: {
          "content-range": `bytes ${start}-${end - 1}/${DATA.length}`,
          "x-hsync-upload-session": "session-a",
        },
        body: DATA.slice(start, end),
      });
    };
    const first = await committing(100_000, 200_000);
    assert.equal(first.status, 200);
    assert.equal("committed" in await first.json(), false);
    assert.throws(() => Deno.statSync(path));
    const last = await committing(0, 100_000);
    assert.equal(last.status, 200);
    const answer = await last.json() as UploadStatus;
    assert.equal(answer.committed?.type, "file");
    assert.equal(answer.committed?.size, DATA.length);
    assert.equal(answer.committed?.mtime, 1_796_578_193_554);
    assert.deepEqual(await Deno.readFile(path), DATA);
    const info = await Deno.stat(path);
    assert.equal(info.mtime?.getTime(), 1_796_578_193_554);
    assert.equal((info.mode ?? 0) & 0o777, 0o640 & ~Deno.umask());
    assert.deepEqual(
      [...Deno.readDirSync(join(f.root, "in"))].map((e) => e.name),
      ["c.bin"],
    );
    await expectError(
      await f.call(`/v1/upload?path=${f.q("in/c.bin")}`),
      404,
      "not_found",
    );
    const bads: Array<Record<string, string>> = [
      { commit: "2" },
      { mode: "70000" },
      { mtime: "soon" },
    ];
    for (const bad of bads) {
      await expectError(await committing(0, 10, bad), 400, "bad_request");
    }
    const noTime = await f.call(
      `/v1/upload?path=${f.q("in/d.bin")}&size=3&source=s&commit=1&mode=420`,
      {
        method: "PUT",
        headers: { "content-range": "bytes 0-2/3" },
        body: new Uint8Array(3),
      },
    );
    await expectError(noTime, 400, "bad_request");
    assert.throws(() => Deno.statSync(join(f.root, "in/d.bin")));
  }, WRITABLE);
});

Deno.test("POST /v1/lock?stat=1 tells what is held of an upload to the path, as GET /v1/upload would: its ranges, null for none, nothing for a directory", async () => {
  await withFixture(async (f) => {
    await Deno.mkdir(join(f.root, "in"));
    assert.equal((await put(f, "in/a.bin", DATA, 0, 50_000)).status, 200);
    const leased = async (rel: string) => {
      const r = await f.call(`/v1/lock?path=${f.q(rel)}&stat=1`, {
        method: "POST",
      });
      assert.equal(r.status, 200);
      const lease = await r.json() as LockLease;
      // Given back at once: the next asks about a path inside or around it.
      const back = await f.call(
        `/v1/lock?path=${f.q(rel)}&token=${lease.token}&release=1`,
        { method: "POST" },
      );
      assert.equal(back.status, 200);
      await back.body?.cancel();
      return lease;
    };
    const held = await leased("in/a.bin");
    assert.equal(held.entry, null);
    assert.deepEqual(
      held.upload,
      await (await f.call(`/v1/upload?path=${f.q("in/a.bin")}`)).json(),
    );
    assert.deepEqual(held.upload, {
      size: DATA.length,
      source: "src-1",
      held: [[0, 50_000]],
    });
    assert.equal((await leased("in/b.bin")).upload, null);
    assert.equal("upload" in await leased("in"), false);
  }, WRITABLE);
});

Deno.test("ranges of four files pushed eight at a time through Deno.serve land exact: their bodies' buffers are used again, never two at once", async () => {
  await withFixture(async (f) => {
    await Deno.mkdir(join(f.root, "in"));
    const { server, call } = overLoopback(f);
    try {
      const MiB = 1024 * 1024;
      const files = Array.from(
        { length: 4 },
        (_, k) =>
          new Uint8Array(6 * MiB + k).map((_, i) =>
            (i * 31 + k * 101 + (i >> 12)) & 255
          ),
      );
      // Six ranges of about 1 MiB per file (kept buffers are 1 MiB and up).
      const jobs = files.flatMap((bytes, k) =>
        Array.from({ length: 6 }, (_, r) => ({
          k,
          start: Math.floor(r * bytes.length / 6),
          end: Math.floor((r + 1) * bytes.length / 6),
        }))
      );
      keptBodyBytes();
      for (let i = 0; i < jobs.length; i += 8) {
        const answers = await Promise.all(
          jobs.slice(i, i + 8).map(({ k, start, end }) =>
            put(f, `in/f${k}.bin`, files[k], start, end, {
              session: `s${k}`,
            }, call)
          ),
        );
        for (const answer of answers) {
          assert.equal(answer.status, 200, await answer.text());
        }
      }
      assert.ok(keptBodyBytes() > 0, "bodies were read into kept buffers");
      for (const [k, bytes] of files.entries()) {
        const res = await commit(f, `in/f${k}.bin`, {
          size: bytes.length,
          mtime: 1_700_000_000_000,
          sha256: sha256(bytes),
        }, `s${k}`);
        assert.equal(res.status, 200, await res.clone().text());
        await res.body?.cancel();
        assert.deepEqual(
          await Deno.readFile(join(f.root, `in/f${k}.bin`)),
          bytes,
        );
      }
    } finally {
      await server.shutdown();
    }
  }, WRITABLE);
});

Deno.test("a range cut off in its body keeps the bytes that reached the part: the upload holds them, and the push goes on after them", async () => {
  await withFixture(async (f) => {
    const { server, call } = overLoopback(f);
    try {
      const MiB = 1024 * 1024;
      const bytes = new Uint8Array(4 * MiB).map((_, i) =>
        (i * 7 + (i >> 11)) & 255
      );
      const query = new URLSearchParams({
        path: join(f.root, "cut.bin"),
        size: String(bytes.length),
        source: "src-1",
      });
      // Half the body, then the connection is gone (a client killed).
      const conn = await Deno.connect({
        hostname: "127.0.0.1",
        port: server.addr.port,
      });
      const head = `PUT /v1/upload?${query} HTTP/1.1\r\nhost: 127.0.0.1\r\n` +
        `content-length: ${bytes.length}\r\n` +
        `content-range: bytes 0-${bytes.length - 1}/${bytes.length}\r\n` +
        `x-hsync-upload-session: session-a\r\n\r\n`;
      await conn.write(new TextEncoder().encode(head));
      const sent = 2 * MiB + 12345;
      for (let at = 0; at < sent;) {
        at += await conn.write(bytes.subarray(at, sent));
      }
      await new Promise((done) => setTimeout(done, 300));
      conn.close();
      await new Promise((done) => setTimeout(done, 200));
      const res = await call(`/v1/upload?path=${f.q("cut.bin")}`);
      assert.equal(res.status, 200, await res.clone().text());
      const held = (await res.json() as UploadStatus).held;
      assert.equal(held.length, 1, JSON.stringify(held));
      const [[from, to]] = held;
      assert.equal(from, 0);
      assert.ok(to > 0 && to <= sent, `held up to ${to} of ${sent} sent`);
      const part = await Deno.readFile(join(f.root, "cut.bin.hsync-part"));
      assert.deepEqual(part.subarray(0, to), bytes.subarray(0, to));
      // The rest goes after it, and the file commits whole.
      const rest = await put(f, "cut.bin", bytes, to, bytes.length, {}, call);
      assert.equal(rest.status, 200, await rest.text());
      const done = await commit(f, "cut.bin", {
        size: bytes.length,
        mtime: 1_700_000_000_000,
        sha256: sha256(bytes),
      });
      assert.equal(done.status, 200, await done.clone().text());
      await done.body?.cancel();
      assert.deepEqual(await Deno.readFile(join(f.root, "cut.bin")), bytes);
    } finally {
      await server.shutdown();
    }
  }, WRITABLE);
});

Deno.test("a range whose Content-Length is not its Content-Range's length, or whose body is longer, writes nothing (400)", async () => {
  await withFixture(async (f) => {
    const query = new URLSearchParams({
      path: join(f.root, "len.bin"),
      size: String(DATA.length),
      source: "src-1",
    });
    const sent = await f.call(`/v1/upload?${query}`, {
      method: "PUT",
      headers: {
        "content-range": `bytes 0-999/${DATA.length}`,
        "content-length": "1001",
        "x-hsync-upload-session": "session-a",
      },
      body: DATA.slice(0, 1001),
    });
    await expectError(sent, 400, "bad_request");
    // A body (of unknown length) with a byte more than its range.
    const longer = await f.call(`/v1/upload?${query}`, {
      method: "PUT",
      headers: {
        "content-range": `bytes 0-999/${DATA.length}`,
        "x-hsync-upload-session": "session-a",
      },
      body: ReadableStream.from([DATA.slice(0, 600), DATA.slice(600, 1001)]),
    });
    await expectError(longer, 400, "bad_request");
    const status = await f.call(`/v1/upload?path=${f.q("len.bin")}`);
    const held = status.status === 404
      ? []
      : (await status.json() as UploadStatus).held;
    assert.deepEqual(held, []);
  }, WRITABLE);
});

Deno.test("what an upload holds survives a restart of hsyncd (the journal), and another version of the file starts over only when asked", async () => {
  await withFixture(async (f) => {
    assert.equal((await put(f, "r.bin", DATA, 0, 50_000)).status, 200);
    // A status flushes what was written and records it in the journal.
    assert.deepEqual(
      (await (await f.call(`/v1/upload?path=${f.q("r.bin")}`))
        .json() as UploadStatus).held,
      [[0, 50_000]],
    );
    // A new handler: nothing in memory, the journal beside the part tells.
    const settings = await settingsFor(f.hsyncDir, {
      Only_allowed_path: f.root,
      Host_ip: "127.0.0.1",
      Writable_path: f.root,
    });
    const again = await createHandler({
      settings,
      hsyncDir: f.hsyncDir,
      hostname: "h",
    });
    const status = await (await again(
      new Request(`http://localhost/v1/upload?path=${f.q("r.bin")}`),
      fakeInfo("127.0.0.1"),
    )).json() as UploadStatus;
    assert.deepEqual(status.held, [[0, 50_000]]);
    // The same path from another version of the file: refused, then restarted.
    await expectError(
      await put(f, "r.bin", DATA, 50_000, 60_000, { source: "src-2" }),
      409,
      "source_changed",
    );
    const restarted = await put(f, "r.bin", DATA, 50_000, 60_000, {
      source: "src-2",
      restart: true,
    });
    assert.equal(restarted.status, 200, await restarted.clone().text());
    await restarted.body?.cancel();
    const now = await (await f.call(`/v1/upload?path=${f.q("r.bin")}`))
      .json() as UploadStatus;
    assert.deepEqual(now, {
      size: DATA.length,
      source: "src-2",
      held: [[50_000, 60_000]],
    });
  }, WRITABLE);
});

Deno.test("two pushes of one path at once: the second gets 409 upload_in_progress and no mixed file", async () => {
  await withFixture(async (f) => {
    assert.equal((await put(f, "c.bin", DATA, 0, 1000)).status, 200);
    await expectError(
      await put(f, "c.bin", DATA, 1000, 2000, { session: "session-b" }),
      409,
      "upload_in_progress",
    );
    await expectError(
      await commit(f, "c.bin", { size: DATA.length, mtime: 0 }, "session-b"),
      409,
      "upload_in_progress",
    );
    const status = await (await f.call(`/v1/upload?path=${f.q("c.bin")}`))
      .json() as UploadStatus;
    assert.deepEqual(status.held, [[0, 1000]]);
  }, WRITABLE);
});

Deno.test("a commit whose SHA-256 differs drops the upload (422) and names nothing", async () => {
  await withFixture(async (f) => {
    assert.equal((await put(f, "v.bin", DATA, 0, DATA.length)).status, 200);
    await expectError(
      await commit(f, "v.bin", {
        size: DATA.length,
        mtime: 0,
        sha256: "0".repeat(64),
      }),
      422,
      "verify_failed",
    );
    assert.throws(() => Deno.statSync(join(f.root, "v.bin")));
    assert.throws(() => Deno.statSync(join(f.root, "v.bin.hsync-part")));
    assert.throws(() => Deno.statSync(join(f.root, "v.bin.hsync-journal")));
  }, WRITABLE);
});

Deno.test("an empty file is committed without a range, and replaces a symlink at its name without following it", async () => {
  await withFixture(async (f) => {
    await Deno.writeTextFile(join(f.tmp, "victim.txt"), "VICTIM");
    await Deno.symlink(join(f.tmp, "victim.txt"), join(f.root, "e.txt"));
    const res = await commit(f, "e.txt", { size: 0, mtime: 1_600_000_000_000 });
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal((await Deno.lstat(join(f.root, "e.txt"))).isFile, true);
    assert.equal((await Deno.lstat(join(f.root, "e.txt"))).size, 0);
    assert.equal(await Deno.readTextFile(join(f.tmp, "victim.txt")), "VICTIM");
  }, WRITABLE);
});

Deno.test("an upload bundle writes each file with its time and mode, and reports the refused ones one by one", async () => {
  await withFixture(async (f) => {
    await Deno.mkdir(join(f.root, "b"));
    const files: Array<[string, string]> = [
      ["one.txt", "first"],
      ["id_rsa", "key"],
      ["missing-dir/x.txt", "nowhere"],
      ["../escape.txt", "out"],
      ["two.txt", "second"],
      // node's futimes would set a time before 1970 as now: refused.
      ["old.txt", "1969"],
    ];
    const frames = files.map(([path, text]) => ({
      header: {
        path,
        size: text.length,
        mtime: path === "old.txt" ? -18_489_600_000 : 1_650_000_000_000,
        mode: 0o755,
      } as UploadBundleHeader,
      data: new TextEncoder().encode(text),
    }));
    frames.push({ header: { end: true }, data: new Uint8Array() });
    const res = await f.call(
      `/v1/upload/bundle?root=${f.q("b")}`,
      { method: "POST", body: new Uint8Array(encodeFrames(frames)) },
    );
    assert.equal(res.status, 200, await res.clone().text());
    const results = await res.json() as UploadBundleResult[];
    assert.deepEqual(results.map((r) => "error" in r ? r.error : "ok"), [
      "ok",
      "forbidden_file",
      "not_found",
      "bad_path",
      "ok",
      "bad_request",
    ]);
    assert.match(
      (results[5] as { message: string }).message,
      /before 1970.*PUT \/v1\/upload/,
    );
    assert.equal(await Deno.readTextFile(join(f.root, "b/one.txt")), "first");
    assert.equal(await Deno.readTextFile(join(f.root, "b/two.txt")), "second");
    const info = await Deno.stat(join(f.root, "b/two.txt"));
    assert.equal(info.mtime?.getTime(), 1_650_000_000_000);
    assert.equal((info.mode ?? 0) & 0o777, 0o755 & ~Deno.umask());
    assert.deepEqual(
      [...Deno.readDirSync(join(f.root, "b"))].map((e) => e.name).sort(),
      ["one.txt", "two.txt"],
    );
    assert.throws(() => Deno.statSync(join(f.root, "escape.txt")));
  }, WRITABLE);
});

Deno.test("mkdir creates missing levels below Writable_path and sets a directory's time; writes elsewhere are refused", async () => {
  await withFixture(async (f) => {
    const res = await f.call(
      `/v1/mkdir?path=${f.q("x/y/z")}&mtime=1500000000000`,
      { method: "POST" },
    );
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal(
      (await Deno.stat(join(f.root, "x/y/z"))).mtime?.getTime(),
      1_500_000_000_000,
    );
    // A time before 1970, and one that is not a whole number.
    const old = await f.call(
      `/v1/mkdir?path=${f.q("x/y")}&mtime=-18489600000`,
      { method: "POST" },
    );
    assert.equal(old.status, 200, await old.clone().text());
    assert.equal(
      (await Deno.stat(join(f.root, "x/y"))).mtime?.getTime(),
      -18_489_600_000,
    );
    await expectError(
      await f.call(`/v1/mkdir?path=${f.q("x")}&mtime=-1.5`, {
        method: "POST",
      }),
      400,
      "bad_request",
    );
    await expectError(
      await f.call(
        `/v1/mkdir?path=${encodeURIComponent(join(f.tmp, "elsewhere"))}`,
        { method: "POST" },
      ),
      403,
      "not_writable",
    );
    await expectError(
      await put(f, "../outside.bin", DATA, 0, 10),
      403,
      "not_writable",
    );
  }, WRITABLE);
});

Deno.test("a server with no Writable_path accepts no write (403 read_only)", async () => {
  await withFixture(async (f) => {
    await expectError(await put(f, "n.bin", DATA, 0, 10), 403, "read_only");
    await expectError(
      await f.call(`/v1/mkdir?path=${f.q("n")}`, { method: "POST" }),
      403,
      "read_only",
    );
  });
});

Deno.test("Writable_path without Authorized_keys on an address others can reach does not start", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const settings = await settingsFor(join(tmp, "state"), {
      Writable_path: tmp,
      Host_ip: "0.0.0.0",
    });
    await assert.rejects(
      createHandler({ settings, hsyncDir: join(tmp, "state"), hostname: "h" }),
      (e: unknown) =>
        e instanceof ConfigError && /Authorized_keys/.test(e.message),
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("a signed range whose body is not the one signed claims no byte (401); with Anonymous_read unsigned reads pass and unsigned writes do not", async () => {
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
  await withFixture(
    async (f) => {
      const body = DATA.slice(0, 1000);
      const url = new URL(
        `http://localhost/v1/upload?${new URLSearchParams({
          path: join(f.root, "s.bin"),
          size: String(DATA.length),
          source: "src-1",
        })}`,
      );
      const send = async (
        bytes: Uint8Array<ArrayBuffer>,
        declared: Uint8Array<ArrayBuffer>,
      ) =>
        await f.call(url.pathname + url.search, {
          method: "PUT",
          body: bytes,
          headers: {
            authorization: await signRequest(identity, "PUT", url, {
              body: declared,
            }),
            [BODY_DIGEST_HEADER]: bodyDigest(declared),
            "content-range": `bytes 0-999/${DATA.length}`,
            "content-length": "1000",
          },
        });
      const tampered = body.slice();
      tampered[10] ^= 0xff;
      await expectError(await send(tampered, body), 401, "unauthorized");
      // Nothing was claimed for the tampered body.
      const statusUrl = new URL(
        `http://localhost/v1/upload?path=${f.q("s.bin")}`,
      );
      const status = await f.call(statusUrl.pathname + statusUrl.search, {
        headers: {
          authorization: await signRequest(identity, "GET", statusUrl),
        },
      });
      const held = status.status === 404
        ? []
        : (await status.json() as UploadStatus).held;
      assert.deepEqual(held, []);
      const ok = await send(body, body);
      assert.equal(ok.status, 200, await ok.clone().text());
      await ok.body?.cancel();
      const after = await f.call(statusUrl.pathname + statusUrl.search, {
        headers: {
          authorization: await signRequest(identity, "GET", statusUrl),
        },
      });
      assert.deepEqual((await after.json() as UploadStatus).held, [[0, 1000]]);
      // The same range again, tampered: written as it came, so what it
      // overwrote is held no more (a held byte is always a signed one).
      await expectError(await send(tampered, body), 401, "unauthorized");
      const again = await f.call(statusUrl.pathname + statusUrl.search, {
        headers: {
          authorization: await signRequest(identity, "GET", statusUrl),
        },
      });
      const part = await Deno.readFile(join(f.root, "s.bin.hsync-part"));
      for (const [a, b] of (await again.json() as UploadStatus).held) {
        assert.deepEqual(part.subarray(a, b), body.subarray(a, b));
      }
      // Anonymous reads pass, anonymous writes do not.
      assert.equal(
        (await f.call(`/v1/stat?path=${f.q("hello.txt")}`)).status,
        200,
      );
      await expectError(
        await put(f, "anon.bin", DATA, 0, 10),
        401,
        "unauthorized",
      );
    },
    { ...WRITABLE, Authorized_keys: "", Anonymous_read: "yes" },
    { verifier, serverNames },
  );
});

Deno.test("a commit with holes (-S): 64 MiB of which two 4 KiB ranges were sent commits with the right bytes, verified, and stays sparse on disk", async () => {
  await withFixture(async (f) => {
    const size = 64 * 1024 * 1024;
    const block = 4096;
    const at = 32 * 1024 * 1024;
    const head = DATA.slice(0, block);
    const middle = DATA.slice(block, 2 * block);
    const send = (start: number, bytes: Uint8Array<ArrayBuffer>) => {
      const query = new URLSearchParams({
        path: join(f.root, "sparse.bin"),
        size: String(size),
        source: "src-1",
      });
      return f.call(`/v1/upload?${query}`, {
        method: "PUT",
        headers: {
          "content-range": `bytes ${start}-${start + bytes.length - 1}/${size}`,
          "x-hsync-upload-session": "session-a",
        },
        body: bytes,
      });
    };
    assert.equal((await send(0, head)).status, 200);
    assert.equal((await send(at, middle)).status, 200);
    const whole = new Uint8Array(size);
    whole.set(head, 0);
    whole.set(middle, at);
    const holes = [[block, at], [at + block, size]];
    // Without the holes it is not complete.
    await expectError(
      await commit(f, "sparse.bin", { size, mtime: 0 }),
      409,
      "incomplete",
    );
    const res = await commit(f, "sparse.bin", {
      size,
      mtime: 1_700_000_000_000,
      holes,
      sha256: sha256(whole),
    });
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal((await res.json() as CommitResult).size, size);
    const path = join(f.root, "sparse.bin");
    assert.ok(
      (await Deno.readFile(path)).every((b, i) => b === whole[i]),
      "the committed bytes differ",
    );
    const info = await Deno.stat(path);
    assert.equal(info.size, size);
    assert.ok(
      (info.blocks ?? size) * 512 < 1024 * 1024,
      `${info.blocks} blocks allocated`,
    );
  }, WRITABLE);
});

Deno.test("a file that is all holes commits without a range; holes ending at its end extend it; a part nothing records does not show through", async () => {
  await withFixture(async (f) => {
    const size = 8 * 1024 * 1024;
    const res = await commit(f, "zeros.bin", {
      size,
      mtime: 0,
      holes: [[0, size]],
    });
    assert.equal(res.status, 200, await res.clone().text());
    const info = await Deno.stat(join(f.root, "zeros.bin"));
    assert.equal(info.size, size);
    assert.ok((info.blocks ?? size) * 512 < 64 * 1024, `${info.blocks}`);
    // A part file left with other bytes, and no journal saying it is held.
    await Deno.writeFile(
      join(f.root, "left.bin.hsync-part"),
      new Uint8Array(20_000).fill(0x55),
    );
    assert.equal(
      (await put(f, "left.bin", DATA.slice(0, 30_000), 0, 1000)).status,
      200,
    );
    const done = await commit(f, "left.bin", {
      size: 30_000,
      mtime: 0,
      holes: [[1000, 30_000]],
    });
    assert.equal(done.status, 200, await done.clone().text());
    const want = new Uint8Array(30_000);
    want.set(DATA.slice(0, 1000));
    const got = await Deno.readFile(join(f.root, "left.bin"));
    assert.equal(got.length, want.length);
    assert.equal(got.findIndex((b, i) => b !== want[i]), -1);
  }, WRITABLE);
});

Deno.test("holes that are not sorted, overlap, are empty, not whole numbers or past the end are refused (400 bad_request)", async () => {
  await withFixture(async (f) => {
    assert.equal((await put(f, "h.bin", DATA, 0, DATA.length)).status, 200);
    const size = DATA.length;
    const bad: unknown[] = [
      "all",
      [[0]],
      [[0, 10, 20]],
      [[10, 5]],
      [[10, 10]],
      [[-1, 10]],
      [[0, 1.5]],
      [["0", "10"]],
      [[0, size + 1]],
      [[100, 200], [0, 50]],
      [[0, 100], [50, 200]],
      [null],
    ];
    for (const holes of bad) {
      const body = await expectError(
        await commit(f, "h.bin", { size, mtime: 0, holes }),
        400,
        "bad_request",
      );
      assert.match(body.message, /^Invalid commit request: hole/);
    }
    // Still there to commit.
    const ok = await commit(f, "h.bin", {
      size,
      mtime: 0,
      holes: [[0, 10], [10, 20], [size - 1, size]],
    });
    assert.equal(ok.status, 200, await ok.clone().text());
    assert.deepEqual(await Deno.readFile(join(f.root, "h.bin")), DATA);
  }, WRITABLE);
});
