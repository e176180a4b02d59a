/** Tests of lib/auth.ts: keys round-trip, signatures verify, and forged, stale, replayed or foreign requests are refused. */
import assert from "node:assert/strict";
import {
  bodyDigest,
  createVerifier,
  generateKeys,
  loadIdentity,
  parseAuthorizedKeys,
  signRequest,
} from "../lib/auth.ts";

async function setup(now = 1_000_000_000) {
  const keys = await generateKeys("alice@lab");
  const identity = await loadIdentity(keys.privatePem, "id_ed25519");
  const authorized = parseAuthorizedKeys(
    `# lab keys\n\n${keys.publicLine}`,
    "authorized_keys",
  );
  let clock = now;
  const verify = await createVerifier(authorized, { now: () => clock });
  return { keys, identity, verify, setClock: (t: number) => clock = t, now };
}

Deno.test("a key pair from generateKeys() signs requests that the server accepts once", async () => {
  const { keys, identity, verify, now } = await setup();
  assert.match(
    keys.publicLine,
    /^hsync-ed25519 [A-Za-z0-9+/]{43}= alice@lab\n$/,
  );
  assert.match(keys.privatePem, /^-----BEGIN PRIVATE KEY-----\n/);
  const url = new URL("http://h:1/v1/file?path=%2Fdata%2Fx");
  const header = await signRequest(identity, "GET", url, { now });
  assert.equal(
    await verify("GET", "/v1/file?path=%2Fdata%2Fx", header, "-"),
    true,
  );
  assert.equal(
    await verify("GET", "/v1/file?path=%2Fdata%2Fx", header, "-"),
    false,
    "replayed nonce",
  );
});

Deno.test("signatures do not carry over to another method, path, query or body", async () => {
  const { identity, verify, now } = await setup();
  const url = new URL("http://h:1/v1/bundle");
  const body = new TextEncoder().encode('{"root":"/a","paths":["x"]}');
  const digest = bodyDigest(body);
  const cases: Array<[string, string, string]> = [
    ["GET", "/v1/bundle", digest],
    ["POST", "/v1/bundle?x=1", digest],
    ["POST", "/v1/list", digest],
    [
      "POST",
      "/v1/bundle",
      bodyDigest(
        new TextEncoder().encode('{"root":"/","paths":["etc/shadow"]}'),
      ),
    ],
  ];
  for (const [method, path, d] of cases) {
    const header = await signRequest(identity, "POST", url, { body, now });
    assert.equal(
      await verify(method, path, header, d),
      false,
      `${method} ${path}`,
    );
  }
  const header = await signRequest(identity, "POST", url, { body, now });
  assert.equal(await verify("POST", "/v1/bundle", header, digest), true);
});

Deno.test("stale and future timestamps, unknown keys and garbage headers are refused", async () => {
  const { identity, verify, now } = await setup();
  const url = new URL("http://h:1/v1/health");
  for (const skew of [-6 * 60_000, 6 * 60_000]) {
    const header = await signRequest(identity, "GET", url, { now: now + skew });
    assert.equal(
      await verify("GET", "/v1/health", header, "-"),
      false,
      `skew ${skew}`,
    );
  }
  const inWindow = await signRequest(identity, "GET", url, {
    now: now - 60_000,
  });
  assert.equal(await verify("GET", "/v1/health", inWindow, "-"), true);
  const stranger = await loadIdentity(
    (await generateKeys("eve")).privatePem,
    "eve",
  );
  assert.equal(
    await verify(
      "GET",
      "/v1/health",
      await signRequest(stranger, "GET", url, { now }),
      "-",
    ),
    false,
  );
  for (
    const bad of [
      null,
      "",
      "Bearer x",
      "HSync-Ed25519 key=, ts=1, nonce=x, sig=y",
      "HSync-Ed25519 ,,,,====",
    ]
  ) {
    assert.equal(
      await verify("GET", "/v1/health", bad, "-"),
      false,
      String(bad),
    );
  }
});

Deno.test("malformed key files and authorized-keys lines are reported with their source", async () => {
  await assert.rejects(
    () => loadIdentity("not a key", "/h/id"),
    /Cannot read identity "\/h\/id": not a PEM private key/,
  );
  assert.throws(
    () => parseAuthorizedKeys("ssh-rsa AAAA x\n", "/etc/keys"),
    /Invalid public key on line 1 of "\/etc\/keys"/,
  );
  assert.throws(
    () => parseAuthorizedKeys("hsync-ed25519 AAAA\n", "k"),
    /line 1/,
  );
});
