/** Tests of lib/server/endpoints/glob.ts and glob_walk.ts: /v1/glob through the handler, one level, fixed after a glob, `**`, refusals and bounds. */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { GlobMatch } from "../lib/shared/wire.ts";
import { statEntry } from "../lib/server/endpoints/_checked.ts";
import {
  createVerifier,
  generateKeys,
  parseAuthorizedKeys,
} from "../lib/shared/auth.ts";
import {
  expectError,
  type Fixture,
  SECRET,
  withFixture,
} from "./_server_fixture.ts";

/** Adds the trees the globs below walk to a fixture's root. */
async function addTrees(f: Fixture): Promise<void> {
  const at = (rel: string) => join(f.root, rel);
  for (
    const dir of [
      "data/runs/.ssh",
      "data/runs/sub.bam",
      "data/run41/out",
      "data/run42/out",
      "data/run43",
      "data/run5/out",
      "tree/a/b/c",
      "tree/.dot",
    ]
  ) await Deno.mkdir(at(dir), { recursive: true });
  for (
    const file of [
      "data/runs/a.bam",
      "data/runs/b.bam",
      "data/runs/c.txt",
      "data/runs/.hidden.bam",
      "data/run41/out/x.log",
      "data/run41/out/y.txt",
      "data/run42/out/z.log",
      "data/run5/out/w.log",
      "tree/top.log",
      "tree/a/mid.log",
      "tree/a/.d.log",
      "tree/a/b/c/deep.log",
      "tree/.dot/hidden.log",
    ]
  ) await Deno.writeTextFile(at(file), file);
  // Refused: a Forbidden_file name, one in a Forbidden_dir, a link out.
  await Deno.writeTextFile(at("data/runs/id_rsa.bam"), SECRET);
  await Deno.writeTextFile(at("data/runs/.ssh/key.bam"), SECRET);
  await Deno.writeTextFile(at("data/run41/out/id_rsa.log"), SECRET);
  await Deno.symlink(join(f.tmp, "secret.txt"), at("data/runs/leak.bam"));
  await Deno.symlink(join(f.tmp, "secret.txt"), at("tree/a/leak.log"));
  // Followed: a link that stays inside, as a listing follows it.
  await Deno.symlink("a.bam", at("data/runs/in.bam"));
}

/** `GET /v1/glob?pattern=` of `rel` below the fixture's root (or of `pattern` as it is). */
function glob(
  f: Fixture,
  rel: string,
  query = "",
  init?: RequestInit,
): Promise<Response> {
  const pattern = rel.startsWith("/") ? rel : join(f.root, rel);
  return f.call(
    `/v1/glob?pattern=${encodeURIComponent(pattern)}${query}`,
    init,
  );
}

/** The matches of an answer (200 expected), paths relative to the root. */
async function matches(res: Response, f: Fixture): Promise<GlobMatch[]> {
  const text = await res.text();
  assert.equal(res.status, 200, text);
  assert.equal(
    res.headers.get("content-type"),
    "application/x-ndjson; charset=utf-8",
  );
  assert.ok(!text.includes(SECRET));
  assert.ok(!text.includes("id_rsa"), text);
  assert.ok(!text.includes("leak"), text);
  assert.ok(!text.includes(".ssh"), text);
  if (text === "") return [];
  assert.ok(text.endsWith("\n"));
  return text.trimEnd().split("\n").map((line) => {
    const m = JSON.parse(line) as GlobMatch;
    assert.ok(m.path.startsWith(`${f.root}/`) || m.path === f.root, m.path);
    return m;
  });
}

async function paths(res: Response, f: Fixture): Promise<string[]> {
  return (await matches(res, f)).map((m) =>
    m.path === f.root ? "." : m.path.slice(f.root.length + 1)
  );
}

Deno.test("GET /v1/glob matches one level, sorted, each match described as stat describes it; dot files only by a dot pattern", async () => {
  await withFixture(async (f) => {
    await addTrees(f);
    const found = await matches(await glob(f, "data/runs/*.bam"), f);
    assert.deepEqual(
      found.map((m) => m.path),
      ["a.bam", "b.bam", "in.bam", "sub.bam"].map((n) =>
        join(f.root, "data/runs", n)
      ),
    );
    const a = Deno.statSync(join(f.root, "data/runs/a.bam"));
    assert.deepEqual(found[0], {
      path: join(f.root, "data/runs/a.bam"),
      ...statEntry(a, "file"),
    });
    // A link that stays inside is followed: described as what it leads to.
    assert.deepEqual(found[2], {
      path: join(f.root, "data/runs/in.bam"),
      ...statEntry(a, "file"),
    });
    assert.equal(found[3].type, "dir");
    assert.deepEqual(await paths(await glob(f, "data/runs/.*"), f), [
      "data/runs/.hidden.bam",
    ]);
    assert.deepEqual(await paths(await glob(f, "data/runs/?.txt"), f), [
      "data/runs/c.txt",
    ]);
    assert.deepEqual(await paths(await glob(f, "data/runs/[ab].bam"), f), [
      "data/runs/a.bam",
      "data/runs/b.bam",
    ]);
    // Nothing matches: an empty answer, not an error.
    assert.deepEqual(await paths(await glob(f, "data/runs/*.cram"), f), []);
  });
});

Deno.test("GET /v1/glob looks a fixed component up in each directory a glob matched", async () => {
  await withFixture(async (f) => {
    await addTrees(f);
    assert.deepEqual(await paths(await glob(f, "data/run4?/out/*.log"), f), [
      "data/run41/out/x.log",
      "data/run42/out/z.log",
    ]);
    assert.deepEqual(await paths(await glob(f, "data/run4?/out"), f), [
      "data/run41/out",
      "data/run42/out",
    ]);
    assert.deepEqual(await paths(await glob(f, "data/*/out/y.txt"), f), [
      "data/run41/out/y.txt",
    ]);
  });
});

Deno.test("GET /v1/glob matches ** at every depth, none included, but never into or at a dot name", async () => {
  await withFixture(async (f) => {
    await addTrees(f);
    assert.deepEqual(await paths(await glob(f, "tree/**/*.log"), f), [
      "tree/a/b/c/deep.log",
      "tree/a/mid.log",
      "tree/top.log",
    ]);
    assert.deepEqual(await paths(await glob(f, "tree/**"), f), [
      "tree",
      "tree/a",
      "tree/a/b",
      "tree/a/b/c",
      "tree/a/b/c/deep.log",
      "tree/a/mid.log",
      "tree/top.log",
    ]);
    assert.deepEqual(await paths(await glob(f, "tree/**/c/*"), f), [
      "tree/a/b/c/deep.log",
    ]);
    assert.deepEqual(await paths(await glob(f, "**/out/*.log"), f), [
      "data/run41/out/x.log",
      "data/run42/out/z.log",
      "data/run5/out/w.log",
    ]);
    // A dot name is matched by a component that asks for it.
    assert.deepEqual(await paths(await glob(f, "tree/**/.d*"), f), [
      "tree/.dot",
      "tree/a/.d.log",
    ]);
  });
});

Deno.test("GET /v1/glob over a whole served tree ends (links to a directory above are not walked) and never names what a listing withholds", async () => {
  await withFixture(async (f) => {
    const found = await paths(await glob(f, "**"), f);
    assert.deepEqual(found, [
      ".",
      "big.bin",
      "empty.bin",
      "emptydir",
      "hello.txt",
      "link_in_dir",
      "link_in_dir/deep",
      "link_in_dir/deep/leaf.txt",
      "naïve 日本.txt",
      "nested",
      "nested/deep",
      "nested/deep/leaf.txt",
      "with space.txt",
    ]);
  });
});

Deno.test("GET /v1/glob never matches nor names a Forbidden_file, a Forbidden_dir or a link leading outside, even when asked by name", async () => {
  await withFixture(async (f) => {
    await addTrees(f);
    assert.deepEqual(await paths(await glob(f, "data/runs/*"), f), [
      "data/runs/a.bam",
      "data/runs/b.bam",
      "data/runs/c.txt",
      "data/runs/in.bam",
      "data/runs/sub.bam",
    ]);
    assert.deepEqual(await paths(await glob(f, "data/run*/id_rsa.bam"), f), []);
    assert.deepEqual(await paths(await glob(f, "data/run*/.ssh/*"), f), []);
    assert.deepEqual(await paths(await glob(f, "data/run*/leak.bam"), f), []);
    assert.deepEqual(await paths(await glob(f, "data/*/out/id_rsa*"), f), []);
    assert.deepEqual(await paths(await glob(f, "tree/**/leak*"), f), []);
    assert.deepEqual(await paths(await glob(f, "**/.ssh"), f), []);
    // A refused base is refused as a listing of it is.
    await expectError(await glob(f, "data/runs/.ssh/*"), 403, "forbidden_dir");
    await expectError(await glob(f, "state-dir/*"), 403, "forbidden");
    await expectError(
      await glob(f, `${f.tmp}/*`),
      403,
      "outside_allowed",
    );
  });
});

Deno.test("GET /v1/glob of a pattern without a glob answers its one entry, 404 when absent, refused as stat refuses", async () => {
  await withFixture(async (f) => {
    await addTrees(f);
    const one = await matches(await glob(f, "data/runs/a.bam"), f);
    assert.deepEqual(one, [{
      path: join(f.root, "data/runs/a.bam"),
      ...statEntry(Deno.statSync(join(f.root, "data/runs/a.bam")), "file"),
    }]);
    assert.deepEqual(await paths(await glob(f, "data/runs/"), f), [
      "data/runs",
    ]);
    await expectError(await glob(f, "data/runs/none.bam"), 404, "not_found");
    await expectError(await glob(f, "data/none/*.bam"), 404, "not_found");
    await expectError(
      await glob(f, "data/runs/id_rsa.bam"),
      403,
      "forbidden_file",
    );
  });
});

Deno.test("GET /v1/glob refuses a pattern that is missing, relative, holds NUL or .., with 400", async () => {
  await withFixture(async (f) => {
    await expectError(await f.call("/v1/glob"), 400, "bad_request");
    await expectError(
      await f.call(`/v1/glob?pattern=${encodeURIComponent("data/*")}`),
      400,
      "bad_path",
    );
    await expectError(await glob(f, `${f.root}/a\0*`), 400, "bad_path");
    await expectError(await glob(f, `${f.root}/*/../x`), 400, "bad_path");
    await expectError(
      await glob(f, "*", "&maxEntries=many"),
      400,
      "bad_request",
    );
  });
});

Deno.test("GET /v1/glob answers 413 too_many_matches past the server's bound or a smaller maxEntries", async () => {
  await withFixture(
    async (f) => {
      await addTrees(f);
      assert.equal(
        (await paths(await glob(f, "data/runs/?.bam"), f)).length,
        2,
      );
      const body = await expectError(
        await glob(f, "data/runs/*.bam"),
        413,
        "too_many_matches",
      );
      assert.match(body.message, /more than 3 entries/);
      // A client may ask for fewer, never for more.
      await expectError(
        await glob(f, "data/runs/?.bam", "&maxEntries=1"),
        413,
        "too_many_matches",
      );
      await expectError(
        await glob(f, "data/runs/*.bam", "&maxEntries=100"),
        413,
        "too_many_matches",
      );
    },
    {},
    { limits: { globMaxMatches: 3 } },
  );
});

Deno.test("GET /v1/glob waits for a listing slot, and one past the queue gets 503 busy", async () => {
  await withFixture(
    async (f) => {
      await addTrees(f);
      const first = await f.call(`/v1/list?path=${f.q("")}`);
      const reader = first.body!.getReader();
      assert.ok(!(await reader.read()).done);
      // The listing holds the only slot: a glob waits in line behind it.
      let globDone = false;
      const waiting = glob(f, "data/runs/*.bam").then((r) => {
        globDone = true;
        return r;
      });
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(globDone, false);
      await expectError(await glob(f, "tree/**"), 503, "busy");
      await reader.cancel();
      assert.equal((await paths(await waiting, f)).length, 4);
    },
    {},
    {
      limits: { listJobs: 1, listQueue: 1, peerListings: 1, peerListQueue: 1 },
    },
  );
});

Deno.test("GET /v1/glob is a read: unsigned, answered with Anonymous_read, 401 without", async () => {
  const keys = await generateKeys("test");
  const verifier = await createVerifier(
    parseAuthorizedKeys(keys.publicLine, "ak"),
  );
  await withFixture(
    async (f) => {
      await addTrees(f);
      assert.equal(
        (await paths(await glob(f, "data/runs/*.bam"), f)).length,
        4,
      );
    },
    { Authorized_keys: "", Anonymous_read: "yes" },
    { verifier },
  );
  await withFixture(
    async (f) => {
      await expectError(await glob(f, "*"), 401, "unauthorized");
    },
    { Authorized_keys: "" },
    { verifier },
  );
});
