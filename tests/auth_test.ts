/** Tests of lib/shared/auth.ts: keys round-trip, signatures verify, and forged, stale, replayed or foreign requests are refused. */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  bodyDigest,
  createVerifier,
  generateKeys,
  type Identity,
  loadAuthorizedKeys,
  loadIdentity,
  parseAuthorizedKeys,
  signRequest,
  type VerifierOptions,
  writeKeyPair,
} from "../lib/shared/auth.ts";
import { serverOrigin } from "../lib/shared/server_origin.ts";
import { ConfigError } from "../lib/shared/errors.ts";

type Verify = Awaited<ReturnType<typeof createVerifier>>;

/** Whether `verify` accepts `header` for this request (server `http://h:1` unless given). */
async function accepts(
  verify: Verify,
  method: string,
  pathAndQuery: string,
  header: string | null,
  bodySha256: string,
  server = "http://h:1",
): Promise<boolean> {
  const verdict = await verify({
    method,
    server,
    pathAndQuery,
    authorization: header,
    bodySha256,
  });
  return verdict.ok;
}

async function setup(now = 1_000_000_000, options: VerifierOptions = {}) {
  const keys = await generateKeys("alice@lab");
  const identity = await loadIdentity(keys.privatePem, "id_ed25519");
  const authorized = parseAuthorizedKeys(
    `# lab keys\n\n${keys.publicLine}`,
    "authorized_keys",
  );
  let clock = now;
  const verify = await createVerifier(authorized, {
    now: () => clock,
    ...options,
  });
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
    await accepts(verify, "GET", "/v1/file?path=%2Fdata%2Fx", header, "-"),
    true,
  );
  assert.deepEqual(
    await verify({
      method: "GET",
      server: "http://h:1",
      pathAndQuery: "/v1/file?path=%2Fdata%2Fx",
      authorization: header,
      bodySha256: "-",
    }),
    { ok: false, reason: "replayed nonce (already used)" },
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
      await accepts(verify, method, path, header, d),
      false,
      `${method} ${path}`,
    );
  }
  const header = await signRequest(identity, "POST", url, { body, now });
  assert.equal(
    await accepts(verify, "POST", "/v1/bundle", header, digest),
    true,
  );
});

Deno.test("a signature covers the server's scheme, host and port: one for http://a:1 is no good for http://b:1, https://a:1 or http://a:2", async () => {
  const { identity, verify, now } = await setup();
  for (const other of ["http://b:1", "https://a:1", "http://a:2"]) {
    const header = await signRequest(
      identity,
      "GET",
      new URL("http://a:1/v1/health"),
      { now },
    );
    assert.equal(
      await accepts(verify, "GET", "/v1/health", header, "-", other),
      false,
      other,
    );
    // The nonce was given back: the same header is still good for a:1.
    assert.equal(
      await accepts(verify, "GET", "/v1/health", header, "-", "http://a:1"),
      true,
    );
  }
  // A URL without a port means the scheme's default; names are compared as URLs write them.
  const cases: Array<[string, string]> = [
    ["http://A.Example/v1/health", "http://a.example:80"],
    ["https://a.example/v1/health", "https://a.example:443"],
    ["http://[0:0:0:0:0:0:0:1]:8080/v1/health", "http://[::1]:8080"],
  ];
  for (const [url, server] of cases) {
    const header = await signRequest(identity, "GET", new URL(url), { now });
    assert.equal(
      await accepts(verify, "GET", "/v1/health", header, "-", server),
      true,
      url,
    );
  }
  assert.throws(
    () => serverOrigin(new URL("ftp://a/x")),
    /only http and https URLs can be signed/,
  );
});

Deno.test("N copies of one signed request checked at the same time are accepted exactly once", async () => {
  const { identity, verify, now } = await setup();
  const url = new URL("http://h:1/v1/file?path=%2Fdata%2Fx");
  const header = await signRequest(identity, "GET", url, { now });
  const verdicts = await Promise.all(
    Array.from(
      { length: 16 },
      () => accepts(verify, "GET", url.pathname + url.search, header, "-"),
    ),
  );
  assert.equal(verdicts.filter((ok) => ok).length, 1, String(verdicts));
});

Deno.test("a nonce is taken before its signature is checked and given back when the signature fails", async () => {
  const { identity, verify, now } = await setup();
  const url = new URL("http://h:1/v1/health");
  const header = await signRequest(identity, "GET", url, { now });
  const forged = header.replace(
    /sig=(.)/,
    (_, c) => `sig=${c === "A" ? "B" : "A"}`,
  );
  // A forged copy being checked holds the nonce: the good copy arriving meanwhile is refused...
  const [bad, good] = await Promise.all([
    accepts(verify, "GET", "/v1/health", forged, "-"),
    accepts(verify, "GET", "/v1/health", header, "-"),
  ]);
  assert.deepEqual([bad, good], [false, false]);
  // ...and once the forgery has failed, the nonce is free for the real request, once.
  assert.equal(await accepts(verify, "GET", "/v1/health", header, "-"), true);
  assert.equal(await accepts(verify, "GET", "/v1/health", header, "-"), false);
});

Deno.test("one key flooding nonces does not lock out another key, and no dropped nonce can be replayed", async () => {
  const now = 1_000_000_000;
  const pairs = await Promise.all(
    ["mallory", "alice", "bob"].map((name) => generateKeys(name)),
  );
  const [mallory, alice, bob] = await Promise.all(
    pairs.map((k) => loadIdentity(k.privatePem, "id")),
  );
  const verify = await createVerifier(
    parseAuthorizedKeys(pairs.map((k) => k.publicLine).join(""), "ak"),
    { now: () => now, maxNoncesPerKey: 10, maxNonces: 25 },
  );
  const url = new URL("http://h:1/v1/health");
  const sent: string[] = [];
  const send = async (who: Identity, ts: number) => {
    const header = await signRequest(who, "GET", url, { now: ts });
    sent.push(header);
    return await accepts(verify, "GET", "/v1/health", header, "-");
  };
  // Mallory signs far more requests than the cache holds for one key: each is fresh, each is accepted.
  for (let i = 0; i < 100; i++) {
    assert.equal(await send(mallory, now - 60_000 + i), true, `mallory ${i}`);
  }
  for (let i = 0; i < 12; i++) {
    assert.equal(await send(alice, now - 30_000 + i), true, `alice ${i}`);
    assert.equal(await send(bob, now - 30_000 + i), true, `bob ${i}`);
  }
  // Mallory's oldest kept nonce is younger than Alice's and Bob's requests
  // above: with the cache full, Mallory's dropped nonces move only Mallory's floor.
  assert.equal(await send(alice, now - 20_000), true, "alice after the flood");
  for (const header of sent) {
    assert.equal(
      await accepts(verify, "GET", "/v1/health", header, "-"),
      false,
      "a replay is refused, kept or dropped",
    );
  }
});

Deno.test("stale and future timestamps, unknown keys and garbage headers are refused", async () => {
  const { identity, verify, now } = await setup();
  const url = new URL("http://h:1/v1/health");
  for (const skew of [-6 * 60_000, 6 * 60_000]) {
    const header = await signRequest(identity, "GET", url, { now: now + skew });
    assert.equal(
      await accepts(verify, "GET", "/v1/health", header, "-"),
      false,
      `skew ${skew}`,
    );
  }
  const inWindow = await signRequest(identity, "GET", url, {
    now: now - 60_000,
  });
  assert.equal(await accepts(verify, "GET", "/v1/health", inWindow, "-"), true);
  const stranger = await loadIdentity(
    (await generateKeys("eve")).privatePem,
    "eve",
  );
  assert.equal(
    await accepts(
      verify,
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
      await accepts(verify, "GET", "/v1/health", bad, "-"),
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
    () => parseAuthorizedKeys("ssh-ed25519x AAAA x\n", "/etc/keys"),
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
      await accepts(
        verifier,
        "GET",
        url.pathname,
        await signRequest(identity, "GET", url),
        "-",
        "http://h:80",
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
      'Invalid public key on line 1 of "/k/bad": expected "hsync-ed25519 BASE64 [comment]" or "ssh-ed25519 AAAA... [comment]"',
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

Deno.test("loadAuthorizedKeys() warns, naming the file and mode, when the file or its directory is writable by group or others", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "hsync_ak_" });
  try {
    const dir = join(tmp, "keys");
    await Deno.mkdir(dir);
    const file = join(dir, "authorized_keys");
    await Deno.writeTextFile(file, (await generateKeys("a")).publicLine);
    await Deno.chmod(dir, 0o755);
    await Deno.chmod(file, 0o644);
    assert.deepEqual((await loadAuthorizedKeys(file)).warnings, []);

    await Deno.chmod(file, 0o664);
    assert.deepEqual((await loadAuthorizedKeys(file)).warnings, [
      `Authorized_keys "${file}" is writable by group or others (mode 0664): whoever can write it can add a key; run chmod go-w on it`,
    ]);
    await Deno.chmod(file, 0o600);
    await Deno.chmod(dir, 0o1777);
    assert.deepEqual((await loadAuthorizedKeys(file)).warnings, [
      `Authorized_keys "${file}" is in directory "${dir}", writable by group or others (mode 1777): whoever can write there can replace the file; run chmod go-w on it`,
    ]);
    // Named through a symlink in a safe directory: the real file's directory counts too.
    const link = join(tmp, "ak_link");
    await Deno.symlink(file, link);
    await Deno.chmod(tmp, 0o700);
    assert.deepEqual((await loadAuthorizedKeys(link)).warnings, [
      `Authorized_keys "${link}" is in directory "${dir}", writable by group or others (mode 1777): whoever can write there can replace the file; run chmod go-w on it`,
    ]);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
