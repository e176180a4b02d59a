/** Tests of hsyncd's log: the access line, size rotation, and never writing through a name planted as a symlink or hard link. */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  appendLogLine,
  checkLogFileName,
  formatAccessLine,
  openServerLog,
} from "../lib/server/server_log.ts";
import { ConfigError } from "../lib/shared/errors.ts";

const VICTIM = "victim: must never change\n";

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "hsyncd_log_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function victimIn(dir: string): Promise<string> {
  const victim = join(dir, "victim.txt");
  await Deno.writeTextFile(victim, VICTIM);
  return victim;
}

Deno.test("formatAccessLine() writes one line per request with - for an unknown size", () => {
  assert.equal(
    formatAccessLine({
      time: new Date("2026-11-23T10:00:00.000Z"),
      remote: "127.0.0.1",
      method: "GET",
      url: "http://h:1/v1/file?path=%2Fa b",
      status: 206,
      bytes: null,
      ms: 11.6,
    }),
    "2026-11-23T10:00:00.000Z 127.0.0.1 GET /v1/file?path=%2Fa%20b 206 - 12ms",
  );
});

Deno.test("openServerLog() refuses a log file name that is a symlink or a hard link, and leaves the other file alone", async () => {
  await withTempDir(async (dir) => {
    const victim = await victimIn(dir);
    const log = join(dir, "hsyncd.log");
    const cases: Array<[string, () => Promise<void>, string]> = [
      ["a symlink", () => Deno.symlink(victim, log), "it is a symbolic link"],
      [
        "a dangling symlink",
        () => Deno.symlink(join(dir, "new.txt"), log),
        "it is a symbolic link",
      ],
      ["a hard link", () => Deno.link(victim, log), "it has 2 hard links"],
    ];
    for (const [why, plant, problem] of cases) {
      await plant();
      await assert.rejects(
        openServerLog({ file: log, maxBytes: 1 << 20, keep: 1 }),
        (error: Error) => {
          assert.ok(error instanceof ConfigError, why);
          assert.equal(
            error.message,
            `Cannot open log file "${log}": ${problem}`,
            why,
          );
          return true;
        },
      );
      assert.equal(await Deno.readTextFile(victim), VICTIM, why);
      await Deno.remove(log);
    }
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name),
      ["victim.txt"],
      "nothing created through the dangling symlink",
    );
  });
});

Deno.test("checkLogFileName() and appendLogLine() refuse a symlink at the log's name", async () => {
  await withTempDir(async (dir) => {
    const victim = await victimIn(dir);
    const log = join(dir, "hsyncd.log");
    await checkLogFileName(log); // absent is fine
    appendLogLine(log, "one\n");
    appendLogLine(log, "two\n");
    assert.equal(await Deno.readTextFile(log), "one\ntwo\n");
    assert.equal((Deno.lstatSync(log).mode ?? 0) & 0o022, 0);
    await checkLogFileName(log);

    await Deno.remove(log);
    await Deno.symlink(victim, log);
    await assert.rejects(
      checkLogFileName(log),
      new ConfigError(`Cannot open log file "${log}": it is a symbolic link`),
    );
    assert.throws(() => appendLogLine(log, "ERROR x\n"), /symbolic link/);
    assert.equal(await Deno.readTextFile(victim), VICTIM);
  });
});

Deno.test("openServerLog() appends, rotates at maxBytes keeping `keep` files, and keeps none with keep 0", async () => {
  await withTempDir(async (dir) => {
    const log = join(dir, "logs", "a.log");
    const first = await openServerLog({
      file: log,
      maxBytes: 1 << 20,
      keep: 2,
    });
    first.info("first");
    await first.close();
    const second = await openServerLog({ file: log, maxBytes: 200, keep: 2 });
    // Spaced out: lines logged while a write is under way go out together.
    for (let i = 0; i < 30; i++) {
      second.info(`line ${i}`);
      await new Promise((r) => setTimeout(r, 2));
    }
    await second.close();
    const texts = [log, `${log}.1`, `${log}.2`].map((p) =>
      Deno.readTextFileSync(p)
    );
    assert.throws(() => Deno.lstatSync(`${log}.3`), Deno.errors.NotFound);
    for (const text of texts) {
      assert.ok(text.length > 0 && text.length <= 200 + 50, text);
    }
    assert.match(texts[0], /INFO line 29\n$/);
    assert.match(
      texts[2] + texts[1] + texts[0],
      /INFO line 20\n.*INFO line 21/s,
    );

    const none = join(dir, "none.log");
    const third = await openServerLog({ file: none, maxBytes: 100, keep: 0 });
    for (let i = 0; i < 10; i++) {
      third.info(`line ${i}`);
      await new Promise((r) => setTimeout(r, 2));
    }
    await third.close();
    assert.match(Deno.readTextFileSync(none), /INFO line 9\n$/);
    assert.throws(() => Deno.lstatSync(`${none}.1`), Deno.errors.NotFound);
  });
});

Deno.test("a rotated log reopened at a name that is no regular file is refused, told once, and resumes when the name is free", async () => {
  await withTempDir(async (dir) => {
    const victim = await victimIn(dir);
    const log = join(dir, "a.log");
    const told: string[] = [];
    const server = await openServerLog({
      file: log,
      maxBytes: 64,
      keep: 0,
      flushIntervalMs: 10,
      onWriteError: (line) => told.push(line),
    });
    const flushed = () => new Promise((r) => setTimeout(r, 60));
    try {
      server.info("before");
      await flushed();
      // A non-empty directory at the name: rotation cannot remove it, and
      // the reopen finds no regular file.
      await Deno.remove(log);
      await Deno.mkdir(log);
      await Deno.writeTextFile(join(log, "x"), "");
      server.info("a line long enough to need a rotation of the log file");
      await flushed();
      server.info("refused");
      await flushed();
      await Deno.remove(log, { recursive: true });
      await Deno.symlink(victim, log);
      server.info("refused again");
      await flushed();
      assert.equal(await Deno.readTextFile(victim), VICTIM);
      assert.equal(told.length, 1, told.join("\n"));
      assert.match(told[0], new RegExp(`^Cannot write log file "${log}": `));

      await Deno.remove(log);
      server.info("after");
      await flushed();
      assert.match(await Deno.readTextFile(log), /INFO after\n$/);
      assert.equal((await Deno.lstat(log)).isFile, true);
    } finally {
      await server.close();
    }
  });
});
