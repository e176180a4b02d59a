/** Tests of lib/client/transport.ts: which identity and CA a run uses, one-line refusals, and the sign hook against the server's verifier. */
import assert from "node:assert/strict";
import { join } from "node:path";
import defaults from "../hsync.ini" with { type: "text" };
import {
  bodyDigest,
  createVerifier,
  generateKeys,
  parseAuthorizedKeys,
  writeKeyPair,
} from "../lib/shared/auth.ts";
import { BODY_DIGEST_HEADER } from "../lib/shared/wire.ts";
import {
  clientSettings,
  loadConfig,
  type Overrides,
} from "../lib/shared/config.ts";
import { ConfigError } from "../lib/shared/errors.ts";
import { openTransport } from "../lib/client/transport.ts";

async function settings(overrides: Overrides = {}) {
  const config = await loadConfig({
    defaults,
    hsyncDir: "/nonexistent",
    readTextFile: () => Promise.reject(new Deno.errors.NotFound("none")),
  });
  return clientSettings(config, "hscp", overrides);
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "hsync_transport_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function refused(
  promise: Promise<unknown>,
  message: string,
): Promise<void> {
  await assert.rejects(
    promise,
    (e: unknown) => e instanceof ConfigError && e.message === message,
  );
}

Deno.test("openTransport() without TLS or a key sends plain, unsigned requests", async () => {
  await withDir(async (dir) => {
    const t = await openTransport(await settings(), dir);
    assert.equal(t.client, undefined);
    assert.equal(t.sign, undefined);
  });
});

Deno.test("openTransport() signs with $HSYNC_DIR/id_ed25519 when it exists, and with a relative Identity_file from HSYNC_DIR", async () => {
  await withDir(async (dir) => {
    const keys = await writeKeyPair(dir);
    const t = await openTransport(await settings(), dir);
    assert.equal(t.identityFile, keys.privateFile);
    assert.equal(typeof t.sign, "function");

    await Deno.mkdir(join(dir, "keys"));
    await Deno.rename(keys.privateFile, join(dir, "keys/mine"));
    const unsigned = await openTransport(await settings(), dir);
    assert.equal(unsigned.sign, undefined, "no default key, no signing");
    const rel = await openTransport(
      await settings({ Identity_file: "keys/mine" }),
      dir,
    );
    assert.equal(rel.identityFile, join(dir, "keys/mine"));
  });
});

/** What hsyncd's verifier says of `request` as signed, its body's SHA-256 being `bodySha256` ("-": none). */
async function verifyRequest(
  verify: Awaited<ReturnType<typeof createVerifier>>,
  request: Request,
  bodySha256: string,
) {
  const url = new URL(request.url);
  return await verify({
    method: request.method,
    server: url.origin,
    pathAndQuery: url.pathname + url.search,
    authorization: request.headers.get("authorization"),
    bodySha256,
  });
}

Deno.test("the sign hook produces headers the server's verifier accepts, body included", async () => {
  await withDir(async (dir) => {
    const keys = await writeKeyPair(dir);
    const verify = await createVerifier(
      parseAuthorizedKeys(keys.publicLine, "ak"),
    );
    const t = await openTransport(await settings(), dir);

    const get = new Request("http://h:1/v1/stat?path=%2Fdata%2Fa%20b");
    await t.sign!(get);
    assert.equal(get.headers.get(BODY_DIGEST_HEADER), null);
    assert.deepEqual(await verifyRequest(verify, get, "-"), { ok: true });

    const json = JSON.stringify({ root: "/data", paths: ["a", "b"] });
    const post = new Request("http://h:1/v1/bundle", {
      method: "POST",
      body: json,
    });
    await t.sign!(post);
    const digest = post.headers.get(BODY_DIGEST_HEADER)!;
    assert.equal(digest, bodyDigest(new TextEncoder().encode(json)));
    assert.deepEqual(await verifyRequest(verify, post, digest), { ok: true });
    // The body is still there for fetch to send.
    assert.equal(await post.text(), json);

    // A POST without a body declares none (hsyncd cannot tell it from an empty one).
    const mkdir = new Request("http://h:1/v1/mkdir?path=%2Fin%2Fd", {
      method: "POST",
    });
    await t.sign!(mkdir);
    assert.equal(mkdir.headers.get(BODY_DIGEST_HEADER), "-");
    assert.deepEqual(await verifyRequest(verify, mkdir, "-"), { ok: true });
  });
});

Deno.test("the sign hook signs a body streamed from a file by its declared digest, without reading it", async () => {
  await withDir(async (dir) => {
    const keys = await writeKeyPair(dir);
    const verify = await createVerifier(
      parseAuthorizedKeys(keys.publicLine, "ak"),
    );
    const t = await openTransport(await settings(), dir);
    const data = new Uint8Array(3 * 1024 * 1024).fill(7);
    let pulled = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pulled >= data.length) return controller.close();
        controller.enqueue(data.subarray(pulled, pulled + 65536));
        pulled += 65536;
      },
    }, { highWaterMark: 0 });
    const digest = bodyDigest(data);
    const put = new Request(
      "http://h:1/v1/upload?path=%2Fin%2Fx&size=3145728&source=s",
      { method: "PUT", body, headers: { [BODY_DIGEST_HEADER]: digest } },
    );
    await t.sign!(put);
    assert.equal(pulled, 0, "the signer read none of the body");
    assert.equal(put.headers.get(BODY_DIGEST_HEADER), digest);
    assert.deepEqual(await verifyRequest(verify, put, digest), { ok: true });
    assert.equal((await put.arrayBuffer()).byteLength, data.length);

    // A body sent outside the Request (a buffer through node's client): the
    // Request has none, and is signed by the digest it declares, not as
    // bodiless.
    const buffered = new Request(
      "http://h:1/v1/upload?path=%2Fin%2Fy&size=3145728&source=s",
      { method: "PUT", headers: { [BODY_DIGEST_HEADER]: digest } },
    );
    await t.sign!(buffered);
    assert.equal(buffered.headers.get(BODY_DIGEST_HEADER), digest);
    assert.deepEqual(await verifyRequest(verify, buffered, digest), {
      ok: true,
    });
  });
});

Deno.test("openTransport() refuses an unusable identity in one line naming the file", async () => {
  await withDir(async (dir) => {
    await refused(
      openTransport(await settings({ Identity_file: "/no/such/key" }), dir),
      'Cannot read Identity_file "/no/such/key": no such file or directory',
    );
    const open = join(dir, "open_key");
    const keys = await generateKeys("x");
    await Deno.writeTextFile(open, keys.privatePem);
    await Deno.chmod(open, 0o644);
    await refused(
      openTransport(await settings({ Identity_file: open }), dir),
      `Cannot use Identity_file "${open}": it is readable by other users (mode 0644); run chmod 600 on it`,
    );
    const garbage = join(dir, "garbage");
    await Deno.writeTextFile(garbage, "not a key", { mode: 0o600 });
    await refused(
      openTransport(await settings({ Identity_file: garbage }), dir),
      `Cannot use Identity_file "${garbage}": not a PEM private key (make one with hsync keygen)`,
    );
    const pub = join(dir, "pub_as_private");
    await Deno.writeTextFile(
      pub,
      "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
      { mode: 0o600 },
    );
    await refused(
      openTransport(await settings({ Identity_file: pub }), dir),
      `Cannot use Identity_file "${pub}": not an Ed25519 private key`,
    );
    // A default key that is present but broken is reported, not silently skipped.
    await Deno.writeTextFile(join(dir, "id_ed25519"), "junk", { mode: 0o600 });
    await refused(
      openTransport(await settings(), dir),
      `Cannot use Identity_file "${
        join(dir, "id_ed25519")
      }": not a PEM private key (make one with hsync keygen)`,
    );
  });
});

Deno.test("openTransport() refuses a missing or non-PEM CA_file in one line, and ignores CA_file without TLS", async () => {
  await withDir(async (dir) => {
    await refused(
      openTransport(await settings({ Tls: "yes", CA_file: "ca.pem" }), dir),
      `Cannot read CA_file "${join(dir, "ca.pem")}": no such file or directory`,
    );
    await Deno.writeTextFile(join(dir, "ca.pem"), "hello");
    await refused(
      openTransport(await settings({ Tls: "yes", CA_file: "ca.pem" }), dir),
      `Cannot use CA_file "${
        join(dir, "ca.pem")
      }": it holds no PEM certificate`,
    );
    const plain = await openTransport(
      await settings({ Tls: "no", CA_file: "ca.pem" }),
      dir,
    );
    assert.equal(plain.client, undefined);
  });
});
