/** Tests of lib/server/endpoints/hash.ts: /v1/hash through the handler. */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { HashResult, StatEntry } from "../lib/shared/wire.ts";
import { expectError, SECRET, sha256, withFixture } from "./_server_fixture.ts";

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
