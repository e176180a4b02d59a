/** Tests of lib/client/filters.ts and lib/client/selection.ts: the selection rules (rsync's glob spellings, regular expressions, --files-from) as tables, and the -from files read into them. */
import assert from "node:assert/strict";
import { type FilterOptions, PathFilter } from "../lib/client/filters.ts";
import { selectionOptions } from "../lib/client/selection.ts";
import type { SelectFlags } from "../lib/client/client_flags.ts";
import { UsageError } from "../lib/shared/errors.ts";
import { loadGlobs } from "../lib/shared/glob.ts";

// PathFilter compiles globs synchronously: what a run awaits first (readyFilter).
await loadGlobs();

const parts = (rel: string) => rel.split("/");

/** One row: a relative path, whether it is a directory, and whether the filter wants it. */
type Row = [path: string, isDir: boolean, wanted: boolean];

function check(options: FilterOptions, rows: Row[]): void {
  const f = new PathFilter(options);
  for (const [rel, isDir, wanted] of rows) {
    assert.equal(
      f.wants(parts(rel), isDir),
      wanted,
      `${JSON.stringify(options)}: ${rel}${isDir ? "/" : ""}`,
    );
  }
}

Deno.test("PathFilter without globs wants everything", () => {
  const f = new PathFilter();
  for (const rel of ["a", "a/b/c.txt", ".hidden"]) {
    assert.ok(f.wants(parts(rel)), rel);
    assert.ok(f.includes(parts(rel)), rel);
    assert.ok(!f.excludes(parts(rel)), rel);
  }
});

Deno.test("--exclude of a directory drops everything below it; a pattern without / matches a name at any depth", () => {
  check({ exclude: ["build", "*.tmp"] }, [
    ["build", true, false],
    ["build/out/x.o", false, false],
    ["src/build/x.o", false, false],
    ["src/a.tmp", false, false],
    ["src/a.tmp.keep", false, true],
    ["src/main.ts", false, true],
    [".git/config", false, true],
  ]);
});

Deno.test("--exclude 'tmp/' drops every directory named tmp and all below it, not a file named tmp", () => {
  check({ exclude: ["tmp/"] }, [
    ["tmp", true, false],
    ["tmp/x", false, false],
    ["tmp/in/y", false, false],
    ["a/b/tmp", true, false],
    ["a/b/tmp/z", false, false],
    ["tmp", false, true],
    ["a/tmp", false, true],
    ["tmpx", true, true],
    ["a/tmpx/y", false, true],
  ]);
});

Deno.test("--exclude 'a/b/' with a slash inside is a directory-only suffix of the path", () => {
  check({ exclude: ["a/b/"] }, [
    ["a/b", true, false],
    ["a/b/f", false, false],
    ["x/a/b/f", false, false],
    ["a/b", false, true],
    ["a/c/b/f", false, true],
  ]);
});

Deno.test("a leading / anchors a glob at the transfer root", () => {
  check({ exclude: ["/build", "/a/*.o"] }, [
    ["build", true, false],
    ["build/x", false, false],
    ["build", false, false],
    ["src/build", true, true],
    ["src/build/x", false, true],
    ["a/x.o", false, false],
    ["b/a/x.o", false, true],
  ]);
});

Deno.test("a glob with a / inside matches the end of the path, as rsync's: a/b also matches x/a/b", () => {
  check({ exclude: ["a/b"] }, [
    ["a/b", false, false],
    ["a/b/f", false, false],
    ["x/a/b", true, false],
    ["x/a/b/f", false, false],
    ["a/x/b", false, true],
    ["ab", false, true],
    ["xa/b", false, true],
  ]);
});

Deno.test("* and ? stay inside one name; ** crosses directories", () => {
  check({ exclude: ["a/*.c", "?.h"] }, [
    ["a/x.c", false, false],
    ["a/b/x.c", false, true],
    ["x.h", false, false],
    ["d/y.h", false, false],
    ["xy.h", false, true],
  ]);
  check({ exclude: ["x/**/f"] }, [
    ["x/a/f", false, false],
    ["x/a/b/f", false, false],
    ["q/x/a/b/f", false, false],
    ["x/f", false, true],
    ["x/a/g", false, true],
  ]);
  check({ exclude: ["**/b"] }, [
    ["b", false, false],
    ["a/b", true, false],
    ["a/x/y/b/f", false, false],
    ["a/bb", false, true],
  ]);
  // rsync's ** inside a name crosses directories too.
  check({ exclude: ["x**f"] }, [
    ["x/a/b/f", false, false],
    ["q/xaf", false, false],
    ["x/a/b/g", false, true],
  ]);
});

Deno.test("rsync's trailing /** leaves the directory itself, /*** takes it too; /**/ stands for at least one directory", () => {
  check({ exclude: ["a/**"] }, [
    ["a", true, true],
    ["a/x", false, false],
    ["a/x/y", false, false],
    ["q/a/x", false, false],
  ]);
  check({ exclude: ["a/***"] }, [
    ["a", true, false],
    ["a", false, false],
    ["a/x/y", false, false],
    ["ab", true, true],
  ]);
  check({ exclude: ["a/**/b"] }, [
    ["a/b", false, true],
    ["a/x/b", false, false],
    ["a/x/y/b/f", false, false],
  ]);
});

Deno.test("a leading ! is a name, not picomatch's negation", () => {
  check({ exclude: ["!x", "/!y"] }, [
    ["!x", false, false],
    ["d/!x", false, false],
    ["x", false, true],
    ["!y", false, false],
    ["d/!y", false, true],
    ["y", false, true],
  ]);
});

Deno.test("empty globs and a lone / name nothing", () => {
  check({ exclude: ["", "/"] }, [["a", false, true], ["a/b", true, true]]);
});

Deno.test("--include keeps matching paths and everything below a matching directory; --exclude still wins", () => {
  const options = { include: ["logs", "*.csv"], exclude: ["old"] };
  check(options, [
    ["logs/today.txt", false, true],
    ["data/a.csv", false, true],
    ["data/a.json", false, false],
    ["logs/old/x.txt", false, false],
    ["old/a.csv", false, false],
  ]);
  const f = new PathFilter(options);
  assert.ok(f.includes(parts("logs"), true));
  assert.ok(!f.includes(parts("data"), true));
  assert.ok(f.excludes(parts("logs/old"), true));
});

Deno.test("--include 'logs/' selects directories named logs with all below them, not a file named logs; '/top' only at the root", () => {
  check({ include: ["logs/", "/top"] }, [
    ["logs", true, true],
    ["logs/a", false, true],
    ["x/logs/b/c", false, true],
    ["logs", false, false],
    ["x/logs", false, false],
    ["top", false, true],
    ["top/y", false, true],
    ["x/top", false, false],
    ["other", true, false],
  ]);
});

Deno.test("--include does not exclude: a directory on the way to a match is still walked", () => {
  const f = new PathFilter({ include: ["*.csv"] });
  assert.ok(!f.excludes(parts("data"), true));
  assert.ok(!f.excludes(parts("data/deep"), true));
  assert.ok(!f.wants(parts("data"), true));
  assert.ok(f.wants(parts("data/deep/a.csv"), false));
});

Deno.test("--exclude-regex is searched, unanchored, in the relative path; a directory's match counts below it; it adds to the globs", () => {
  check({ exclude: ["*.bak"], excludeRegex: ["^cache$", "\\.tmp\\d+$"] }, [
    ["cache", true, false],
    ["cache/x/y", false, false],
    ["a/cache", true, true],
    ["a/b.tmp12", false, false],
    ["a.tmp12/x", false, false],
    ["a/b.tmp", false, true],
    ["a/x.bak", false, false],
    ["a/x.txt", false, true],
  ]);
  check({ excludeRegex: ["b/c"] }, [
    ["a/b/c", false, false],
    ["ab/cd", false, false],
    ["a/b", true, true],
  ]);
});

Deno.test("--include-regex selects like --include, and adds to the include globs", () => {
  check({ include: ["*.csv"], includeRegex: ["^runs/run\\d+$"] }, [
    ["runs/run4", true, true],
    ["runs/run4/a.bam", false, true],
    ["runs/runX/a.bam", false, false],
    ["other/x.csv", false, true],
    ["other/x.txt", false, false],
  ]);
  check({ includeRegex: ["\\.log$"], exclude: ["old/"] }, [
    ["a/b.log", false, true],
    ["old/b.log", false, false],
    ["a/b.txt", false, false],
  ]);
});

Deno.test("--files-from wants listed paths, all below a listed directory, and the directories on the way as directories only", () => {
  const options = { filesFrom: ["data/a.csv", "logs"] };
  check(options, [
    ["data/a.csv", false, true],
    ["data/b.csv", false, false],
    ["data", true, true],
    ["data", false, false],
    ["data/sub", true, false],
    ["logs", true, true],
    ["logs/x/y", false, true],
    ["other", true, false],
    ["other/data/a.csv", false, false],
    ["data/a.csv.bak", false, false],
  ]);
  // What is not on the way to a listed path is not walked.
  const f = new PathFilter(options);
  assert.ok(f.excludes(parts("other"), true));
  assert.ok(!f.excludes(parts("data"), true));
  assert.ok(f.excludes(parts("data/sub"), true));
  // The kind not known yet: left out only when left out either way.
  assert.ok(!f.excludes(parts("data")));
  assert.ok(f.wants(parts("data")));
});

Deno.test("--files-from combines with --exclude and --include; '.' is the whole root; an empty list selects nothing", () => {
  check({ filesFrom: ["logs"], exclude: ["*.tmp"] }, [
    ["logs/a.log", false, true],
    ["logs/a.tmp", false, false],
  ]);
  check({ filesFrom: ["logs", "data"], include: ["*.log"] }, [
    ["logs/a.log", false, true],
    ["logs/a.txt", false, false],
    ["data/b.log", false, true],
  ]);
  check({ filesFrom: [""] }, [["any/thing", false, true]]);
  check({ filesFrom: ["./a/", "/b"] }, [["a/x", false, true], [
    "b",
    false,
    true,
  ]]);
  check({ filesFrom: [] }, [["a", false, false], ["a", true, false]]);
});

Deno.test("the kind not known: a directory-only rule excludes only what it would exclude either way", () => {
  const f = new PathFilter({ exclude: ["tmp/", "*.o"] });
  assert.ok(!f.excludes(parts("tmp")));
  assert.ok(f.excludes(parts("tmp"), true));
  assert.ok(f.excludes(parts("tmp/x")));
  assert.ok(f.excludes(parts("a.o")));
  assert.ok(f.wants(parts("tmp")));
  const inc = new PathFilter({ include: ["logs/"] });
  assert.ok(inc.includes(parts("logs")));
  assert.ok(!inc.includes(parts("logs"), false));
});

// ------------------------------------------------------------ selectionOptions

function flags(over: Partial<SelectFlags> = {}): SelectFlags {
  return {
    includeRegex: [],
    excludeRegex: [],
    includeFrom: [],
    excludeFrom: [],
    ...over,
  };
}

/** A reader over fixed texts: a missing name is NotFound, as Deno.readTextFile's. */
function reader(files: Record<string, string>) {
  const read: string[] = [];
  return {
    read,
    fn(name: string): Promise<string> {
      read.push(name);
      if (!(name in files)) {
        return Promise.reject(new Deno.errors.NotFound(`open '${name}'`));
      }
      return Promise.resolve(files[name]);
    },
  };
}

Deno.test("selectionOptions adds the lines of -from files to the globs: CRLF, blank lines and # or ; comments as rsync reads them", async () => {
  const r = reader({
    inc: "*.csv\r\n\r\n# a comment\n; another\n  \nlogs/\n",
    exc: "tmp/\n/build",
  });
  const options = await selectionOptions(
    flags({
      includeFrom: ["inc"],
      excludeFrom: ["exc"],
      includeRegex: ["^a"],
      excludeRegex: ["b$"],
    }),
    ["*.txt"],
    ["*.o"],
    r.fn,
  );
  assert.deepEqual(options, {
    include: ["*.txt", "*.csv", "logs/"],
    exclude: ["*.o", "tmp/", "/build"],
    includeRegex: ["^a"],
    excludeRegex: ["b$"],
  });
  assert.deepEqual(r.read, ["inc", "exc"]);
});

Deno.test("selectionOptions reads --files-from paths relative: ./ and / removed, . the root", async () => {
  const r = reader({ "-": "./a/b\n/c/\nd//e\n.\n#x\n" });
  const options = await selectionOptions(
    flags({ filesFrom: "-" }),
    [],
    [],
    r.fn,
  );
  assert.deepEqual(options.filesFrom, ["a/b", "c", "d/e", ""]);
  const none = await selectionOptions(flags(), [], [], r.fn);
  assert.equal(none.filesFrom, undefined);
});

Deno.test("selectionOptions refuses a --files-from line with '..', naming it", async () => {
  const r = reader({ list: "ok\nx/../../etc\n" });
  await assert.rejects(
    selectionOptions(flags({ filesFrom: "list" }), [], [], r.fn),
    (e: Error) => {
      assert.ok(e instanceof UsageError);
      assert.equal(
        e.message,
        'Invalid line "x/../../etc" in --files-from file "list": ".." leaves the transfer root',
      );
      return true;
    },
  );
});

Deno.test("selectionOptions: a file that cannot be read is a usage error naming it", async () => {
  await assert.rejects(
    selectionOptions(flags({ excludeFrom: ["x"] }), [], [], reader({}).fn),
    (e: Error) => {
      assert.ok(e instanceof UsageError);
      assert.equal(
        e.message,
        'Cannot read --exclude-from file "x": no such file or directory',
      );
      return true;
    },
  );
});

Deno.test("selectionOptions: standard input named by two -from flags is a usage error, before anything is read", async () => {
  const r = reader({ "-": "a\n" });
  await assert.rejects(
    selectionOptions(
      flags({ includeFrom: ["-"], filesFrom: "-" }),
      [],
      [],
      r.fn,
    ),
    (e: Error) => {
      assert.ok(e instanceof UsageError);
      assert.equal(
        e.message,
        'Standard input can be read only once: "-" is given to --include-from and --files-from',
      );
      return true;
    },
  );
  assert.deepEqual(r.read, []);
});
