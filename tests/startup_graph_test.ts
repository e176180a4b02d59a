/**
 * What `hsync` loads before its first request: main_client.ts's static
 * imports stay clear of node's fs, crypto, HTTP and resolver modules and of
 * npm packages (the INI parser is loaded only for a configuration file of
 * the user's: lib/shared/ini_text.ts; an empty script starts in 22 ms, one
 * importing `ini` in 46). Each of those costs
 * milliseconds of start-up (node:fs alone 12-15 ms, all of them 30-35 ms);
 * the engines that need them are imported once the first requests are out
 * (lib/client/opening.ts), so their loading overlaps the first round trip.
 */
import assert from "node:assert/strict";

const REPO = new URL("../", import.meta.url).pathname;

/** Node modules whose loading is the cost. */
const HEAVY = [
  "node:fs",
  "node:fs/promises",
  "node:crypto",
  "node:http",
  "node:https",
  "node:net",
  "node:dns",
  "node:dns/promises",
  "node:child_process",
  "node:zlib",
];

interface Dependency {
  specifier: string;
  code?: { specifier?: string };
  isDynamic?: boolean;
}

/** Every module `entry` loads before it runs (static imports only), as `deno info` resolves them. */
async function staticClosure(entry: string): Promise<Set<string>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: REPO,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    roots: string[];
    modules: Array<{ specifier: string; dependencies?: Dependency[] }>;
  };
  const modules = new Map(info.modules.map((m) => [m.specifier, m]));
  const seen = new Set<string>();
  const stack = [...info.roots];
  while (stack.length > 0) {
    const specifier = stack.pop()!;
    if (seen.has(specifier)) continue;
    seen.add(specifier);
    for (const d of modules.get(specifier)?.dependencies ?? []) {
      if (!d.isDynamic) stack.push(d.code?.specifier ?? d.specifier);
    }
  }
  return seen;
}

Deno.test("hsync's first requests wait for no node fs, crypto, HTTP or resolver module and no npm package", async () => {
  const loaded = await staticClosure("main_client.ts");
  for (const opening of ["opening.ts", "push_opening.ts"]) {
    assert.ok(
      [...loaded].some((s) => s.endsWith(`/lib/client/${opening}`)),
      `${opening} is loaded before the first requests`,
    );
  }
  assert.deepEqual(HEAVY.filter((m) => loaded.has(m)), []);
  const npm = [...loaded].filter((s) => s.startsWith("npm:"))
    .map((s) => s.replace(/^npm:\/?/, "").replace(/@[^@/]*$/, ""));
  assert.deepEqual([...new Set(npm)], []);
  // The engines are not among them.
  for (const engine of ["pull.ts", "push.ts", "follow.ts", "fetch_ranges.ts"]) {
    assert.ok(
      ![...loaded].some((s) => s.endsWith(`/lib/client/${engine}`)),
      `${engine} is loaded before the first requests`,
    );
  }
});

Deno.test("a pull's and a push's engines load no npm package either: picomatch comes only with --include or --exclude (lib/shared/glob.ts)", async () => {
  for (const engine of ["lib/client/pull.ts", "lib/client/push.ts"]) {
    const loaded = await staticClosure(engine);
    assert.deepEqual(
      [...loaded].filter((s) => s.startsWith("npm:")),
      [],
      engine,
    );
  }
});
