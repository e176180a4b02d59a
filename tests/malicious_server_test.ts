/** The real hsync against a fake malicious server: nothing it sends may write outside the output directory or crash the client. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { encodeFrame } from "../lib/bundle_codec.ts";
import type { BundleRequest, ListEntry, StatEntry } from "../lib/wire.ts";
import { runClient, type RunResult, tempDir } from "./_programs.ts";
import { printable } from "../lib/printable.ts";

const KEEP = "untouched";

/** A loopback server answering stat, list, bundle and file as `handlers` say. */
function fakeServer(handlers: {
  stat?: (path: string) => StatEntry;
  list: () => string;
  bundle?: (paths: string[]) => Uint8Array[];
  file?: (path: string, range: string | null) => Response;
}): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request) => {
      const url = new URL(request.url);
      const path = url.searchParams.get("path") ?? "";
      switch (url.pathname) {
        case "/v1/stat":
          return Response.json(
            handlers.stat?.(path) ??
              { type: "dir", size: 0, mtime: 1, mode: 0o755, etag: '"d"' },
          );
        case "/v1/list":
          return new Response(handlers.list());
        case "/v1/bundle": {
          const req = await request.json() as BundleRequest;
          const frames = handlers.bundle?.(req.paths) ?? [];
          return new Response(new Blob(frames.map((f) => new Uint8Array(f))));
        }
        case "/v1/file":
          if (handlers.file !== undefined) {
            return handlers.file(path, request.headers.get("range"));
          }
      }
      return Response.json({ error: "not_found", message: "No" }, {
        status: 404,
      });
    },
  );
}

/** A file answer honouring one `Range`, as hsyncd would. */
function ranged(
  body: Uint8Array<ArrayBuffer>,
  range: string | null,
  etag: string,
): Response {
  const headers = { etag, "accept-ranges": "bytes" };
  const m = /bytes=(\d+)-(\d+)/.exec(range ?? "");
  if (m === null) return new Response(body, { headers });
  const [a, b] = [Number(m[1]), Number(m[2])];
  return new Response(body.slice(a, b + 1), {
    status: 206,
    headers: { ...headers, "content-range": `bytes ${a}-${b}/${body.length}` },
  });
}

function entry(path: string, size: number, type = "file"): ListEntry {
  return {
    path,
    type: type as "file" | "dir",
    size,
    mtime: 1_700_000_000_000,
    mode: 0o644,
    etag: `"${encodeURIComponent(path)}"`,
  };
}

function ndjson(entries: unknown[]): string {
  return entries.map((e) => JSON.stringify(e) + "\n").join("");
}

function fill(size: number, byte: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(size).fill(byte);
}

async function pullFrom(
  server: Deno.HttpServer<Deno.NetAddr>,
  out: string,
  hsyncDir: string,
  remote = "/data",
): Promise<RunResult> {
  return await runClient([
    "-i",
    remote,
    "-o",
    out,
    "-host",
    "127.0.0.1",
    "-p",
    String(server.addr.port),
    "--quiet",
  ], { HSYNC_DIR: hsyncDir });
}

/** Every path below `root`, sorted, directories with a trailing `/`, symlinks with ` ->`. */
async function tree(root: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(dir: string, rel: string) {
    for await (const e of Deno.readDir(dir)) {
      const r = rel === "" ? e.name : `${rel}/${e.name}`;
      if (e.isSymlink) out.push(`${r} ->`);
      else if (e.isDirectory) {
        out.push(r + "/");
        await walk(join(dir, e.name), r);
      } else out.push(r);
    }
  }
  await walk(root, "");
  return out.sort();
}

/** Lines `hsync: failed: PATH: MESSAGE` of a run, by path. */
function failures(stderr: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of stderr.split("\n")) {
    const m = /^hsync: failed: (.*?): ((?:Refused path|Cannot write) .*)$/.exec(
      line,
    );
    if (m !== null) out.set(m[1], m[2]);
  }
  return out;
}

Deno.test("hsync refuses hostile listing and bundle entries one by one, writes nothing outside, and completes the rest", async (t) => {
  await using dir = await tempDir("hsync-malicious-");
  const out = join(dir.path, "out");
  const outside = join(dir.path, "outside");
  await Deno.mkdir(out);
  await Deno.mkdir(outside);
  await Deno.writeTextFile(join(outside, "secret.txt"), KEEP);
  // Planted in the output directory before the pull.
  await Deno.symlink(outside, join(out, "planted_dir"));
  await Deno.symlink(join(outside, "secret.txt"), join(out, "planted_file"));
  await Deno.symlink(
    join(outside, "part-target"),
    join(out, "good2.txt.hsync-part"),
  );

  // [path as the server lists it, why the client must refuse it]
  const hostile: Array<[string, RegExp]> = [
    ["../escape.txt", /Refused path .*: it has a "\.\." component/],
    ["../../../../../../tmp/escape2.txt", /Refused path .*"\.\."/],
    ["sub/../../escape3.txt", /Refused path .*"\.\."/],
    [`${outside}/abs.txt`, /Refused path .*: it is absolute/],
    ["/etc/cron.d/evil", /Refused path .*: it is absolute/],
    ["nul\0.txt", /Refused path .*: it contains a NUL byte/],
    ["back\\..\\escape4.txt", /Refused path .*: it contains a backslash/],
    ["./dot.txt", /Refused path .*: it has a "\." component/],
    ["double//slash.txt", /Refused path .*: it has an empty component/],
    ["", /Refused path .*: it is empty/],
    ["x.hsync-journal", /Refused path .*reserved for hsync's partial files/],
    ["planted_dir/through-link.txt", /Cannot write .*: it is a symbolic link/],
    ["planted_dir", /Cannot write .*: it is a symbolic link/],
    // Terminal escapes in a name must reach the terminal as visible text.
    ["../\x1b]0;pwned\x07\x1b[2J.txt", /Refused path .*"\.\."/],
  ];
  const listing = [
    ...hostile.map(([p]) =>
      p === "planted_dir" ? entry(p, 0, "dir") : entry(p, 5)
    ),
    entry("good.txt", 5),
    entry("good2.txt", 5),
    entry("planted_file", 5),
    entry("big.bin", 300 * 1024),
  ];
  const server = fakeServer({
    list: () => ndjson(listing),
    bundle: (paths) => [
      // Frames nobody asked for come first: they must be ignored.
      encodeFrame(
        {
          path: "../bundle-escape.txt",
          size: 5,
          mtime: 1,
          mode: 0o644,
          etag: '"x"',
        },
        fill(5, 0x58),
      ),
      encodeFrame(
        {
          path: `${outside}/bundle-abs.txt`,
          size: 5,
          mtime: 1,
          mode: 0o644,
          etag: '"x"',
        },
        fill(5, 0x58),
      ),
      ...paths.map((p) =>
        encodeFrame(
          {
            path: p,
            size: 5,
            mtime: 1_700_000_000_000,
            mode: 0o644,
            etag: '"g"',
          },
          fill(5, 0x47),
        )
      ),
      encodeFrame({ end: true }),
    ],
    file: (_path, range) => ranged(fill(300 * 1024, 0x42), range, '"big.bin"'),
  });
  try {
    const r = await pullFrom(server, out, join(dir.path, "state"));
    const failed = failures(r.stderr);

    await t.step("exit code 2: some files failed, the rest completed", () => {
      assert.equal(r.code, 2, r.stderr);
    });
    for (const [path, why] of hostile) {
      await t.step(`refuses ${JSON.stringify(path)} with a clear line`, () => {
        assert.match(
          failed.get(printable(path)) ?? "(no line)",
          why,
          r.stderr,
        );
      });
    }
    await t.step("no control character reaches the terminal", () => {
      // deno-lint-ignore no-control-regex
      assert.doesNotMatch(r.stderr, /[\x00-\x08\x0b-\x1f\x7f]/);
    });
    await t.step(
      "nothing was written outside the output directory",
      async () => {
        assert.deepEqual(await tree(outside), ["secret.txt"]);
        assert.equal(
          await Deno.readTextFile(join(outside, "secret.txt")),
          KEEP,
        );
        assert.deepEqual(
          await tree(dir.path),
          [
            "out/",
            "out/big.bin",
            "out/good.txt",
            "out/good2.txt",
            "out/planted_dir ->",
            "out/planted_file",
            "outside/",
            "outside/secret.txt",
          ].sort(),
        );
      },
    );
    await t.step(
      "the good files are complete and a planted file link was replaced, not followed",
      async () => {
        assert.equal(await Deno.readTextFile(join(out, "good.txt")), "GGGGG");
        assert.equal(await Deno.readTextFile(join(out, "good2.txt")), "GGGGG");
        const planted = await Deno.lstat(join(out, "planted_file"));
        assert.ok(planted.isFile && !planted.isSymlink);
        assert.equal(
          (await Deno.readFile(join(out, "big.bin"))).length,
          300 * 1024,
        );
      },
    );
    await t.step("every line is one line, without a stack trace", () => {
      assert.ok(!r.stderr.includes("    at "), r.stderr);
      for (const line of r.stderr.trimEnd().split("\n")) {
        assert.match(line, /^hsync: /);
      }
    });
  } finally {
    await server.shutdown();
  }
});

Deno.test("hsync survives a server that lies about sizes, sends endless or garbled data, or an endless listing line", async (t) => {
  await using dir = await tempDir("hsync-malicious-");
  const state = join(dir.path, "state");

  await t.step(
    "a body longer than the listed size never grows the file past it",
    async () => {
      const out = join(dir.path, "long");
      const server = fakeServer({
        list: () => ndjson([entry("f.bin", 300 * 1024)]),
        // 4 MiB, no Content-Length, whatever range was asked.
        file: () =>
          new Response(
            new ReadableStream({
              start(c) {
                for (let i = 0; i < 16; i++) c.enqueue(fill(256 * 1024, 0x41));
                c.close();
              },
            }),
          ),
      });
      try {
        const r = await pullFrom(server, out, state);
        assert.equal(r.code, 2, r.stderr);
        assert.ok(!r.stderr.includes("    at "), r.stderr);
        for await (const e of Deno.readDir(out)) {
          const size = (await Deno.stat(join(out, e.name))).size;
          assert.ok(size <= 300 * 1024, `${e.name} has ${size} bytes`);
        }
      } finally {
        await server.shutdown();
      }
    },
  );

  await t.step(
    "bundle frames with the wrong size, a huge header or garbage fail cleanly",
    async () => {
      const out = join(dir.path, "garbled");
      const server = fakeServer({
        list: () => ndjson([entry("a.txt", 5), entry("b.txt", 5)]),
        bundle: (paths) => [
          encodeFrame(
            { path: paths[0], size: 5, mtime: 1, mode: 0o644, etag: '"a"' },
            fill(5, 0x41),
          ),
          // A header length of 4 GiB.
          new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x7b]),
        ],
      });
      try {
        const r = await pullFrom(server, out, state);
        assert.ok(r.code === 2 || r.code === 3, r.stderr);
        assert.ok(!r.stderr.includes("    at "), r.stderr);
        const written = await tree(out);
        assert.ok(
          written.every((p) => /^[ab]\.txt(\.hsync-(part|journal))?$/.test(p)),
          `${written}: ${r.stderr}`,
        );
        if (written.includes("a.txt")) {
          assert.equal(await Deno.readTextFile(join(out, "a.txt")), "AAAAA");
        }
      } finally {
        await server.shutdown();
      }
    },
  );

  await t.step(
    "a listing line without end stops the run with one line",
    async () => {
      const out = join(dir.path, "endless");
      const server = fakeServer({
        list: () => `{"path":"${"x".repeat(2 * 1024 * 1024)}`,
      });
      try {
        const r = await pullFrom(server, out, state);
        assert.equal(r.code, 3, r.stderr);
        assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
        assert.match(r.stderr, /^hsync: .*line longer than/);
      } finally {
        await server.shutdown();
      }
    },
  );

  await t.step(
    "a malformed listing entry stops the run with one line",
    async () => {
      const out = join(dir.path, "malformed");
      const server = fakeServer({
        list: () => ndjson([{ path: "a", type: "symlink", size: -1 }]),
      });
      try {
        const r = await pullFrom(server, out, state);
        assert.equal(r.code, 3, r.stderr);
        assert.match(r.stderr, /^hsync: .*malformed entry/);
        assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
      } finally {
        await server.shutdown();
      }
    },
  );

  await t.step(
    "a single remote file whose name is .. lands at the output path, not above it",
    async () => {
      const out = join(dir.path, "single", "dest.txt");
      await Deno.mkdir(join(dir.path, "single"));
      const server = fakeServer({
        stat: () => ({
          type: "file",
          size: 5,
          mtime: 1,
          mode: 0o644,
          etag: '"s"',
        }),
        list: () => "",
        file: (_path, range) => ranged(fill(5, 0x53), range, '"s"'),
      });
      try {
        const r = await pullFrom(server, out, state, "/data/..");
        assert.ok(r.code === 0 || r.code === 2, r.stderr);
        assert.deepEqual(
          await tree(join(dir.path, "single")),
          ["dest.txt"],
          r.stderr,
        );
        assert.equal(await Deno.readTextFile(out), "SSSSS");
      } finally {
        await server.shutdown();
      }
    },
  );
});
