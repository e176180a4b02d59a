/** Tests of lib/auth.ts: keys round-trip, signatures verify, and forged, stale, replayed or foreign requests are refused. */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  bodyDigest,
  createVerifier,
  generateKeys,
  loadAuthorizedKeys,
  loadIdentity,
  parseAuthorizedKeys,
  signRequest,
  writeKeyPair,
} from "../lib/auth.ts";
import { ConfigError } from "../lib/errors.ts";

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
    /Cannot use Identity_file "\/h\/id": not a PEM private key/,
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

Deno.test("writeKeyPair() makes HSYNC_DIR 0700, a 0600 private key and a public line that authorises it", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "hsync_keygen_" });
  try {
    const dir = join(tmp, "state");
    const written = await writeKeyPair(dir, { comment: "alice@lab" });
    assert.equal(written.privateFile, join(dir, "id_ed25519"));
    assert.equal(written.publicFile, join(dir, "id_ed25519.pub"));
    assert.equal((await Deno.stat(dir)).mode! & 0o777, 0o700);
    assert.equal((await Deno.stat(written.privateFile)).mode! & 0o777, 0o600);
    const pub = await Deno.readTextFile(written.publicFile);
    assert.equal(pub, written.publicLine + "\n");
    assert.match(
      written.publicLine,
      /^hsync-ed25519 [A-Za-z0-9+/]{43}= alice@lab$/,
    );

    // The line, appended as it is to an authorized-keys file, admits the key.
    const akFile = join(tmp, "authorized_keys");
    await Deno.writeTextFile(akFile, `# team\n${pub}`);
    const { verifier, keys } = await loadAuthorizedKeys(akFile);
    assert.equal(keys, 1);
    const identity = await loadIdentity(
      await Deno.readTextFile(written.privateFile),
      written.privateFile,
    );
    const url = new URL("http://h/v1/health");
    assert.equal(
      await verifier(
        "GET",
        url.pathname,
        await signRequest(identity, "GET", url),
        "-",
      ),
      true,
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("writeKeyPair() never overwrites a key without force, and force makes a new 0600 key", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "hsync_keygen_" });
  try {
    const first = await writeKeyPair(tmp);
    const before = await Deno.readTextFile(first.privateFile);
    await assert.rejects(
      writeKeyPair(tmp),
      (e: unknown) =>
        e instanceof ConfigError &&
        e.message ===
          `Refusing to overwrite "${first.privateFile}": a key is already there (use --force to replace it)`,
    );
    assert.equal(await Deno.readTextFile(first.privateFile), before);
    // A lone public key is protected too.
    await Deno.remove(first.privateFile);
    await assert.rejects(writeKeyPair(tmp), /Refusing to overwrite .*\.pub"/);

    await Deno.writeTextFile(first.privateFile, "old", { mode: 0o644 });
    await Deno.chmod(first.privateFile, 0o644);
    const second = await writeKeyPair(tmp, { force: true });
    assert.notEqual(await Deno.readTextFile(second.privateFile), "old");
    assert.equal((await Deno.stat(second.privateFile)).mode! & 0o777, 0o600);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("loadAuthorizedKeys() names the file when it is missing, malformed or empty", async () => {
  const files: Record<string, string> = {
    "/k/bad": "hsync-ed25519 AAAA\n",
    "/k/empty": "# nobody yet\n\n",
  };
  const readTextFile = (path: string) =>
    path in files
      ? Promise.resolve(files[path])
      : Promise.reject(new Deno.errors.NotFound(path));
  const cases: Array<[string, string]> = [
    [
      "/k/missing",
      'Cannot read Authorized_keys "/k/missing": no such file or directory',
    ],
    [
      "/k/bad",
      'Invalid public key on line 1 of "/k/bad": expected "hsync-ed25519 BASE64 [comment]"',
    ],
    [
      "/k/empty",
      'Cannot use Authorized_keys "/k/empty": it holds no public key (add the line printed by hsync keygen)',
    ],
  ];
  for (const [path, message] of cases) {
    await assert.rejects(
      loadAuthorizedKeys(path, { readTextFile }),
      (e: unknown) => e instanceof ConfigError && e.message === message,
      path,
    );
  }
});
