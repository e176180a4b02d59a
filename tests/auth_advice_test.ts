/** Tests of lib/client/auth_advice.ts: a 401 told as "no key" or "this key was refused", with the reason the client can see. */
import assert from "node:assert/strict";
import {
  type AuthFacts,
  Unauthorized,
  withAuthAdvice,
} from "../lib/client/auth_advice.ts";
import { ConnectError, HttpError } from "../lib/shared/errors.ts";

const NOW = Date.UTC(2026, 0, 1);
const signed: AuthFacts = {
  host: "data1:10808",
  signed: true,
  identityFile: "/h/.hsync/id_ed25519",
  fingerprint: "SHA256:abc",
  hsyncDir: "/h/.hsync",
  now: () => NOW,
};

function refused(cause: HttpError): ConnectError {
  return new ConnectError("Not authenticated by data1:10808: x", {
    status: 401,
    cause,
  });
}

function told(error: unknown, facts: AuthFacts): string {
  return (withAuthAdvice(error, facts) as Error).message;
}

Deno.test("withAuthAdvice() words each 401 by what the client knows", () => {
  const plain = new Unauthorized(
    "unauthorized",
    "Authentication required",
    NOW,
  );
  const cases: Array<[string, ConnectError, AuthFacts, string]> = [
    [
      "no key",
      refused(plain),
      { host: "data1:10808", signed: false, hsyncDir: "/h/.hsync" },
      'data1:10808 requires a key: run "hsync keygen" and add the public line of "/h/.hsync/id_ed25519.pub" to the server\'s Authorized_keys',
    ],
    [
      "a key refused",
      refused(plain),
      signed,
      'data1:10808 refused key SHA256:abc ("/h/.hsync/id_ed25519"): add its public line (in "/h/.hsync/id_ed25519.pub") to the server\'s Authorized_keys',
    ],
    [
      "the server's clock 7 minutes behind",
      refused(new Unauthorized("unauthorized", "x", NOW - 7 * 60_000)),
      signed,
      "data1:10808 refused key SHA256:abc (\"/h/.hsync/id_ed25519\"): this machine's clock is 7 minutes ahead of the server's (signatures are accepted within 5 minutes; set both clocks right)",
    ],
    [
      "a name the server does not have",
      refused(
        new HttpError(
          401,
          "unknown_server_name",
          'Host "a:1" is not one of this server\'s names',
        ),
      ),
      signed,
      'data1:10808 refused key SHA256:abc ("/h/.hsync/id_ed25519"): Host "a:1" is not one of this server\'s names',
    ],
  ];
  for (const [what, error, facts, want] of cases) {
    assert.equal(told(error, facts), want, what);
  }
});

Deno.test("withAuthAdvice() leaves other errors as they are", () => {
  const other = new ConnectError(
    "Cannot reach data1:10808: connection refused",
  );
  assert.equal(withAuthAdvice(other, signed), other);
  const forbidden = new ConnectError("x", { status: 403 });
  assert.equal(withAuthAdvice(forbidden, signed), forbidden);
});
