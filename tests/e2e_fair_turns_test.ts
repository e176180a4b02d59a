/**
 * The real hsyncd answers other requests while it lists a big tree: its one
 * thread lets them in every few milliseconds instead of after the whole
 * listing. Compared as a ratio of two times taken in the same run, so a
 * slow machine slows both.
 */
import assert from "node:assert/strict";
import { startServer, tempDir, unixSocketsOf } from "./_programs.ts";

/** Entries of the listed tree: its listing takes the server 100 ms or more. */
const DIRS = 4;
const FILES_PER_DIR = 3000;

async function bigTree(root: string): Promise<void> {
  for (let d = 0; d < DIRS; d++) {
    const dir = `${root}/tree/d${d}`;
    await Deno.mkdir(dir, { recursive: true });
    for (let f = 0; f < FILES_PER_DIR; f++) {
      Deno.writeFileSync(`${dir}/f${f}`, new Uint8Array(0));
    }
  }
  await Deno.writeTextFile(`${root}/small.txt`, "small");
}

/** Sends a stat of `path` to `url` now; resolves to the ms until its answer. */
function timedStat(url: string, path: string): Promise<number> {
  const sent = performance.now();
  return fetch(`${url}/v1/stat?path=${encodeURIComponent(path)}`).then(
    async (response) => {
      assert.equal(response.status, 200);
      await response.body?.cancel();
      return performance.now() - sent;
    },
  );
}

/**
 * Fails unless the best of the rounds' ratios (stat time / request time)
 * is under a half: one round slowed by the machine says nothing; every
 * round held to the end says the thread was held (the ratio is then 1).
 */
function assertLetIn(ratios: number[], what: string): void {
  assert.ok(
    Math.min(...ratios) < 0.5,
    `the stat took ${
      ratios.map((r) => r.toFixed(2)).join(", ")
    } of the ${what}'s time: the ${what} held the server`,
  );
}

Deno.test("a stat sent while hsyncd lists 12,000 entries is answered long before the listing ends", async () => {
  await using dir = await tempDir();
  await bigTree(dir.path);
  await using server = await startServer({
    config: `[hsyncd]\nOnly_allowed_path = ${dir.path}\n`,
    dir: dir.path,
  });
  // Its own (the runtime's signal handling holds some).
  const idle = await unixSocketsOf(server.process.pid);
  const ratios: number[] = [];
  for (let round = 0; round < 3; round++) {
    const listing = await fetch(
      `${server.url}/v1/list?path=${encodeURIComponent(`${dir.path}/tree`)}`,
    );
    assert.equal(listing.status, 200);
    const reader = listing.body!.getReader();
    // The listing is under way once its first bytes are here.
    const first = await reader.read();
    assert.equal(first.done, false);
    const listStart = performance.now();
    let lines = 0;
    const count = (bytes: Uint8Array) => {
      for (const b of bytes) if (b === 10) lines++;
    };
    count(first.value!);
    const stat = timedStat(server.url, `${dir.path}/small.txt`);
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      count(value);
    }
    const listMs = performance.now() - listStart;
    const statMs = await stat;
    // Every entry is there: directories and files, each a line.
    assert.equal(lines, DIRS + DIRS * FILES_PER_DIR);
    ratios.push(statMs / listMs);
  }
  assertLetIn(ratios, "listing");
  // Each listing closed the socket pair its turns went through.
  assert.equal(await unixSocketsOf(server.process.pid), idle);
});
