/** The lease tokens a push keeps on disk while it runs (lib/client/lease_record.ts). */
import assert from "node:assert/strict";
import { join } from "node:path";
import { leaseRecord } from "../lib/client/lease_record.ts";
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
