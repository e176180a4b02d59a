/** Tests of lib/client/filters.ts: --include and --exclude on relative paths, where a directory's match counts for everything below it. */
import assert from "node:assert/strict";
import { PathFilter } from "../lib/client/filters.ts";

const parts = (rel: string) => rel.split("/");

Deno.test("PathFilter without globs wants everything", () => {
  const f = new PathFilter();
  for (const rel of ["a", "a/b/c.txt", ".hidden"]) {
    assert.ok(f.wants(parts(rel)), rel);
    assert.ok(f.includes(parts(rel)), rel);
    assert.ok(!f.excludes(parts(rel)), rel);
  }
});

Deno.test("--exclude of a directory drops everything below it; a pattern without / matches a name at any depth", () => {
  const f = new PathFilter({ exclude: ["build", "*.tmp"] });
  const table: Array<[string, boolean]> = [
    ["build", false],
    ["build/out/x.o", false],
    ["src/build/x.o", false],
    ["src/a.tmp", false],
    ["src/a.tmp.keep", true],
    ["src/main.ts", true],
    [".git/config", true],
  ];
  for (const [rel, wanted] of table) {
    assert.equal(f.wants(parts(rel)), wanted, rel);
  }
});

Deno.test("--include keeps matching paths and everything below a matching directory; --exclude still wins", () => {
  const f = new PathFilter({ include: ["logs", "*.csv"], exclude: ["old"] });
  const table: Array<[string, boolean]> = [
    ["logs/today.txt", true],
    ["data/a.csv", true],
    ["data/a.json", false],
    ["logs/old/x.txt", false],
    ["old/a.csv", false],
  ];
  for (const [rel, wanted] of table) {
    assert.equal(f.wants(parts(rel)), wanted, rel);
  }
  assert.ok(f.includes(parts("logs")));
  assert.ok(!f.includes(parts("data")));
  assert.ok(f.excludes(parts("logs/old")));
});
