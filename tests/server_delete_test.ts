/** Tests of `POST /v1/delete` (lib/server/endpoints/delete.ts, lib/server/jail/write_delete.ts), in process. */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { DeleteResult } from "../lib/shared/wire.ts";
import { existsSync } from "./_programs.ts";
import {
  createVerifier,
  generateKeys,
  parseAuthorizedKeys,
} from "../lib/shared/auth.ts";
import {
  expectError,
  type Fixture,
  SECRET,
  withFixture,
} from "./_server_fixture.ts";

const WRITABLE = { Host_ip: "127.0.0.1", Writable_path: "@root" };

/** `POST /v1/delete?path=P` of `at` (absolute), from push session `session`. */
function del(f: Fixture, at: string, session = "session-a"): Promise<Response> {
  return f.call(`/v1/delete?path=${encodeURIComponent(at)}`, {
    method: "POST",
    headers: { "x-hsync-upload-session": session },
  });
}

async function deleted(res: Response): Promise<DeleteResult> {
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return JSON.parse(text) as DeleteResult;
}

Deno.test("POST /v1/delete removes a file, an empty directory, and a symbolic link itself (what it leads to survives)", async () => {
  await withFixture(async (f) => {
    const file = join(f.root, "hello.txt");
    assert.deepEqual(await deleted(await del(f, file)), {
      path: file,
      type: "file",
    });
    assert.equal(existsSync(file), false);

    const dir = join(f.root, "emptydir");
    assert.deepEqual(await deleted(await del(f, dir)), {
      path: dir,
      type: "dir",
    });
    assert.equal(existsSync(dir), false);

    // A link to a file, to a directory, and out of the served paths: each
    // removed itself, never followed.
    await Deno.symlink("big.bin", join(f.root, "to-big"));
    for (const name of ["to-big", "link_in_dir", "link_out", "loop"]) {
      assert.deepEqual(await deleted(await del(f, join(f.root, name))), {
        path: join(f.root, name),
        type: "symlink",
      });
      assert.equal(existsSync(join(f.root, name)), false, name);
    }
    assert.equal(Deno.statSync(join(f.root, "big.bin")).size, f.big.length);
    assert.equal(
      Deno.readTextFileSync(join(f.root, "nested/deep/leaf.txt")),
      "leaf",
    );
    assert.equal(Deno.readTextFileSync(join(f.tmp, "secret.txt")), SECRET);

    // Deepest first, as a client deletes a tree.
    await deleted(await del(f, join(f.root, "nested/deep/leaf.txt")));
    await deleted(await del(f, join(f.root, "nested/deep")));
    await deleted(await del(f, join(f.root, "nested")));
    assert.equal(existsSync(join(f.root, "nested")), false);
  }, WRITABLE);
});

Deno.test("POST /v1/delete refuses a directory that is not empty (409), a missing entry (404) and a FIFO (403), and removes nothing", async () => {
  await withFixture(async (f) => {
    await expectError(
      await del(f, join(f.root, "nested")),
      409,
      "not_empty",
    );
    assert.equal(
      Deno.readTextFileSync(join(f.root, "nested/deep/leaf.txt")),
      "leaf",
    );
    await expectError(await del(f, join(f.root, "none.txt")), 404, "not_found");
    await expectError(
      await del(f, join(f.root, "none/x.txt")),
      404,
      "not_found",
    );
    await expectError(await del(f, join(f.root, "fifo")), 403, "not_regular");
    assert.equal(existsSync(join(f.root, "fifo")), true);
    const res = await f.call(
      `/v1/delete?path=${f.q("hello.txt")}`,
      { method: "GET" },
    );
    assert.equal(res.status, 405);
    await res.body?.cancel();
  }, WRITABLE);
});

Deno.test("POST /v1/delete is admitted as every write: outside Writable_path, the root itself, a refused name, a read-only server, an unsigned request with keys", async () => {
  await withFixture(async (f) => {
    await expectError(
      await del(f, join(f.tmp, "secret.txt")),
      403,
      "not_writable",
    );
    // Through a link to a directory out of the writable root: refused there.
    await Deno.symlink(f.tmp, join(f.root, "out_dir"));
    await expectError(
      await del(f, join(f.root, "out_dir/secret.txt")),
      403,
      "refused",
    );
    await expectError(await del(f, f.root), 403, "not_writable");
    await expectError(
      await del(f, join(f.root, "id_rsa")),
      403,
      "forbidden_file",
    );
    await expectError(
      await del(f, join(f.root, ".ssh/known_hosts")),
      403,
      "forbidden_dir",
    );
    await expectError(
      await del(f, join(f.root, "state-dir/hsyncd.pid")),
      403,
      "forbidden",
    );
    await expectError(
      await del(f, join(f.root, "x.hsync-part")),
      403,
      "forbidden_file",
    );
    await expectError(await del(f, "relative"), 400, "bad_path");
    for (
      const p of [
        join(f.tmp, "secret.txt"),
        f.root,
        join(f.root, "id_rsa"),
        join(f.root, ".ssh/known_hosts"),
        join(f.root, "state-dir/hsyncd.pid"),
      ]
    ) assert.equal(existsSync(p), true, p);
  }, WRITABLE);
  await withFixture(async (f) => {
    await expectError(
      await del(f, join(f.root, "hello.txt")),
      403,
      "read_only",
    );
    assert.equal(existsSync(join(f.root, "hello.txt")), true);
  });
  const keys = await generateKeys("test");
  const verifier = await createVerifier(
    parseAuthorizedKeys(keys.publicLine, "ak"),
  );
  await withFixture(
    async (f) => {
      await expectError(
        await del(f, join(f.root, "hello.txt")),
        401,
        "unauthorized",
      );
      assert.equal(existsSync(join(f.root, "hello.txt")), true);
    },
    { ...WRITABLE, Authorized_keys: "", Anonymous_read: "yes" },
    { verifier },
  );
});

Deno.test("POST /v1/delete of a name another push session is uploading is 409 upload_in_progress; the uploading session may delete it", async () => {
  await withFixture(async (f) => {
    const bytes = new Uint8Array(2000).fill(7);
    const put = await f.call(
      `/v1/upload?${new URLSearchParams({
        path: join(f.root, "hello.txt"),
        size: String(bytes.length),
        source: "src-1",
      })}`,
      {
        method: "PUT",
        headers: {
          "content-range": `bytes 0-999/${bytes.length}`,
          "content-length": "1000",
          "x-hsync-upload-session": "session-b",
        },
        body: bytes.slice(0, 1000),
      },
    );
    assert.equal(put.status, 200, await put.text());
    await expectError(
      await del(f, join(f.root, "hello.txt"), "session-a"),
      409,
      "upload_in_progress",
    );
    assert.equal(
      Deno.readTextFileSync(join(f.root, "hello.txt")),
      "hello world",
    );
    // The part and journal of the upload are not the client's to delete.
    assert.equal(
      (await del(f, join(f.root, "hello.txt"), "session-b")).status,
      200,
    );
    assert.equal(existsSync(join(f.root, "hello.txt")), false);
    assert.equal(existsSync(join(f.root, "hello.txt.hsync-part")), true);
  }, WRITABLE);
});
