/** Tests of lib/client/printable.ts. */
import assert from "node:assert/strict";
import fc from "fast-check";
import { printable } from "../lib/client/printable.ts";

Deno.test("printable() escapes terminal controls and bidi overrides, keeps the rest", () => {
  assert.equal(printable("plain/näme ü 文件.txt"), "plain/näme ü 文件.txt");
  assert.equal(printable("a\x1b]0;owned\x07b"), "a\\x1b]0;owned\\x07b");
  assert.equal(printable("x\r\nhsync: done"), "x\\x0d\\x0ahsync: done");
  assert.equal(printable("\x9b31m"), "\\x9b31m");
  assert.equal(printable("evil\u202Etxt.exe"), "evil\\u202etxt.exe");
  assert.equal(printable("\x7f\t"), "\\x7f\\x09");
});

// deno-lint-ignore no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

Deno.test("printable() never leaves a control character in its output", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 64 }), (s) => {
      assert.ok(!UNSAFE.test(printable(s)));
    }),
  );
});
