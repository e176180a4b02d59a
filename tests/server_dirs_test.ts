/** Tests of how hsyncd makes a push's directories (lib/server/endpoints/upload_bundle.ts and upload.ts with `parents=1`, mkdir.ts's array form), in process. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { encodeFrames } from "../lib/shared/bundle_codec.ts";
import {
  type DirRequest,
  type DirResult,
  MKDIR_MAX_DIRS,
  type UploadBundleHeader,
  type UploadBundleResult,
} from "../lib/shared/wire.ts";
import { expectError, type Fixture, withFixture } from "./_server_fixture.ts";

const WRITABLE = { Host_ip: "127.0.0.1", Writable_path: "@root" };
const T = 1_650_000_000_000;

/** `POST /v1/upload/bundle` of text files below `root` (relative to the fixture), with `query` added. */
function bundle(
  f: Fixture,
  root: string,
  files: Array<[string, string]>,
  query = "",
): Promise<Response> {
  const frames = files.map(([path, text]) => ({
    header: {
      path,
      size: text.length,
      mtime: T,
      mode: 0o644,
    } as UploadBundleHeader,
    data: new TextEncoder().encode(text),
  }));
  frames.push({ header: { end: true }, data: new Uint8Array() });
  return f.call(`/v1/upload/bundle?root=${f.q(root)}${query}`, {
    method: "POST",
    body: new Uint8Array(encodeFrames(frames)),
  });
}

function mkdirs(f: Fixture, dirs: unknown): Promise<Response> {
  return f.call("/v1/mkdir", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(dirs),
  });
}

async function outcomes(res: Response): Promise<string[]> {
  assert.equal(res.status, 200, await res.clone().text());
  const results = await res.json() as Array<UploadBundleResult | DirResult>;
  return results.map((r) => "error" in r ? r.error : "ok");
}

Deno.test("a bundle with parents=1 makes its files' missing directories (and only with it)", async () => {
  await withFixture(async (f) => {
    await Deno.mkdir(join(f.root, "in"));
    const files: Array<[string, string]> = [
      ["new/a.txt", "a"],
      ["new/deeper/still/b.txt", "b"],
      ["c.txt", "c"],
    ];
    // Without it, a file whose directory is missing is refused, alone.
    assert.deepEqual(await outcomes(await bundle(f, "in", files)), [
      "not_found",
      "not_found",
      "ok",
    ]);
    assert.throws(() => Deno.statSync(join(f.root, "in/new")));
    assert.deepEqual(
      await outcomes(await bundle(f, "in", files, "&parents=1")),
      ["ok", "ok", "ok"],
    );
    assert.equal(
      await Deno.readTextFile(join(f.root, "in/new/deeper/still/b.txt")),
      "b",
    );
    // Made as /v1/mkdir makes them: 0755 under the server's umask.
    assert.equal(
      (await Deno.stat(join(f.root, "in/new/deeper"))).mode! & 0o777,
      0o755 & ~Deno.umask(),
    );
    // The bundle's root itself too.
    assert.deepEqual(
      await outcomes(await bundle(f, "fresh/root", files, "&parents=1")),
      ["ok", "ok", "ok"],
    );
    assert.equal(
      await Deno.readTextFile(join(f.root, "fresh/root/c.txt")),
      "c",
    );
    await expectError(
      await bundle(f, "in", files, "&parents=yes"),
      400,
      "bad_request",
    );
  }, WRITABLE);
});

Deno.test("a bundle with parents=1 never makes a directory through a symlink, on a file, or outside Writable_path", async () => {
  await withFixture(async (f) => {
    const outside = join(f.tmp, "outside");
    await Deno.mkdir(outside);
    await Deno.mkdir(join(f.root, "in"));
    await Deno.symlink(outside, join(f.root, "in/link"));
    await Deno.writeTextFile(join(f.root, "in/file"), "x");
    const results = await outcomes(
      await bundle(f, "in", [
        ["link/made/a.txt", "a"],
        ["file/made/b.txt", "b"],
        ["ok/c.txt", "c"],
      ], "&parents=1"),
    );
    assert.deepEqual(results, ["refused", "not_a_directory", "ok"]);
    assert.deepEqual([...Deno.readDirSync(outside)], []);
    assert.equal(await Deno.readTextFile(join(f.root, "in/file")), "x");
    // A root outside Writable_path: refused, nothing made.
    const res = await f.call(
      `/v1/upload/bundle?root=${
        encodeURIComponent(join(f.tmp, "elsewhere"))
      }&parents=1`,
      {
        method: "POST",
        body: new Uint8Array(encodeFrames([
          {
            header: { path: "x/a.txt", size: 1, mtime: T, mode: 0o644 },
            data: new TextEncoder().encode("a"),
          },
          { header: { end: true }, data: new Uint8Array() },
        ])),
      },
    );
    assert.deepEqual(await outcomes(res), ["refused"]);
    assert.throws(() => Deno.statSync(join(f.tmp, "elsewhere")));
  }, WRITABLE);
});

/** `PUT /v1/upload` of all of `text` as one range to `rel`, with `query` added. */
function putWhole(f: Fixture, rel: string, text: string, query = "") {
  return f.call(
    `/v1/upload?path=${f.q(rel)}&size=${text.length}&source=s1${query}`,
    {
      method: "PUT",
      headers: { "content-range": `bytes 0-${text.length - 1}/${text.length}` },
      body: new TextEncoder().encode(text),
    },
  );
}

Deno.test("a PUT with parents=1 makes its file's missing directories (and only with it), never through a symlink, on a file or outside Writable_path", async () => {
  await withFixture(async (f) => {
    await Deno.mkdir(join(f.root, "in"));
    await expectError(
      await putWhole(f, "in/new/deeper/a.bin", "abc"),
      404,
      "not_found",
    );
    assert.throws(() => Deno.statSync(join(f.root, "in/new")));
    const res = await putWhole(f, "in/new/deeper/a.bin", "abc", "&parents=1");
    assert.equal(res.status, 200, await res.clone().text());
    await res.body?.cancel();
    assert.equal(
      await Deno.readTextFile(join(f.root, "in/new/deeper/a.bin.hsync-part")),
      "abc",
    );
    assert.equal(
      (await Deno.stat(join(f.root, "in/new/deeper"))).mode! & 0o777,
      0o755 & ~Deno.umask(),
    );
    await expectError(
      await putWhole(f, "in/x/a.bin", "abc", "&parents=yes"),
      400,
      "bad_request",
    );
    const outside = join(f.tmp, "outside");
    await Deno.mkdir(outside);
    await Deno.symlink(outside, join(f.root, "in/link"));
    await Deno.writeTextFile(join(f.root, "in/file"), "x");
    for (const rel of ["in/link/made/a.bin", "in/file/made/b.bin"]) {
      const refused = await putWhole(f, rel, "abc", "&parents=1");
      assert.ok(refused.status >= 400, rel);
      await refused.body?.cancel();
    }
    assert.deepEqual([...Deno.readDirSync(outside)], []);
    assert.equal(await Deno.readTextFile(join(f.root, "in/file")), "x");
    const elsewhere = await f.call(
      `/v1/upload?path=${
        encodeURIComponent(join(f.tmp, "elsewhere/x/a.bin"))
      }&size=3&source=s1&parents=1`,
      {
        method: "PUT",
        headers: { "content-range": "bytes 0-2/3" },
        body: new TextEncoder().encode("abc"),
      },
    );
    assert.equal(elsewhere.status, 403);
    await elsewhere.body?.cancel();
    assert.throws(() => Deno.statSync(join(f.tmp, "elsewhere")));
  }, WRITABLE);
});

Deno.test("mkdir with an array makes every directory before it sets any time, so a parent's time survives a child made after it", async () => {
  await withFixture(async (f) => {
    const dir = (rel: string) => join(f.root, rel);
    const dirs: DirRequest[] = [
      { path: dir("t"), mtime: T, mode: 0o750, narrow: true },
      { path: dir("t/empty"), mtime: T + 1000 },
      { path: dir("t/empty/deeper"), mtime: T + 2000, mode: 0o705 },
      { path: join(f.tmp, "elsewhere"), mtime: T },
      { path: dir("t/x"), mode: 0o777, narrow: true },
    ];
    assert.deepEqual(await outcomes(await mkdirs(f, dirs)), [
      "ok",
      "ok",
      "ok",
      "not_writable",
      "ok",
    ]);
    assert.equal((await Deno.stat(dir("t"))).mtime?.getTime(), T);
    assert.equal((await Deno.stat(dir("t/empty"))).mtime?.getTime(), T + 1000);
    // narrow: only bits taken away from what the directory was made with.
    const made = 0o755 & ~Deno.umask();
    assert.equal((await Deno.stat(dir("t"))).mode! & 0o777, 0o750 & made);
    assert.equal((await Deno.stat(dir("t/x"))).mode! & 0o777, made);
    // Without narrow, the bits as given.
    assert.equal(
      (await Deno.stat(dir("t/empty/deeper"))).mode! & 0o777,
      0o705,
    );
    assert.throws(() => Deno.statSync(join(f.tmp, "elsewhere")));
  }, WRITABLE);
});

Deno.test("mkdir refuses an array that is not one, too long, or with a wrong field: 400 naming it", async () => {
  await withFixture(async (f) => {
    const cases: Array<[unknown, RegExp]> = [
      [{ path: "/x" }, /expected a JSON array/],
      [[{ path: "relative" }], /entry 0: path must be an absolute path/],
      [[{ path: join(f.root, "a"), mtime: 1.5 }], /entry 0: mtime/],
      [[{ path: join(f.root, "a"), mode: 0o10000 }], /entry 0: mode/],
      [[{ path: join(f.root, "a"), narrow: "yes" }], /entry 0: narrow/],
      [
        Array.from(
          { length: MKDIR_MAX_DIRS + 1 },
          (_, i) => ({ path: join(f.root, `d${i}`) }),
        ),
        /at most 1000 at once/,
      ],
    ];
    for (const [body, message] of cases) {
      const res = await mkdirs(f, body);
      assert.equal(res.status, 400);
      assert.match((await res.json()).message, message);
    }
    // Nothing was made by a refused request.
    assert.throws(() => Deno.statSync(join(f.root, "a")));
    assert.throws(() => Deno.statSync(join(f.root, "d0")));
  }, WRITABLE);
});

Deno.test("a mkdir array of many deep directories gives other work its turns while it runs", async () => {
  await withFixture(async (f) => {
    const levels = Array.from({ length: 20 }, (_, i) => `l${i}`).join("/");
    const dirs = Array.from(
      { length: 100 },
      (_, i) => ({ path: join(f.root, "deep", `d${i}`, levels), mtime: T }),
    );
    // The longest wait of a 1 ms timer while the request runs.
    let last = performance.now();
    let longest = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      longest = Math.max(longest, now - last);
      last = now;
    }, 1);
    const started = performance.now();
    let took: number;
    try {
      assert.deepEqual(
        new Set(await outcomes(await mkdirs(f, dirs))),
        new Set(["ok"]),
      );
      took = performance.now() - started;
      longest = Math.max(longest, performance.now() - last);
    } finally {
      clearInterval(timer);
    }
    // Two thousand directories take far longer than a turn.
    assert.ok(took > 60, `took ${took.toFixed(0)} ms`);
    assert.ok(
      longest < took / 3,
      `the timer waited ${longest.toFixed(0)} of ${took.toFixed(0)} ms`,
    );
  }, WRITABLE);
});
