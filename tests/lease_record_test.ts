/** The lease tokens a push keeps on disk while it runs (lib/client/lease_record.ts). */
import assert from "node:assert/strict";
import { join } from "node:path";
import { leaseRecord, STALE_RECORD_MS } from "../lib/client/lease_record.ts";
import { tempDir } from "./_programs.ts";

const HOST = "127.0.0.1:10808";
const names = (dir: string) =>
  [...Deno.readDirSync(dir)].map((e) => e.name).sort();

Deno.test("a token left by a push that did not give its lease back is taken again by the next push of the destination, once", async () => {
  await using tmp = await tempDir();
  const dir = join(tmp.path, "leases");
  const first = leaseRecord(dir, HOST, "/in/run42");
  assert.match(first.token, /^[0-9a-f]{32}$/);
  assert.equal(first.reclaimed, false);
  assert.equal(names(dir).length, 1);
  // Killed, or cut off before the release was answered: the record stays.
  first.end(false);
  const second = leaseRecord(dir, HOST, "/in/run42");
  assert.equal(second.token, first.token);
  assert.equal(second.reclaimed, true);
  // Given back: the record goes, and the next push gets a token of its own.
  second.end(true);
  assert.deepEqual(names(dir), []);
  const third = leaseRecord(dir, HOST, "/in/run42");
  assert.notEqual(third.token, first.token);
  assert.equal(third.reclaimed, false);
  third.end(true);
});

Deno.test("a push running now keeps its token: another push of the destination gets its own and leaves the record alone", async () => {
  await using tmp = await tempDir();
  const dir = join(tmp.path, "leases");
  const running = leaseRecord(dir, HOST, "/in/run42");
  const [name] = names(dir);
  const before = await Deno.readTextFile(join(dir, name));
  const other = leaseRecord(dir, HOST, "/in/run42");
  assert.notEqual(other.token, running.token);
  assert.equal(other.reclaimed, false);
  other.end(true);
  assert.equal(await Deno.readTextFile(join(dir, name)), before);
  // Another destination, or the same path on another server: another record.
  const elsewhere = leaseRecord(dir, HOST, "/in/run43");
  const otherHost = leaseRecord(dir, "127.0.0.1:10809", "/in/run42");
  assert.equal(names(dir).length, 3);
  for (const r of [elsewhere, otherHost]) {
    assert.notEqual(r.token, running.token);
    r.end(false);
  }
  running.end(false);
  const rerun = leaseRecord(dir, HOST, "/in/run42");
  assert.equal(rerun.token, running.token);
  rerun.end(true);
});

Deno.test("a record is never written through a symbolic link planted at its name, nor read from one", async () => {
  await using tmp = await tempDir();
  const dir = join(tmp.path, "leases");
  const probe = leaseRecord(dir, HOST, "/in/x");
  const [name] = names(dir);
  probe.end(true);
  const victim = join(tmp.path, "victim");
  const token = "0123456789abcdef0123456789abcdef";
  const text = JSON.stringify({ dest: `${HOST}:/in/x`, token }) + "\n";
  await Deno.writeTextFile(victim, text);
  await Deno.symlink(victim, join(dir, name));
  const record = leaseRecord(dir, HOST, "/in/x");
  assert.notEqual(record.token, token);
  record.end(true);
  assert.equal(await Deno.readTextFile(victim), text);
  assert.equal(Deno.lstatSync(join(dir, name)).isSymlink, true);
});

Deno.test("without a usable directory a push still gets a token of its own, and nothing is thrown", async () => {
  await using tmp = await tempDir();
  const file = join(tmp.path, "a-file");
  await Deno.writeTextFile(file, "");
  for (const dir of [undefined, join(file, "leases")]) {
    const a = leaseRecord(dir, HOST, "/in/x");
    const b = leaseRecord(dir, HOST, "/in/x");
    assert.match(a.token, /^[0-9a-f]{32}$/);
    assert.notEqual(a.token, b.token);
    a.end(false);
    b.end(true);
  }
  // A record that is not one (empty: a push killed while writing it) gives a fresh token.
  const dir = join(tmp.path, "leases");
  const r = leaseRecord(dir, HOST, "/in/y");
  const [name] = names(dir);
  r.end(false);
  await Deno.writeTextFile(join(dir, name), "");
  const again = leaseRecord(dir, HOST, "/in/y");
  assert.equal(again.reclaimed, false);
  assert.notEqual(again.token, r.token);
  again.end(true);
});

Deno.test("records left a day ago or more are pruned by the next push that ends; a record a push runs with, a newer one and a link are left", async () => {
  await using tmp = await tempDir();
  const dir = join(tmp.path, "leases");
  const old = new Date(Date.now() - STALE_RECORD_MS - 60_000);
  // Two pushes that never got their lease's answer, long ago.
  for (const path of ["/in/a", "/in/b"]) {
    leaseRecord(dir, HOST, path).end(false);
  }
  // One left an hour ago: its lease has lapsed, but it is not a day old.
  leaseRecord(dir, HOST, "/in/recent").end(false);
  // One a push still runs with (started long ago).
  const running = leaseRecord(dir, HOST, "/in/running");
  const [a, b, recent, run] = ["/in/a", "/in/b", "/in/recent", "/in/running"]
    .map((p) => recordName(dir, p));
  for (const name of [a, b, run]) Deno.utimeSync(name, old, old);
  const hour = new Date(Date.now() - 3_600_000);
  Deno.utimeSync(recent, hour, hour);
  // A link planted among them, to a file outside: never followed.
  const outside = join(tmp.path, "outside.lease");
  Deno.writeTextFileSync(outside, "keep");
  Deno.utimeSync(outside, old, old);
  Deno.symlinkSync(outside, join(dir, "planted.lease"));

  const now = leaseRecord(dir, HOST, "/in/now");
  now.end(true);
  assert.deepEqual(
    names(dir),
    [recent, run].map((p) => p.slice(dir.length + 1)).concat("planted.lease")
      .sort(),
  );
  assert.equal(Deno.readTextFileSync(outside), "keep");
  // The running push still ends as it would.
  running.end(true);
  assert.deepEqual(names(dir).includes(run.slice(dir.length + 1)), false);
});

/** The path of the record of `path`'s lease (found by its content). */
function recordName(dir: string, path: string): string {
  for (const entry of Deno.readDirSync(dir)) {
    const full = join(dir, entry.name);
    if (!entry.isFile) continue;
    if (Deno.readTextFileSync(full).includes(`"${HOST}:${path}"`)) return full;
  }
  throw new Error(`no record of ${path}`);
}
