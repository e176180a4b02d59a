import assert from "node:assert/strict";
import { Breather } from "../lib/shared/breather.ts";
import { ROOT, unixSocketsOf } from "./_programs.ts";

/** Keeps this thread busy for `ms` (the synchronous work a breather breaks up). */
function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // Work.
  }
}

Deno.test("a loop that breathes lets a request to a server of this process be answered before the loop ends", async () => {
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("answered"),
  );
  using breather = new Breather(2);
  let answer: string | undefined;
  const asked = fetch(`http://127.0.0.1:${server.addr.port}/`)
    .then((r) => r.text()).then((text) => answer = text);
  // At most 5 s of work in slices of 1 ms; the answer needs the runtime to
  // accept, read and write on its sockets between them.
  const end = performance.now() + 5000;
  while (answer === undefined && performance.now() < end) {
    busy(1);
    await breather.breathe();
  }
  assert.equal(answer, "answered");
  await asked;
});

/** Unix sockets this process holds open, counted from outside. */
const openSockets = () => unixSocketsOf(Deno.pid);

Deno.test("a turn opens a socket pair once; turns asked for at once share one; close() leaves no socket open, and a breather can turn and close again", async () => {
  const before = await openSockets();
  const breather = new Breather(0);
  await Promise.all([breather.turn(), breather.turn(), breather.turn()]);
  await breather.turn();
  assert.equal(await openSockets(), before + 2);
  breather.close();
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(await openSockets(), before);
  await breather.turn();
  assert.equal(await openSockets(), before + 2);
  breather.close();
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(await openSockets(), before);
});

Deno.test("breathe turns only once its interval has passed: nothing is opened before", async () => {
  const before = await openSockets();
  const breather = new Breather(60_000);
  await breather.breathe();
  await breather.breathe();
  assert.equal(await openSockets(), before);
  breather.close();
});

Deno.test("time a loop rests (waiting for others) is not work: no turn after a long rest", async () => {
  const before = await openSockets();
  // 20 ms of work between turns; it rests 60 ms, works 1, rests 60 again.
  const breather = new Breather(20);
  breather.rest();
  await new Promise((r) => setTimeout(r, 60));
  await breather.breathe();
  busy(1);
  breather.rest();
  await new Promise((r) => setTimeout(r, 60));
  await breather.breathe();
  assert.equal(await openSockets(), before);
  // Without the rests the same waits are work: it turns.
  const counting = new Breather(20);
  await new Promise((r) => setTimeout(r, 60));
  await counting.breathe();
  assert.equal(await openSockets(), before + 2);
  counting.close();
  breather.close();
  await new Promise((r) => setTimeout(r, 0));
});

Deno.test("where no Unix socket may be made (the demo's set allows only 127.0.0.1), a timer turns the loop; no directory is left behind", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "hsync-breather-" });
  try {
    const script = `${tmp}/turns.ts`;
    await Deno.writeTextFile(
      script,
      `import { Breather } from ${
        JSON.stringify(
          new URL("../lib/shared/breather.ts", import.meta.url).href,
        )
      };
const b = new Breather(0);
await b.turn(); await b.turn();
b.close();
console.log("turned");`,
    );
    const turnsDir = `${tmp}/tmp`;
    await Deno.mkdir(turnsDir);
    // hsync's own set (a Unix socket pair), then one without (a timer).
    for (const set of ["hsync", "demo"]) {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-q",
          `-P=${set}`,
          `--config=${ROOT}/deno.json`,
          script,
        ],
        cwd: ROOT,
        env: { TMPDIR: turnsDir, NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout).trim();
      assert.equal(
        text,
        "turned",
        `-P=${set}: ${new TextDecoder().decode(out.stderr)}`,
      );
      assert.equal(out.code, 0);
      assert.deepEqual([...Deno.readDirSync(turnsDir)].map((e) => e.name), []);
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
