/** Tests of the leases of push destinations (lib/server/push_locks.ts) and of `POST /v1/lock` in process. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { HttpError } from "../lib/shared/errors.ts";
import type { LockLease } from "../lib/shared/wire.ts";
import { PushLocks } from "../lib/server/push_locks.ts";
import { expectError, withFixture } from "./_server_fixture.ts";

/** A table on a clock the test moves. */
function table(leaseMs = 30_000, maxLeases = 100) {
  const clock = { now: 1_000_000 };
  const locks = new PushLocks({ leaseMs, maxLeases, now: () => clock.now });
  return { locks, clock };
}

function refusedWith(status: number, code: string) {
  return (error: unknown) =>
    error instanceof HttpError && error.status === status &&
    error.code === code;
}

Deno.test("a lease is held by one token: another is refused 409 locked with the holder's age", () => {
  const { locks, clock } = table();
  const a = locks.take("/in/tree", "/in/tree");
  assert.match(a.token, /^[0-9a-f]{32}$/);
  assert.equal(a.expires_ms, 30_000);
  clock.now += 12_000;
  assert.throws(() => locks.take("/in/tree", "/in/tree"), (error) => {
    assert.ok(refusedWith(409, "locked")(error));
    assert.equal(
      (error as Error).message,
      'Cannot lock "/in/tree": another push into "/in/tree" is running (for 12 s)',
    );
    return true;
  });
});

Deno.test("a lease lapses without renewal, and a renewal keeps it", () => {
  const { locks, clock } = table(30_000);
  const a = locks.take("/in", "/in");
  clock.now += 20_000;
  assert.deepEqual(locks.take("/in", "/in", a.token), a);
  clock.now += 20_000;
  // Renewed 20 s ago: still held.
  assert.throws(() => locks.take("/in", "/in"), refusedWith(409, "locked"));
  clock.now += 10_000;
  // 30 s without a renewal: gone, and anyone takes it.
  assert.equal(locks.size, 0);
  const b = locks.take("/in", "/in");
  assert.notEqual(b.token, a.token);
  // The old holder's renewal is refused now.
  assert.throws(
    () => locks.take("/in", "/in", a.token),
    refusedWith(409, "locked"),
  );
});

Deno.test("a lapsed lease nobody took is taken again by its own token's renewal", () => {
  const { locks, clock } = table(1000);
  const a = locks.take("/in", "/in");
  clock.now += 5000;
  assert.deepEqual(locks.take("/in", "/in", a.token), a);
  assert.throws(() => locks.take("/in", "/in"), refusedWith(409, "locked"));
});

Deno.test("release ends a lease for its token only; a wrong or malformed token is refused", () => {
  const { locks } = table();
  const a = locks.take("/in", "/in");
  assert.throws(
    () => locks.release("/in", "/in", "0".repeat(32)),
    refusedWith(409, "locked"),
  );
  assert.throws(
    () => locks.release("/in", "/in", "not-a-token"),
    refusedWith(400, "bad_request"),
  );
  assert.throws(
    () => locks.take("/in", "/in", "../x"),
    refusedWith(400, "bad_request"),
  );
  assert.deepEqual(locks.release("/in", "/in", a.token), {
    token: a.token,
    expires_ms: 0,
  });
  assert.equal(locks.size, 0);
  // Twice is harmless.
  locks.release("/in", "/in", a.token);
  locks.take("/in", "/in");
});

Deno.test("leases of a directory and of a path inside it conflict; siblings do not", () => {
  const { locks } = table();
  locks.take("/in/a", "/in/a");
  locks.take("/in/b", "/in/b");
  locks.take("/in/ab", "/in/ab");
  assert.throws(() => locks.take("/in", "/in"), refusedWith(409, "locked"));
  assert.throws(
    () => locks.take("/in/a/x", "/in/a/x"),
    refusedWith(409, "locked"),
  );
});

Deno.test("at most maxLeases are held: one more is 503 busy", () => {
  const { locks } = table(30_000, 2);
  locks.take("/a", "/a");
  locks.take("/b", "/b");
  assert.throws(() => locks.take("/c", "/c"), refusedWith(503, "busy"));
});

async function post(
  call: (path: string, init?: RequestInit) => Promise<Response>,
  query: string,
): Promise<Response> {
  return await call(`/v1/lock?${query}`, { method: "POST" });
}

Deno.test("POST /v1/lock: take, 409 for another, renew, release, and keyed by the real path", async () => {
  await withFixture(async (f) => {
    await Deno.mkdir(join(f.root, "in"));
    await Deno.symlink(join(f.root, "in"), join(f.root, "alias"));
    const dest = encodeURIComponent(join(f.root, "in"));
    const first = await post(f.call, `path=${dest}`);
    assert.equal(first.status, 200);
    const lease = await first.json() as LockLease;
    assert.equal(lease.expires_ms, 30_000);
    const body = await expectError(
      await post(f.call, `path=${encodeURIComponent(join(f.root, "alias"))}`),
      409,
      "locked",
    );
    assert.match(body.message, /another push into .*alias" is running/);
    // A path below it that does not exist yet is inside the lease too.
    await expectError(
      await post(
        f.call,
        `path=${encodeURIComponent(join(f.root, "in/new/x"))}`,
      ),
      409,
      "locked",
    );
    const renewed = await post(f.call, `path=${dest}&token=${lease.token}`);
    assert.deepEqual(await renewed.json(), lease);
    await expectError(
      await post(f.call, `path=${dest}&release=1`),
      400,
      "bad_request",
    );
    const released = await post(
      f.call,
      `path=${dest}&token=${lease.token}&release=1`,
    );
    assert.deepEqual(await released.json(), {
      token: lease.token,
      expires_ms: 0,
    });
    assert.equal((await post(f.call, `path=${dest}`)).status, 200);
    // Nothing was created by any of it.
    assert.equal(await Deno.stat(join(f.root, "in/new")).catch(() => 0), 0);
  }, { Host_ip: "127.0.0.1", Writable_path: "@root" });
});

Deno.test("POST /v1/lock?stat=1 tells what is at the path once leased, as /v1/stat would: a directory, a file, null for nothing", async () => {
  await withFixture(async (f) => {
    const leased = async (rel: string) => {
      const r = await post(f.call, `path=${f.q(rel)}&stat=1`);
      assert.equal(r.status, 200);
      return await r.json() as LockLease;
    };
    const dir = await leased("nested");
    const stat = await (await f.call(`/v1/stat?path=${f.q("nested")}`)).json();
    assert.deepEqual(dir.entry, stat);
    const file = await leased("big.bin");
    assert.equal(file.entry?.type, "file");
    assert.equal(file.entry?.size, 300_000);
    assert.equal((await leased("fresh/tree")).entry, null);
    // A renewal may ask again; without stat=1 nothing is told.
    const renewed = await post(
      f.call,
      `path=${f.q("nested")}&token=${dir.token}`,
    );
    assert.equal("entry" in await renewed.json(), false);
    await expectError(
      await post(f.call, `path=${f.q("nested")}&token=${dir.token}&stat=yes`),
      400,
      "bad_request",
    );
    await expectError(
      await post(
        f.call,
        `path=${f.q("nested")}&token=${dir.token}&release=1&stat=1`,
      ),
      400,
      "bad_request",
    );
  }, { Host_ip: "127.0.0.1", Writable_path: "@root" });
});

Deno.test("POST /v1/lock: 403 outside Writable_path and on a server that takes no writes; GET is 405", async () => {
  await withFixture(async (f) => {
    // Outside Writable_path, existing or not: said so; nothing is made.
    for (const path of [f.tmp, join(f.tmp, "new/x")]) {
      const body = await expectError(
        await post(f.call, `path=${encodeURIComponent(path)}`),
        403,
        "not_writable",
      );
      assert.match(body.message, /Writable_path/);
    }
    await Deno.stat(join(f.tmp, "new")).then(
      () => assert.fail("made"),
      () => {},
    );
    // The server's own directory, as mkdir refuses it.
    const state = await post(f.call, `path=${f.q("state-dir/x")}`);
    const mkdir = await f.call(`/v1/mkdir?path=${f.q("state-dir/x")}`, {
      method: "POST",
    });
    assert.equal(state.status, 403);
    assert.equal((await state.json()).error, (await mkdir.json()).error);
    await expectError(await post(f.call, "path=relative"), 400, "bad_path");
    assert.equal((await f.call(`/v1/lock?path=${f.q("")}`)).status, 405);
  }, { Host_ip: "127.0.0.1", Writable_path: "@root" });
  await withFixture(async (f) => {
    await expectError(
      await post(f.call, `path=${f.q("")}`),
      403,
      "read_only",
    );
  }, { Host_ip: "127.0.0.1" });
});

Deno.test("POST /v1/lock: a short pushLeaseMs lapses on its own", async () => {
  await withFixture(
    async (f) => {
      const dest = f.q("");
      assert.equal((await post(f.call, `path=${dest}`)).status, 200);
      await expectError(await post(f.call, `path=${dest}`), 409, "locked");
      await new Promise((r) => setTimeout(r, 250));
      assert.equal((await post(f.call, `path=${dest}`)).status, 200);
    },
    { Host_ip: "127.0.0.1", Writable_path: "@root" },
    {
      limits: { pushLeaseMs: 100 },
    },
  );
});

/** Resolves to "pending" when `p` has not settled within `ms`. */
function within<T>(p: Promise<T>, ms = 30): Promise<T | "pending"> {
  return Promise.race([
    p,
    new Promise<"pending">((r) => setTimeout(() => r("pending"), ms)),
  ]);
}

const RUN = "0123456789abcdef0123456789abcdef";
const OTHER_RUN = "fedcba9876543210fedcba9876543210";

Deno.test("a push's last request waits until N requests of its run have completed, counting no other run or token", async () => {
  const locks = new PushLocks({ leaseMs: 30_000, maxLeases: 10 });
  const { token } = locks.take("/in", "/in");
  const other = locks.take("/elsewhere", "/elsewhere").token;
  const signal = new AbortController().signal;
  const waiting = locks.settled(token, RUN, 3, { signal, maxMs: 10_000 });
  locks.completed(token, RUN, false);
  locks.completed(token, OTHER_RUN, false);
  locks.completed(other, RUN, false);
  locks.completed(token, "not a run", false);
  locks.completed(null, RUN, false);
  locks.completed(token, RUN, false);
  assert.equal(await within(waiting), "pending");
  locks.completed(token, RUN, false);
  assert.equal(await within(waiting), undefined);
  // Already there: at once.
  assert.equal(
    await locks.settled(token, RUN, 3, { signal, maxMs: 0 }),
    undefined,
  );
});

Deno.test("a push's last request is told why not, at once, when a request of its run failed, its lease went or its client went; and after maxMs", async () => {
  const locks = new PushLocks({ leaseMs: 30_000, maxLeases: 10 });
  const { token } = locks.take("/in", "/in");
  const signal = new AbortController().signal;
  const failing = locks.settled(token, RUN, 5, { signal, maxMs: 10_000 });
  locks.completed(token, RUN, false);
  locks.completed(token, RUN, true);
  assert.match(String(await within(failing)), /refused or failed/);

  const { token: t2 } = locks.take("/two", "/two");
  const dropped = locks.settled(t2, RUN, 1, { signal, maxMs: 10_000 });
  assert.equal(await within(dropped), "pending");
  locks.release("/two", "/two", t2);
  assert.match(String(await within(dropped)), /holds no lock/);

  const { token: t3 } = locks.take("/three", "/three");
  const stop = new AbortController();
  const gone = locks.settled(t3, RUN, 1, {
    signal: stop.signal,
    maxMs: 10_000,
  });
  stop.abort();
  assert.match(String(await within(gone)), /client closed/);

  const late = await locks.settled(t3, RUN, 1, { signal, maxMs: 40 });
  assert.match(String(late), /did not all complete within 0 s/);
});

Deno.test("a release that waits keeps the lease held while it waits (the push sends no renewal then); at most 4 runs of a token are counted", async () => {
  const locks = new PushLocks({ leaseMs: 90, maxLeases: 10 });
  const { token } = locks.take("/in", "/in");
  const signal = new AbortController().signal;
  const waiting = locks.settled(token, RUN, 1, {
    signal,
    maxMs: 5_000,
    renew: "/in",
  });
  await new Promise((r) => setTimeout(r, 300));
  // Three lease lengths later, still held: another push is refused.
  assert.throws(() => locks.take("/in", "/in"), refusedWith(409, "locked"));
  locks.completed(token, RUN, false);
  assert.equal(await waiting, undefined);
  const runs = ["1", "2", "3", "4", "5"].map((d) => d.repeat(32));
  for (const run of runs) locks.completed(token, run, false);
  // The first run counted is forgotten for the fifth.
  assert.match(
    String(await locks.settled(token, runs[0], 1, { signal, maxMs: 0 })),
    /did not all complete/,
  );
  assert.equal(
    await locks.settled(token, runs[4], 1, { signal, maxMs: 0 }),
    undefined,
  );
});

Deno.test("POST /v1/lock?release=1&after=N&run=R releases once N requests of the run completed at the handler; 409 incomplete (lease kept) after a refused one; 400 for after or run alone or without release", async () => {
  await withFixture(async (f) => {
    await Deno.mkdir(join(f.root, "in"));
    const dest = encodeURIComponent(join(f.root, "in"));
    const lease = await (await post(f.call, `path=${dest}`))
      .json() as LockLease;
    assert.equal(lease.after, true);
    const headers = {
      "x-hsync-upload-session": lease.token,
      "x-hsync-push-run": RUN,
    };
    const release = post(
      f.call,
      `path=${dest}&token=${lease.token}&release=1&after=2&run=${RUN}`,
    );
    assert.equal(await within(release, 50), "pending");
    // Two requests of the run (a stat counts as well: any request of it).
    const made = await f.call(
      `/v1/mkdir?path=${encodeURIComponent(join(f.root, "in/a"))}`,
      { method: "POST", headers },
    );
    assert.equal(made.status, 200);
    await made.body?.cancel();
    assert.equal(await within(release, 50), "pending");
    const stat = await f.call(
      `/v1/stat?path=${encodeURIComponent(join(f.root, "in/a"))}`,
      { headers },
    );
    await stat.body?.cancel();
    const released = await release;
    assert.equal(released.status, 200);
    assert.deepEqual(await released.json(), {
      token: lease.token,
      expires_ms: 0,
    });

    // A refused request of the run: the release is refused, the lease kept.
    const again = await (await post(f.call, `path=${dest}`))
      .json() as LockLease;
    const refused = await f.call(`/v1/mkdir?path=%2Fetc%2Fx`, {
      method: "POST",
      headers: { ...headers, "x-hsync-upload-session": again.token },
    });
    assert.equal(refused.status, 403);
    await refused.body?.cancel();
    const body = await expectError(
      await post(
        f.call,
        `path=${dest}&token=${again.token}&release=1&after=1&run=${RUN}`,
      ),
      409,
      "incomplete",
    );
    assert.match(
      body.message,
      /^Cannot release the lock of ".*in" yet: one of its requests was refused or failed$/,
    );
    await expectError(await post(f.call, `path=${dest}`), 409, "locked");
    for (
      const query of [
        `path=${dest}&token=${again.token}&release=1&after=1`,
        `path=${dest}&token=${again.token}&release=1&run=${RUN}`,
        `path=${dest}&token=${again.token}&after=1&run=${RUN}`,
        `path=${dest}&token=${again.token}&release=1&after=x&run=${RUN}`,
      ]
    ) await expectError(await post(f.call, query), 400, "bad_request");
  }, { Host_ip: "127.0.0.1", Writable_path: "@root" });
});

Deno.test("POST /v1/lock&name=NAME leases PATH/NAME when PATH is a directory (and says so in path), else PATH; two names in one directory are leased at once; 400 for a name that is not one component", async () => {
  await withFixture(async (f) => {
    await Deno.mkdir(join(f.root, "in"));
    const leaseOf = async (path: string, name: string) => {
      const r = await post(
        f.call,
        `path=${encodeURIComponent(join(f.root, path))}&name=${
          encodeURIComponent(name)
        }&stat=1`,
      );
      assert.equal(r.status, 200);
      return await r.json() as LockLease;
    };
    const a = await leaseOf("in", "a.bin");
    assert.equal(a.path, join(f.root, "in/a.bin"));
    assert.equal(a.entry, null);
    // Another file into the same directory: its own lease, at once.
    const b = await leaseOf("in", "b.bin");
    assert.equal(b.path, join(f.root, "in/b.bin"));
    // A path that is no directory is leased itself.
    const c = await leaseOf("new-name", "c.bin");
    assert.equal(c.path, join(f.root, "new-name"));
    // The directory itself is held inside: a push into it waits.
    await expectError(
      await post(f.call, `path=${encodeURIComponent(join(f.root, "in"))}`),
      409,
      "locked",
    );
    // Given back with the name too (a push cut off before its answer).
    const back = await post(
      f.call,
      `path=${
        encodeURIComponent(join(f.root, "in"))
      }&name=a.bin&token=${a.token}&release=1`,
    );
    assert.equal(back.status, 200);
    await back.body?.cancel();
    assert.equal((await leaseOf("in", "a.bin")).path, join(f.root, "in/a.bin"));
    for (const name of ["", ".", "..", "x/y", "a\0b"]) {
      await expectError(
        await post(
          f.call,
          `path=${encodeURIComponent(join(f.root, "in"))}&name=${
            encodeURIComponent(name)
          }`,
        ),
        400,
        "bad_request",
      );
    }
  }, { Host_ip: "127.0.0.1", Writable_path: "@root" });
});
