/** Tests of lib/server/server_names.ts: which names a signature may be bound to on one hsyncd, and how a request's authority is read. */
import assert from "node:assert/strict";
import {
  certificateNames,
  requestAuthority,
  ServerNames,
} from "../lib/server/server_names.ts";
import {
  parseAuthority,
  parseServerName,
  serverOrigin,
} from "../lib/shared/server_origin.ts";
import { haveOpenssl, makeTestPki } from "./_tls.ts";

const LOCAL = "127.0.0.1";
const REMOTE = "192.0.2.9";

Deno.test("parseAuthority() takes host or host:port only, in URL form", () => {
  const good: Array<[string, { host: string; port?: number }]> = [
    ["Example.COM", { host: "example.com" }],
    ["example.com:8080", { host: "example.com", port: 8080 }],
    ["127.1:0080", { host: "127.0.0.1", port: 80 }],
    ["[0:0:0:0:0:0:0:1]:10808", { host: "[::1]", port: 10808 }],
    ["[fd00::2]", { host: "[fd00::2]" }],
  ];
  for (const [text, want] of good) {
    assert.deepEqual(parseAuthority(text), want, text);
  }
  for (
    const bad of [
      "",
      "a b",
      "a:0",
      "a:65536",
      "a:",
      "a:x",
      "user@a",
      "a/b",
      "127.0.0.1/v1/file?path=/etc/shadow#",
      "a?b",
      "::1",
      "[::1",
      "[zz::1]",
      "a:1:2",
    ]
  ) {
    assert.equal(parseAuthority(bad), undefined, bad);
  }
});

Deno.test("parseServerName() reads host, host:port, [IPv6]:port and scheme://host[:port], and says why it refuses the rest", () => {
  assert.deepEqual(parseServerName(" data1.lab.example "), {
    host: "data1.lab.example",
  });
  assert.deepEqual(parseServerName("localhost:2222"), {
    host: "localhost",
    port: 2222,
  });
  assert.deepEqual(parseServerName("[::1]:2222"), {
    host: "[::1]",
    port: 2222,
  });
  assert.deepEqual(parseServerName("HTTPS://files.example"), {
    scheme: "https",
    host: "files.example",
  });
  assert.deepEqual(parseServerName("http://proxy:8080"), {
    scheme: "http",
    host: "proxy",
    port: 8080,
  });
  for (
    const bad of [
      "::1",
      "host:99999",
      "*.example.com",
      "https://a/path",
      "ftp://a",
      "a b",
    ]
  ) {
    assert.throws(
      () => parseServerName(bad),
      (e: unknown) =>
        e instanceof TypeError &&
        e.message ===
          `"${bad}" is not host, host:port or https://host[:port] (an IPv6 address goes in brackets: [::1]:10808)`,
      bad,
    );
  }
});

Deno.test("serverOrigin() always writes the port", () => {
  assert.equal(serverOrigin(new URL("http://h/x")), "http://h:80");
  assert.equal(serverOrigin(new URL("https://h/x")), "https://h:443");
  assert.equal(serverOrigin(new URL("https://[::1]:8/x")), "https://[::1]:8");
});

Deno.test("a server on one address answers to that address and port only (and localhost when it is loopback)", () => {
  const names = new ServerNames({
    tls: false,
    hostIp: "10.1.2.3",
    port: 10808,
    hostname: "data1",
  });
  assert.equal(
    names.resolve("10.1.2.3:10808", REMOTE),
    "http://10.1.2.3:10808",
  );
  for (const other of ["10.1.2.3", "10.1.2.3:10809", "data1:10808"]) {
    assert.equal(names.resolve(other, REMOTE), undefined, other);
  }
  const loop = new ServerNames({ tls: true, hostIp: LOCAL, port: 8443 });
  assert.equal(loop.resolve("localhost:8443", LOCAL), "https://localhost:8443");
  assert.equal(loop.resolve("127.0.0.1:8443", LOCAL), "https://127.0.0.1:8443");
  assert.equal(loop.resolve("127.0.0.1:80", LOCAL), undefined);
  assert.equal(loop.resolve("127.0.0.1:8443/x", LOCAL), undefined);
});

Deno.test("a wildcard server answers to its host name and interface addresses; loopback names count only for a peer on this machine", () => {
  const names = new ServerNames({
    tls: false,
    hostIp: "::",
    port: 10808,
    hostname: "Data1",
    interfaces: () => ["127.0.0.1", "192.0.2.2", "::1", "fd00::2"],
  });
  for (
    const authority of ["data1:10808", "192.0.2.2:10808", "[fd00::2]:10808"]
  ) {
    assert.ok(names.resolve(authority, REMOTE), authority);
  }
  for (
    const authority of ["localhost:10808", "127.0.0.1:10808", "[::1]:10808"]
  ) {
    assert.ok(names.resolve(authority, LOCAL), authority);
    assert.equal(
      names.resolve(authority, "::ffff:127.0.0.1") !== undefined,
      true,
    );
    // To a client elsewhere, "localhost" is its own machine: a signature for it is no good here.
    assert.equal(names.resolve(authority, REMOTE), undefined, authority);
  }
  // Listening on 0.0.0.0 is IPv4 only.
  const v4 = new ServerNames({
    tls: false,
    hostIp: "0.0.0.0",
    port: 10808,
    interfaces: () => ["192.0.2.2", "fd00::2"],
  });
  assert.ok(v4.resolve("192.0.2.2:10808", REMOTE));
  assert.equal(v4.resolve("[fd00::2]:10808", REMOTE), undefined);
  assert.equal(v4.wildcard, true);
});

Deno.test("interface addresses are read again, at most every refreshMs, when a request names an unknown address", () => {
  let clock = 0;
  let addresses = ["192.0.2.2"];
  let reads = 0;
  const names = new ServerNames({
    tls: false,
    hostIp: "0.0.0.0",
    port: 10808,
    interfaces: () => {
      reads++;
      return addresses;
    },
    refreshMs: 1000,
    now: () => clock,
  });
  assert.equal(reads, 1);
  addresses = ["192.0.2.2", "198.51.100.7"];
  assert.equal(names.resolve("198.51.100.7:10808", REMOTE), undefined);
  assert.equal(reads, 1, "too soon");
  clock = 1000;
  assert.equal(names.resolve("no-such-name:10808", REMOTE), undefined);
  assert.equal(reads, 1, "a DNS name is never an interface address");
  assert.ok(names.resolve("198.51.100.7:10808", REMOTE));
  assert.equal(reads, 2);
  // A failure to read is no addresses, and no error.
  const failing = new ServerNames({
    tls: false,
    hostIp: "0.0.0.0",
    port: 1,
    interfaces: () => {
      throw new Deno.errors.PermissionDenied("netlink");
    },
  });
  assert.equal(failing.resolve("192.0.2.2:1", REMOTE), undefined);
  assert.ok(failing.resolve("127.0.0.1:1", LOCAL));
});

Deno.test("Server_name entries: a bare host is on the server's own port, a scheme entry means what its URL means", () => {
  const names = new ServerNames({
    tls: false,
    hostIp: LOCAL,
    port: 10808,
    configured: [
      parseServerName("data1.lab.example"),
      parseServerName("localhost:2222"),
      parseServerName("https://files.example"),
      parseServerName("http://[fd00::9]:8080"),
    ],
  });
  const cases: Array<[string, string, string | undefined]> = [
    ["data1.lab.example:10808", REMOTE, "http://data1.lab.example:10808"],
    ["data1.lab.example", REMOTE, undefined],
    // An SSH tunnel's far end connects from anywhere: a listed name counts for every peer.
    ["localhost:2222", REMOTE, "http://localhost:2222"],
    // A proxy that ends TLS: the client signed https, hsyncd sees plain HTTP.
    ["files.example", LOCAL, "https://files.example:443"],
    ["files.example:443", LOCAL, "https://files.example:443"],
    ["files.example:10808", LOCAL, undefined],
    ["[fd00::9]:8080", REMOTE, "http://[fd00::9]:8080"],
  ];
  for (const [authority, peer, want] of cases) {
    assert.equal(names.resolve(authority, peer), want, authority);
  }
  assert.deepEqual(names.list(), [
    "http://127.0.0.1:10808",
    "http://[fd00::9]:8080",
    "http://data1.lab.example:10808",
    "http://localhost:10808",
    "http://localhost:2222",
    "https://files.example:443",
  ]);
});

Deno.test({
  name:
    "the certificate's DNS names and IP addresses are names of the server, wildcards are not",
  ignore: !await haveOpenssl(),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "hsync_names_" });
    try {
      const pki = await makeTestPki(dir);
      const cert = await Deno.readTextFile(pki.certFile);
      const chain = cert + await Deno.readTextFile(pki.caFile);
      assert.deepEqual(certificateNames(chain), ["localhost", "127.0.0.1"]);
      await Deno.writeTextFile(
        `${dir}/w.ext`,
        "subjectAltName=DNS:*.example.com,DNS:Data1.Example,IP:fd00:0:0:0:0:0:0:2,email:a@b.example\n",
      );
      for (
        const args of [
          "req -newkey rsa:2048 -nodes -keyout w.key -out w.csr -subj /CN=w",
          "x509 -req -in w.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out w.pem -days 2 -extfile w.ext",
        ].map((line) => line.split(" "))
      ) {
        const r = await new Deno.Command("openssl", {
          args,
          cwd: dir,
          stdout: "null",
          stderr: "null",
        }).output();
        assert.ok(r.success, args.join(" "));
      }
      const wild = await Deno.readTextFile(`${dir}/w.pem`);
      assert.deepEqual(certificateNames(wild), ["data1.example", "[fd00::2]"]);
      const names = new ServerNames({
        tls: true,
        hostIp: "10.1.2.3",
        port: 8443,
        certificate: wild,
      });
      assert.equal(
        names.resolve("Data1.example:8443", REMOTE),
        "https://data1.example:8443",
      );
      assert.equal(names.resolve("a.example.com:8443", REMOTE), undefined);
      assert.deepEqual(certificateNames("not a certificate"), []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("requestAuthority() reads Host (or the HTTP/2 authority) and refuses a Host that is not host[:port] or disagrees with the target", () => {
  const req = (url: string, host?: string) =>
    new Request(url, host === undefined ? {} : { headers: { host } });
  assert.equal(
    requestAuthority(req("http://localhost/v1/health")),
    "localhost",
  );
  assert.equal(
    requestAuthority(req("https://a.example:8443/x?y", "A.example:8443")),
    "A.example:8443",
  );
  // Deno builds request.url from the Host header as it came, so a bad Host shows in both.
  assert.equal(
    requestAuthority(
      req(
        "http://127.0.0.1/v1/file?path=/etc/shadow#/v1/health",
        "127.0.0.1/v1/file?path=/etc/shadow#",
      ),
    ),
    undefined,
  );
  // An absolute request target naming another server than Host.
  assert.equal(requestAuthority(req("http://a:1/x", "b:2")), undefined);
});
