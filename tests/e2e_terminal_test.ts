/** End-to-end in a real terminal (tmux, 80 and 60 columns): the bar fits and redraws in place, a single file shows an ETA, Ctrl-C clears the bar before the last lines; a pull and a push through a slow link. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { startLink } from "../bench/_link.ts";
import {
  clientArgv,
  freePort,
  ROOT,
  runClient,
  startServer,
  tempDir,
  waitFor,
} from "./_programs.ts";

const MiB = 1024 * 1024;

function hasTmux(): boolean {
  try {
    return new Deno.Command("tmux", { args: ["-V"], stdout: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

const TMUX = hasTmux();
// The reason a test is skipped belongs in the test output.
// deno-lint-ignore no-console
if (!TMUX) console.log("e2e_terminal_test: tmux is not installed: skipped");

/** One tmux server of its own (a socket in `dir`) running one pane `columns` wide. */
class Pane implements AsyncDisposable {
  readonly #socket: string;
  readonly columns: number;

  constructor(dir: string, columns: number) {
    this.#socket = join(dir, "tmux.sock");
    this.columns = columns;
  }

  #tmux(...args: string[]): string {
    const out = new Deno.Command("tmux", {
      args: ["-S", this.#socket, "-f", "/dev/null", ...args],
      stdout: "piped",
      stderr: "piped",
    }).outputSync();
    if (!out.success) {
      throw new Error(
        `tmux ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`,
      );
    }
    return new TextDecoder().decode(out.stdout);
  }

  /** Starts `script` (a shell script file) in a pane of `columns` x 24. */
  start(script: string): void {
    this.#tmux(
      "new-session",
      "-d",
      "-x",
      String(this.columns),
      "-y",
      "24",
      `sh ${script}`,
    );
  }

  /** The screen's rows (wrapped lines joined, so a line wider than the pane shows as one long row). */
  rows(): string[] {
    const text = this.#tmux("capture-pane", "-p", "-J");
    const rows = text.split("\n");
    while (rows.length > 0 && rows.at(-1)!.trim() === "") rows.pop();
    return rows.map((r) => r.trimEnd());
  }

  keys(...keys: string[]): void {
    this.#tmux("send-keys", ...keys);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#tmux("kill-server");
    } catch {
      // already gone
    }
    await Promise.resolve();
  }
}

/** A shell script that prints `MARK`, runs hsync with `args`, prints its exit code, and stays. */
async function scriptFor(
  dir: string,
  args: string[],
): Promise<string> {
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  const script = join(dir, "run.sh");
  await Deno.writeTextFile(
    script,
    [
      // A handler (not an ignore, which hsync would inherit): Ctrl-C stops hsync, not the script.
      "trap : INT",
      "clear",
      "echo MARK",
      `cd ${quote(ROOT)}`,
      `HSYNC_DIR=${quote(join(dir, "client-dir"))} NO_COLOR=1 ${
        quote(Deno.execPath())
      } ${[...clientArgv(), ...args].map(quote).join(" ")}`,
      'echo "EXIT=$?"',
      "sleep 600",
      "",
    ].join("\n"),
  );
  await Deno.mkdir(join(dir, "client-dir"), { recursive: true });
  return script;
}

/** A file of `size` bytes that does not compress. */
function noise(size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) {
    crypto.getRandomValues(out.subarray(i, Math.min(size, i + 65536)));
  }
  return out;
}

/** Watches the pane until `EXIT=` shows, checking every capture while hsync runs: no row as wide as the pane, `MARK` still on top, the bar on one row. */
async function watch(pane: Pane, timeoutMs = 60_000): Promise<{
  bars: string[];
  last: string[];
}> {
  const bars: string[] = [];
  let last: string[] = [];
  await waitFor("hsync to end", () => {
    last = pane.rows();
    assert.equal(last[0], "MARK", `the screen scrolled: ${last.join("\n")}`);
    // The lines that end the run are printed once, and may wrap.
    if (last.some((r) => r.startsWith("EXIT="))) return true;
    for (const row of last) {
      assert.ok(
        row.length < pane.columns,
        `a row as wide as the pane (${pane.columns}): ${JSON.stringify(row)}`,
      );
    }
    // While it runs: the mark and one bar row, however often it was redrawn.
    assert.ok(last.length <= 2, `redraws added rows:\n${last.join("\n")}`);
    if (last[1]?.includes("%")) bars.push(last[1]);
    return false;
  }, timeoutMs);
  return { bars, last };
}

for (const columns of [80, 60]) {
  Deno.test({
    name:
      `a slow single-file pull in a ${columns}-column terminal redraws one row, shows an ETA and no +, and ends with the summary`,
    ignore: !TMUX,
    async fn() {
      await using dir = await tempDir();
      const data = join(dir.path, "data");
      await Deno.mkdir(data);
      await Deno.writeFile(join(data, "big.bin"), noise(6 * MiB));
      await using server = await startServer({
        dir: dir.path,
        config: `[hsyncd]\nOnly_allowed_path = ${data}\n`,
      });
      await using link = startLink(server.port, 20, 32 * 1024);
      const out = join(dir.path, "out.bin");
      const script = await scriptFor(dir.path, [
        `127.0.0.1:${link.port}:${data}/big.bin`,
        out,
      ]);
      await using pane = new Pane(dir.path, columns);
      pane.start(script);
      const { bars, last } = await watch(pane);
      assert.equal(last.at(-1), "EXIT=0", last.join("\n"));
      assert.match(
        last[1],
        /^hsync: 1 file, 6\.00 MiB in [\d.]+ s \(.*\), 0 skipped, 0 failed$/,
        last.join("\n"),
      );
      assert.equal(last.length, 3, last.join("\n"));
      assert.ok(new Set(bars).size >= 2, `redraws seen: ${bars.join("\n")}`);
      assert.ok(
        bars.some((b) => /ETA \d+:\d\d/.test(b)),
        `an ETA: ${bars.join("\n")}`,
      );
      assert.ok(!bars.some((b) => b.includes("+")), bars.join("\n"));
    },
  });
}

Deno.test({
  name:
    "Ctrl-C in a 60-column terminal clears the bar, then prints the interrupted line and a summary with the bytes kept for resume (exit 130)",
  ignore: !TMUX,
  async fn() {
    await using dir = await tempDir();
    const data = join(dir.path, "data");
    await Deno.mkdir(data);
    await Deno.writeFile(join(data, "huge.bin"), noise(64 * MiB));
    await using server = await startServer({
      dir: dir.path,
      config: `[hsyncd]\nOnly_allowed_path = ${data}\n`,
    });
    await using link = startLink(server.port, 20, 32 * 1024);
    const out = join(dir.path, "out.bin");
    const script = await scriptFor(dir.path, [
      `127.0.0.1:${link.port}:${data}/huge.bin`,
      out,
    ]);
    await using pane = new Pane(dir.path, 60);
    pane.start(script);
    await waitFor(
      "a MiB to arrive",
      () => / [1-9][\d.]* MiB\//.test(pane.rows()[1] ?? ""),
    );
    pane.keys("C-c");
    const { last } = await watch(pane);
    const text = last.join("\n");
    assert.deepEqual(last.slice(1, 2), [
      "hsync: interrupted, stopping (partial files are kept)",
    ], text);
    const summary =
      /^hsync: interrupted: 0 files, ([\d.]+) MiB in .*, ([\d.]+) MiB kept for resume$/
        .exec(last[2]);
    assert.ok(summary, text);
    assert.ok(Number(summary[2]) >= 1, text);
    assert.equal(last[3], "EXIT=130", text);
    assert.equal(last.length, 4, text);
    assert.ok(!text.includes("["), `nothing of the bar is left: ${text}`);
    const part = await Deno.stat(`${out}.hsync-part`);
    assert.ok(part.isFile, "the part file is kept for resume");
  },
});

Deno.test({
  name:
    "a slow single-file push in a 60-column terminal redraws one row with an ETA and ends with the summary",
  ignore: !TMUX,
  async fn() {
    await using dir = await tempDir();
    const incoming = join(dir.path, "incoming");
    await Deno.mkdir(incoming);
    const clientDir = join(dir.path, "client-dir");
    const keygen = await runClient(["keygen"], { HSYNC_DIR: clientDir });
    assert.equal(keygen.code, 0, keygen.stderr);
    const keys = join(dir.path, "authorized_keys");
    await Deno.writeTextFile(keys, keygen.stdout);
    const local = join(dir.path, "up.bin");
    await Deno.writeFile(local, noise(6 * MiB));
    // The link's port is a name the signatures are made for.
    const linkPort = freePort();
    await using server = await startServer({
      dir: dir.path,
      config:
        `[hsyncd]\nWritable_path = ${incoming}\nAuthorized_keys = ${keys}\nServer_name = 127.0.0.1:${linkPort}\n`,
    });
    await using link = startLink(server.port, 20, 32 * 1024, {
      port: linkPort,
    });
    const script = await scriptFor(dir.path, [
      local,
      `127.0.0.1:${link.port}:${incoming}/`,
    ]);
    await using pane = new Pane(dir.path, 60);
    pane.start(script);
    const { bars, last } = await watch(pane);
    assert.equal(last.at(-1), "EXIT=0", last.join("\n"));
    assert.match(last[1], /^hsync: 1 file, 6\.00 MiB in /, last.join("\n"));
    assert.ok(new Set(bars).size >= 2, `redraws seen: ${bars.join("\n")}`);
    assert.ok(
      bars.some((b) => /ETA \d+:\d\d/.test(b)),
      `an ETA: ${bars.join("\n")}`,
    );
  },
});
