/** Tests of lib/shared/host_allow.ts: Allowed_host patterns (IPs, wildcards, CIDR v4/v6, mapped addresses). */
import assert from "node:assert/strict";
import { ConfigError } from "../lib/shared/errors.ts";
import {
  createHostMatcher,
  isLoopbackHost,
  normalizeAddress,
} from "../lib/shared/host_allow.ts";

const CASES: Array<[string, string[], string, boolean]> = [
  ["an empty list allows everyone", [], "203.0.113.7", true],
  ["an empty list allows IPv6 too", [], "2001:db8::1", true],
  ["exact IPv4 matches", ["127.0.0.1"], "127.0.0.1", true],
  ["exact IPv4 refuses another", ["127.0.0.1"], "127.0.0.2", false],
  ["exact IPv6 matches", ["::1"], "::1", true],
  [
    "exact IPv6 matches any spelling",
    ["2001:db8::1"],
    "2001:0db8:0:0::0001",
    true,
  ],
  ["exact IPv6 refuses another", ["::1"], "::2", false],
  ["wildcard matches its octets", ["192.168.*.*"], "192.168.44.3", true],
  ["wildcard refuses other octets", ["192.168.*.*"], "192.169.0.1", false],
  ["wildcard in the middle", ["10.*.0.1"], "10.200.0.1", true],
  ["wildcard is not a prefix match", ["10.0.0.*"], "10.0.0.1", true],
  ["wildcard never matches IPv6", ["10.*.*.*"], "2001:db8::1", false],
  ["a single star allows all", ["*"], "2001:db8::1", true],
  ["CIDR v4 inside", ["10.0.0.0/8"], "10.255.1.2", true],
  ["CIDR v4 outside", ["10.0.0.0/8"], "11.0.0.1", false],
  ["CIDR v4 /32", ["192.0.2.5/32"], "192.0.2.5", true],
  ["CIDR v4 /0 allows every IPv4", ["0.0.0.0/0"], "198.51.100.1", true],
  ["CIDR v6 inside", ["fd00::/8"], "fd12:3456::1", true],
  ["CIDR v6 outside", ["fd00::/8"], "fe80::1", false],
  ["CIDR v6 never matches IPv4", ["::/0"], "127.0.0.1", false],
  [
    "mapped peer matches an IPv4 entry",
    ["127.0.0.1"],
    "::ffff:127.0.0.1",
    true,
  ],
  ["mapped peer matches an IPv4 CIDR", ["10.0.0.0/8"], "::ffff:10.1.2.3", true],
  [
    "mapped peer matches a wildcard",
    ["192.168.*.*"],
    "::ffff:192.168.1.1",
    true,
  ],
  [
    "mapped entry matches an IPv4 peer",
    ["::ffff:127.0.0.1"],
    "127.0.0.1",
    true,
  ],
  [
    "mapped CIDR entry matches an IPv4 peer",
    ["::ffff:10.0.0.0/104"],
    "10.9.9.9",
    true,
  ],
  ["bracketed IPv6 peer", ["::1"], "[::1]", true],
  [
    "one of several patterns",
    ["10.0.0.0/8", "::1", "192.168.*.*"],
    "::1",
    true,
  ],
  ["none of several patterns", ["10.0.0.0/8", "::1"], "172.16.0.1", false],
  ["a peer that is not an IP", ["127.0.0.1"], "localhost", false],
  ["an empty peer", ["127.0.0.1"], "", false],
];

for (const [name, patterns, address, allowed] of CASES) {
  Deno.test(`createHostMatcher(): ${name} (${patterns.join(", ") || "empty"} vs ${address || '""'})`, () => {
    assert.equal(createHostMatcher(patterns)(address), allowed);
  });
}

const INVALID = [
  "192.168.*",
  "192.168.1.256",
  "300.*.*.*",
  "10.0.0.0/33",
  "fd00::/129",
  "10.0.0.0/x",
  "localhost",
  "1.2.3",
  "10.0.0.0/8/8",
  "::gg",
  "192.168.1.1*",
];

for (const pattern of INVALID) {
  Deno.test(`createHostMatcher() refuses the invalid pattern "${pattern}" naming it`, () => {
    assert.throws(
      () => createHostMatcher(["127.0.0.1", pattern]),
      (error: unknown) =>
        error instanceof ConfigError &&
        error.message.includes(`"${pattern}"`) &&
        error.message.startsWith("Invalid Allowed_host pattern"),
    );
  });
}

Deno.test("normalizeAddress() shows IPv4-mapped IPv6 as IPv4 and leaves non-addresses alone", () => {
  assert.equal(normalizeAddress("::ffff:127.0.0.1"), "127.0.0.1");
  assert.equal(normalizeAddress("127.0.0.1"), "127.0.0.1");
  assert.equal(normalizeAddress("2001:0db8::0001"), "2001:db8::1");
  assert.equal(normalizeAddress("[::1]"), "::1");
  assert.equal(normalizeAddress("not-an-ip"), "not-an-ip");
});

Deno.test("isLoopbackHost() knows this machine's addresses and resolves no names", () => {
  for (
    const host of [
      "127.0.0.1",
      "127.255.0.9",
      "::1",
      "[::1]",
      "0:0:0:0:0:0:0:1",
      "::ffff:127.0.0.1",
      "localhost",
      "LOCALHOST",
    ]
  ) assert.equal(isLoopbackHost(host), true, host);
  for (
    const host of [
      "0.0.0.0",
      "10.1.2.3",
      "128.0.0.1",
      "::",
      "::2",
      "fe80::1",
      "localhost.example",
      "my-laptop",
      "",
    ]
  ) assert.equal(isLoopbackHost(host), false, host);
});
