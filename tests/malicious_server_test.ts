/** The real hsync against a fake malicious server: nothing it sends may write outside the output directory or crash the client. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { encodeFrame } from "../lib/shared/bundle_codec.ts";
import type {
  BundleRequest,
  ListEntry,
  StatEntry,
} from "../lib/shared/wire.ts";
import {
  runClient,
  type RunResult,
  spawnClient,
  tempDir,
  waitFor,
} from "./_programs.ts";
import { printable } from "../lib/client/printable.ts";

const KEEP = "untouched";

/** A loopback server answering stat, list, bundle and file as `handlers` say (`route` first, for anything else). */
function fakeServer(handlers: {
  route?: (
    url: URL,
    request: Request,
  ) => Response | Promise<Response | undefined> | undefined;
  stat?: (path: string) => StatEntry;
  list?: () => string | ReadableStream<Uint8Array>;
  bundle?: (paths: string[]) => Uint8Array[];
  file?: (
    path: string,
    range: string | null,
  ) => Response | Promise<Response>;
}): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request) => {
      const url = new URL(request.url);
      const path = url.searchParams.get("path") ?? "";
      const routed = await handlers.route?.(url, request);
      if (routed !== undefined) return routed;
      switch (url.pathname) {
        case "/v1/stat":
          return Response.json(
            handlers.stat?.(path) ??
              { type: "dir", size: 0, mtime: 1, mode: 0o755, etag: '"d"' },
          );
        case "/v1/list":
          return new Response(handlers.list?.() ?? "");
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
  more: string[] = [],
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
    ...more,
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
        // Not an answer hsyncd gives: exit code 4, as for a server that is not hsyncd.
        assert.equal(r.code, 4, r.stderr);
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
        // Not an answer hsyncd gives: exit code 4, as for a server that is not hsyncd.
        assert.equal(r.code, 4, r.stderr);
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

/** `s` with every regular-expression character escaped. */
function literal(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

/** A body of `head` bytes that then breaks (the connection is cut mid-body). */
function breaking(head: Uint8Array<ArrayBuffer>): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(c) {
      c.enqueue(head);
    },
    pull(c) {
      c.error(new Error("cut"));
    },
  });
}

Deno.test("hsync never follows a redirect: one line naming the URL and the Location, exit code 3, nothing sent to the other host", async (t) => {
  await using dir = await tempDir("hsync-malicious-");
  const state = join(dir.path, "state");
  const reached: string[] = [];
  const other = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request) => {
      reached.push(request.url);
      return Response.json(
        { type: "dir", size: 0, mtime: 1, mode: 0o755, etag: '"o"' },
      );
    },
  );
  const elsewhere = `http://127.0.0.1:${other.addr.port}/v1/stat?path=%2F`;
  const redirect = (status: number) =>
    new Response(null, { status, headers: { location: elsewhere } });
  /** The one line of a refused redirect from `server` for `endpoint`. */
  const line = (server: Deno.HttpServer<Deno.NetAddr>, request: string) => {
    const host = `127.0.0.1:${server.addr.port}`;
    return new RegExp(
      `^hsync: Server ${literal(host)} redirected "${
        literal(`http://${host}${request}`)
      }" to "${literal(elsewhere)}": hsync does not follow redirects\\n$`,
    );
  };
  try {
    await t.step(
      "a redirected stat stops the run before anything is written",
      async () => {
        const server = fakeServer({
          route: (url) =>
            url.pathname === "/v1/stat" ? redirect(302) : undefined,
        });
        try {
          const out = join(dir.path, "stat");
          const r = await pullFrom(server, out, state);
          assert.equal(r.code, 3, r.stderr);
          assert.match(r.stderr, line(server, "/v1/stat?path=%2Fdata"));
          assert.deepEqual(reached, []);
          assert.ok(!(await Deno.stat(out).then(() => true, () => false)));
        } finally {
          await server.shutdown();
        }
      },
    );

    await t.step(
      "a redirected file request in the middle of a run stops it",
      async () => {
        const server = fakeServer({
          list: () => ndjson([entry("big.bin", 300 * 1024)]),
          // Not the request asked for with the stat (`iffile=1`): one of
          // the tree's files, once the run has begun writing.
          route: (url) =>
            url.pathname === "/v1/file" && !url.searchParams.has("iffile")
              ? redirect(307)
              : undefined,
        });
        try {
          const out = join(dir.path, "file");
          const r = await pullFrom(server, out, state);
          assert.equal(r.code, 3, r.stderr);
          assert.match(
            r.stderr,
            line(server, "/v1/file?path=%2Fdata%2Fbig.bin"),
          );
          assert.deepEqual(reached, []);
          assert.deepEqual(await tree(out), [
            "big.bin.hsync-journal",
            "big.bin.hsync-part",
          ]);
        } finally {
          await server.shutdown();
        }
      },
    );

    await t.step("a redirected watch stops --sync", async () => {
      const server = fakeServer({
        route: (url) =>
          url.pathname === "/v1/watch" ? redirect(301) : undefined,
      });
      try {
        const r = await pullFrom(
          server,
          join(dir.path, "sync"),
          state,
          "/data",
          ["--sync"],
        );
        assert.equal(r.code, 3, r.stderr);
        assert.match(
          r.stderr,
          /redirected ".*\/v1\/watch\?path=%2Fdata&.*": hsync does not follow redirects\n$/,
        );
        assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
        assert.deepEqual(reached, []);
      } finally {
        await server.shutdown();
      }
    });
  } finally {
    await other.shutdown();
  }
});

Deno.test("hsync writes no server byte through a symlink planted at a part file, a journal or a target, before or during a pull", async (t) => {
  await using dir = await tempDir("hsync-malicious-");
  const state = join(dir.path, "state");
  const outside = join(dir.path, "outside");
  await Deno.mkdir(outside);
  const victims = ["part", "journal", "target", "during"].map((name) =>
    join(outside, `${name}.txt`)
  );
  for (const v of victims) await Deno.writeTextFile(v, KEEP);
  const [partVictim, journalVictim, targetVictim, duringVictim] = victims;
  const BIG = 1024 * 1024;
  const content = fill(BIG, 0x42);

  await t.step(
    "links planted before the run are replaced, never followed",
    async () => {
      const out = join(dir.path, "before");
      await Deno.mkdir(out);
      await Deno.symlink(partVictim, join(out, "big.bin.hsync-part"));
      await Deno.symlink(journalVictim, join(out, "big.bin.hsync-journal"));
      await Deno.symlink(targetVictim, join(out, "small.txt"));
      const server = fakeServer({
        list: () => ndjson([entry("big.bin", BIG), entry("small.txt", 5)]),
        bundle: (paths) => [
          ...paths.map((p) =>
            encodeFrame({
              path: p,
              size: 5,
              mtime: 1,
              mode: 0o644,
              etag: '"s"',
            }, fill(5, 0x53))
          ),
          encodeFrame({ end: true }),
        ],
        file: (_path, range) => ranged(content, range, '"big.bin"'),
      });
      try {
        const r = await pullFrom(server, out, state, "/data", ["-P"]);
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(await tree(out), ["big.bin", "small.txt"]);
        assert.equal(await Deno.readTextFile(join(out, "small.txt")), "SSSSS");
        for (const v of [partVictim, journalVictim, targetVictim]) {
          assert.equal(await Deno.readTextFile(v), KEEP, v);
        }
      } finally {
        await server.shutdown();
      }
    },
  );

  await t.step(
    "a link swapped in for the part file between two range requests fails the file with one line",
    async () => {
      const out = join(dir.path, "during");
      const part = join(out, "big.bin.hsync-part");
      let requests = 0;
      const server = fakeServer({
        list: () => ndjson([entry("big.bin", BIG)]),
        file: async (_path, range) => {
          const m = /^bytes=(\d+)-(\d+)$/.exec(range ?? "");
          assert.ok(m !== null, String(range));
          const [a, b] = [Number(m[1]), Number(m[2])];
          const headers = {
            etag: '"big.bin"',
            "content-range": `bytes ${a}-${b}/${BIG}`,
          };
          if (++requests === 1) {
            // 100 KiB, then the connection breaks: hsync asks for the rest.
            return new Response(breaking(content.slice(a, a + 100 * 1024)), {
              status: 206,
              headers,
            });
          }
          // Before the answer to that second request: another local user
          // swaps the part file for a link to one of the victim's files.
          await Deno.remove(part);
          await Deno.symlink(duringVictim, part);
          return new Response(content.slice(a, b + 1), {
            status: 206,
            headers,
          });
        },
      });
      try {
        const r = await pullFrom(server, out, state, "/data", ["-P"]);
        assert.ok(requests >= 2, r.stderr);
        assert.equal(await Deno.readTextFile(duringVictim), KEEP, r.stderr);
        assert.equal(r.code, 2, r.stderr);
        assert.match(
          failures(r.stderr).get("big.bin") ?? "(no line)",
          new RegExp(
            `^Cannot write "${literal(part)}": it is a symbolic link$`,
          ),
          r.stderr,
        );
        assert.ok(!(await tree(out)).includes("big.bin"));
      } finally {
        await server.shutdown();
      }
    },
  );
});

Deno.test("a symlink planted again and again at the journal's name while a file arrives never gets a byte", async () => {
  await using dir = await tempDir("hsync-malicious-");
  const out = join(dir.path, "out");
  await Deno.mkdir(out);
  const victim = join(dir.path, "victim.txt");
  await Deno.writeTextFile(victim, KEEP);
  const SIZE = 2 * 1024 * 1024;
  const CHUNK = 64 * 1024;
  const content = fill(SIZE, 0x4a);
  const names = ["s1.bin", "s2.bin", "s3.bin", "s4.bin"];
  const server = fakeServer({
    list: () => ndjson(names.map((name) => entry(name, SIZE))),
    file: (path, range) => {
      const m = /^bytes=(\d+)-(\d+)$/.exec(range ?? "")!;
      const [a, b] = [Number(m[1]), Number(m[2])];
      let at = a;
      // About 1.6 s per file, four at once: a dozen journal replacements,
      // each one a chance for the racer to have its link at the name.
      const body = new ReadableStream<Uint8Array>({
        async pull(c) {
          await new Promise((r) => setTimeout(r, 50));
          const end = Math.min(b + 1, at + CHUNK);
          c.enqueue(content.slice(at, end));
          at = end;
          if (at > b) c.close();
        },
      });
      return new Response(body, {
        status: 206,
        headers: {
          etag: `"${path}"`,
          "content-range": `bytes ${a}-${b}/${SIZE}`,
          "content-length": String(b + 1 - a),
        },
      });
    },
  });
  // Another local user, in a tight loop: a fresh link to the victim renamed
  // over each journal's name (rename replaces whatever is there, atomically).
  const journals = names.map((name) => join(out, `${name}.hsync-journal`));
  const racer = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `const [victim, journals] = ${JSON.stringify([victim, journals])};
       const end = Date.now() + 20_000;
       while (Date.now() < end) {
         for (const journal of journals) {
           try {
             Deno.symlinkSync(victim, journal + ".racer");
             Deno.renameSync(journal + ".racer", journal);
           } catch { /* again */ }
         }
       }`,
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    const r = await pullFrom(server, out, join(dir.path, "state"));
    assert.ok(r.code === 0 || r.code === 2, r.stderr);
    assert.ok(!r.stderr.includes("    at "), r.stderr);
  } finally {
    racer.kill("SIGKILL");
    await racer.status;
    await server.shutdown();
  }
  assert.equal(await Deno.readTextFile(victim), KEEP);
});

/** A fake hsyncd for `--sync` of one file, `/data/f.log`: stat, hash, ranged file, and a watch that reports a change when told to. */
function followServer(initial: Uint8Array<ArrayBuffer>) {
  const s = {
    content: initial,
    /** Device and inode in the ETag: a new one means another file under the name. */
    id: "1-2",
    mtime: 1_700_000_000_000,
    /** Called on a file request before it is answered (with its Range header). */
    onFile: undefined as ((range: string | null) => Promise<void>) | undefined,
    /** Bumped to make the next watch report a change. */
    generation: 0,
    /** Watch requests with a cursor so far: the follower is following. */
    polls: 0,
  };
  const etag = () =>
    `"${s.id}-${s.content.length.toString(16)}-${s.mtime.toString(16)}-0"`;
  let seen = 0;
  const server = fakeServer({
    stat: () => ({
      type: "file",
      size: s.content.length,
      mtime: s.mtime,
      mode: 0o644,
      etag: etag(),
    }),
    route: async (url) => {
      const q = url.searchParams;
      if (url.pathname === "/v1/watch") {
        if (q.get("cursor") === null) {
          return Response.json({ cursor: "c", changed: [], rescan: true });
        }
        s.polls++;
        const deadline = Date.now() + 500;
        while (seen === s.generation && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 10));
        }
        const changed = seen === s.generation ? [] : [""];
        seen = s.generation;
        return Response.json({ cursor: "c", changed, rescan: false });
      }
      if (url.pathname === "/v1/hash") {
        const offset = Number(q.get("offset") ?? 0);
        const length = Number(q.get("length") ?? s.content.length);
        if (offset + length > s.content.length) {
          return Response.json({ error: "range", message: "No" }, {
            status: 416,
          });
        }
        const sha256 = createHash("sha256").update(
          s.content.subarray(offset, offset + length),
        ).digest("hex");
        return Response.json({ sha256, offset, length, etag: etag() });
      }
      return undefined;
    },
    file: async (_path, range) => {
      await s.onFile?.(range);
      const size = s.content.length;
      const headers = { etag: etag(), "accept-ranges": "bytes" };
      const m = /^bytes=(\d+)-(\d*)$/.exec(range ?? "");
      if (m === null) return new Response(s.content.slice(), { headers });
      const a = Number(m[1]);
      const b = m[2] === "" ? size - 1 : Math.min(size - 1, Number(m[2]));
      if (a >= size) {
        return new Response(null, {
          status: 416,
          headers: { ...headers, "content-range": `bytes */${size}` },
        });
      }
      return new Response(s.content.slice(a, b + 1), {
        status: 206,
        headers: { ...headers, "content-range": `bytes ${a}-${b}/${size}` },
      });
    },
  });
  return { server, s };
}

Deno.test("hsync --sync writes no server byte through a symlink planted at or swapped in for the followed file or its part file", async (t) => {
  await using dir = await tempDir("hsync-malicious-");
  const v1 = fill(100 * 1024, 0x31);
  const grown = new Uint8Array([...v1, ...fill(1000, 0x32)]);

  await t.step(
    "a link at the followed file's name before the run is replaced; one planted between two rounds fails the file",
    async () => {
      const out = join(dir.path, "before");
      await Deno.mkdir(out);
      const target = join(out, "f.log");
      const victim = join(dir.path, "before-victim.log");
      await Deno.writeFile(victim, v1);
      await Deno.symlink(victim, target);
      const { server, s } = followServer(v1.slice());
      const client = spawnClient([
        "-i",
        "/data/f.log",
        "-o",
        target,
        "-host",
        "127.0.0.1",
        "-p",
        String(server.addr.port),
        "--sync",
        "--quiet",
      ], { HSYNC_DIR: join(dir.path, "state-0") });
      try {
        await waitFor("the first pull, then following", () => s.polls > 0);
        assert.ok((await Deno.lstat(target)).isFile);
        await Deno.remove(target);
        await Deno.symlink(victim, target);
        s.content = grown;
        s.generation++;
        await waitFor(
          "the round to fail or to write",
          async () =>
            client.stderr().includes("failed:") ||
            (await Deno.stat(victim)).size !== v1.length,
          10_000,
        );
      } finally {
        const r = await client.stop();
        await server.shutdown();
        assert.ok(sameBytesOf(await Deno.readFile(victim), v1), r.stderr);
        assert.match(
          r.stderr,
          new RegExp(
            `failed: f\\.log: Cannot write "${
              literal(target)
            }": it exists and is not a regular file`,
          ),
        );
      }
    },
  );

  await t.step(
    "the followed file swapped for a link while new bytes are fetched",
    async () => {
      const out = join(dir.path, "append");
      const target = join(out, "f.log");
      // The victim ends as the followed file does: its tail hash agrees.
      const victim = join(dir.path, "append-victim.log");
      await Deno.writeFile(victim, v1);
      const { server, s } = followServer(v1.slice());
      const client = spawnClient([
        "-i",
        "/data/f.log",
        "-o",
        target,
        "-host",
        "127.0.0.1",
        "-p",
        String(server.addr.port),
        "--sync",
        "--quiet",
      ], { HSYNC_DIR: join(dir.path, "state-a") });
      try {
        await waitFor(
          "the first pull, then following",
          () => s.polls > 0,
          15_000,
        );
        s.onFile = async (range) => {
          if (range?.startsWith(`bytes=${v1.length}-`)) {
            s.onFile = undefined;
            await Deno.remove(target);
            await Deno.symlink(victim, target);
          }
        };
        s.content = grown;
        s.generation++;
        await waitFor(
          "the round to fail or to write",
          async () =>
            client.stderr().includes("failed:") ||
            (await Deno.stat(victim)).size !== v1.length,
          10_000,
        );
      } finally {
        const r = await client.stop();
        await server.shutdown();
        assert.ok(
          sameBytesOf(await Deno.readFile(victim), v1),
          `the victim was written: ${r.stderr}`,
        );
        assert.match(
          r.stderr,
          new RegExp(
            `failed: f\\.log: Cannot write "${
              literal(target)
            }": it is a symbolic link`,
          ),
        );
      }
    },
  );

  await t.step(
    "the part file of a replaced file swapped for a link before its body arrives",
    async () => {
      const out = join(dir.path, "whole");
      const target = join(out, "f.log");
      const part = target + ".hsync-part";
      const victim = join(dir.path, "whole-victim.txt");
      await Deno.writeTextFile(victim, KEEP);
      const { server, s } = followServer(v1.slice());
      const client = spawnClient([
        "-i",
        "/data/f.log",
        "-o",
        target,
        "-host",
        "127.0.0.1",
        "-p",
        String(server.addr.port),
        "--sync",
        "--quiet",
      ], { HSYNC_DIR: join(dir.path, "state-b") });
      try {
        await waitFor(
          "the first pull, then following",
          () => s.polls > 0,
          15_000,
        );
        s.onFile = async (range) => {
          if (range === null) {
            s.onFile = undefined;
            await Deno.remove(part);
            await Deno.symlink(victim, part);
          }
        };
        // Another file under the name (rotated): it is fetched whole.
        s.id = "3-4";
        s.content = fill(2000, 0x33);
        s.generation++;
        await waitFor(
          "the round to fail or to write",
          async () =>
            client.stderr().includes("failed:") ||
            (await Deno.readTextFile(victim)) !== KEEP,
          10_000,
        );
      } finally {
        const r = await client.stop();
        await server.shutdown();
        assert.equal(await Deno.readTextFile(victim), KEEP, r.stderr);
        assert.match(
          r.stderr,
          new RegExp(
            `failed: f\\.log: Cannot write "${
              literal(part)
            }": it is a symbolic link`,
          ),
        );
        assert.ok(sameBytesOf(await Deno.readFile(target), v1), r.stderr);
      }
    },
  );
});

function sameBytesOf(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

Deno.test("hsync -P drops setuid, setgid, sticky and write-for-others bits unless --special-modes, and never changes the destination directory itself", async (t) => {
  await using dir = await tempDir("hsync-malicious-");
  const state = join(dir.path, "state");
  // [path, type, size, mode the server sends, mode after -P, after --special-modes]
  const entries: Array<
    [string, "file" | "dir", number, number, number, number]
  > = [
    ["d", "dir", 0, 0o3777, 0o775, 0o3777],
    ["d/s.sh", "file", 5, 0o6777, 0o775, 0o6777],
    ["big.bin", "file", 300 * 1024, 0o4766, 0o764, 0o4766],
    ["w.txt", "file", 5, 0o666, 0o664, 0o666],
  ];
  const modeOf = new Map(entries.map(([p, , , mode]) => [p, mode]));
  const server = fakeServer({
    stat: () => ({
      type: "dir",
      size: 0,
      mtime: 1_000_000_000_000,
      mode: 0o1777,
      etag: '"root"',
    }),
    list: () =>
      ndjson(entries.map(([path, type, size, mode]) => ({
        ...entry(path, size, type),
        mode,
      }))),
    bundle: (paths) => [
      ...paths.map((p) =>
        encodeFrame({
          path: p,
          size: 5,
          mtime: 1_700_000_000_000,
          mode: modeOf.get(p)!,
          etag: `"${p}"`,
        }, fill(5, 0x4d))
      ),
      encodeFrame({ end: true }),
    ],
    file: (_path, range) => ranged(fill(300 * 1024, 0x42), range, '"big"'),
  });
  try {
    for (const special of [false, true]) {
      const flags = special ? ["-P", "--special-modes"] : ["-P"];
      await t.step(flags.join(" "), async () => {
        // The user's own directory, pulled into (as with "-o .").
        const out = join(dir.path, special ? "special" : "plain");
        await Deno.mkdir(out);
        await Deno.chmod(out, 0o700);
        const r = await pullFrom(server, out, state, "/data", flags);
        assert.equal(r.code, 0, r.stderr);
        for (const [path, , , , plain, kept] of entries) {
          const mode = (await Deno.lstat(join(out, path))).mode! & 0o7777;
          assert.equal(
            mode.toString(8),
            (special ? kept : plain).toString(8),
            path,
          );
        }
        // Its mtime moves as entries are made in it, but never to the server's.
        const root = await Deno.lstat(out);
        assert.equal((root.mode! & 0o7777).toString(8), "700");
        assert.notEqual(root.mtime?.getTime(), 1_000_000_000_000);
      });
    }
  } finally {
    await server.shutdown();
  }
});

Deno.test("a file announced as 10 TiB gets a part file only as big as the bytes that arrived", async () => {
  await using dir = await tempDir("hsync-malicious-");
  const HUGE = 10 * 1024 ** 4;
  const server = fakeServer({
    stat: () => ({
      type: "file",
      size: HUGE,
      mtime: 1,
      mode: 0o644,
      etag: '"huge"',
    }),
    file: (_path, range) => {
      const m = /^bytes=(\d+)-(\d+)$/.exec(range ?? "")!;
      return new Response(breaking(fill(1000, 0x48)), {
        status: 206,
        headers: {
          etag: '"huge"',
          "content-range": `bytes ${m[1]}-${m[2]}/${HUGE}`,
        },
      });
    },
  });
  const ini = join(dir.path, "client.ini");
  await Deno.writeTextFile(ini, "[hscp]\nMax_timeout_retry = 0\n");
  const out = join(dir.path, "huge.bin");
  try {
    const r = await pullFrom(
      server,
      out,
      join(dir.path, "state"),
      "/data/huge.bin",
      ["-c", ini],
    );
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      failures(r.stderr).size + (r.stderr.match(/failed:/g)?.length ?? 0) > 0,
      true,
      r.stderr,
    );
    // Each range that began wrote its 1,000 bytes at its own offset (the
    // first 8 MiB asked for with the stat, and the ranges begun beside it):
    // the part is sparse, its blocks only those bytes', never 10 TiB
    // reserved.
    const part = await Deno.stat(out + ".hsync-part");
    const allocated = (part.blocks ?? 0) * 512;
    assert.ok(
      allocated <= 256 * 1024 && part.size < 2 ** 30,
      `the part file has ${part.size} bytes, ${allocated} allocated`,
    );
  } finally {
    await server.shutdown();
  }
});

Deno.test("an endless listing stops at --max-entries with one line and exit code 3, having made at most that many files", async (t) => {
  await using dir = await tempDir("hsync-malicious-");
  const state = join(dir.path, "state");
  const endless = () => {
    let n = 0;
    return new ReadableStream<Uint8Array>({
      pull(c) {
        const lines: unknown[] = [];
        for (let i = 0; i < 500; i++) lines.push(entry(`e${n++}.txt`, 0));
        c.enqueue(new TextEncoder().encode(ndjson(lines)));
      },
    });
  };
  const server = fakeServer({
    list: endless,
    route: (url) =>
      url.pathname === "/v1/watch"
        ? Response.json({ cursor: "c", changed: [], rescan: true })
        : undefined,
  });
  const bound = (r: RunResult) =>
    assert.match(
      r.stderr,
      /hsync: Listing of "\/data" from 127\.0\.0\.1:\d+ has more than 100 entries, the most one run accepts \(--max-entries\)\n$/,
    );
  try {
    await t.step("a pull", async () => {
      const out = join(dir.path, "pull");
      const r = await pullFrom(server, out, state, "/data", [
        "--max-entries",
        "100",
      ]);
      assert.equal(r.code, 3, r.stderr);
      assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
      bound(r);
      assert.ok((await tree(out)).length <= 100);
    });
    await t.step(
      "--sync into an empty directory (its first pull)",
      async () => {
        const out = join(dir.path, "sync-empty");
        const r = await pullFrom(server, out, state, "/data", [
          "--sync",
          "--max-entries",
          "100",
        ]);
        assert.equal(r.code, 3, r.stderr);
        bound(r);
        assert.ok((await tree(out)).length <= 100);
      },
    );
    await t.step("--sync into a directory with data (its rescan)", async () => {
      const out = join(dir.path, "sync-data");
      await Deno.mkdir(out);
      await Deno.writeTextFile(join(out, "mine.txt"), KEEP);
      const r = await pullFrom(server, out, state, "/data", [
        "--sync",
        "--max-entries",
        "100",
      ]);
      assert.equal(r.code, 3, r.stderr);
      bound(r);
      assert.ok((await tree(out)).length <= 101);
    });
  } finally {
    await server.shutdown();
  }
});
