/** Tests of reading one PUT's body (lib/client/put_body.ts): exact bytes, and a file that is not the one planned refused. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { readSpan } from "../lib/client/put_body.ts";
import { LocalChanged, type SendJob } from "../lib/client/push_context.ts";
import { fileIdOf } from "../lib/shared/checked_open.ts";
import { tempDir } from "./_programs.ts";

/** The job of the file at `path` as it is now. */
function jobOf(path: string): SendJob {
  const info = Deno.lstatSync(path);
  return {
    label: "f.bin",
    local: path,
    remote: "/in/f.bin",
    root: "/in",
    under: "f.bin",
    size: info.size,
    mtime: 0,
    mode: 0o644,
    changedMs: 0,
    id: fileIdOf(info),
  };
}

Deno.test("readSpan reads exactly the span, and refuses a file replaced, a link or a FIFO at the name, or one that shrank", async () => {
  await using dir = await tempDir();
  const path = join(dir.path, "f.bin");
  const data = new Uint8Array(100_000).map((_, i) => (i * 7) & 255);
  await Deno.writeFile(path, data);
  const job = jobOf(path);
  const got = await readSpan(
    job,
    { start: 1000, end: 61_000 },
    new Uint8Array(60_000),
  );
  assert.deepEqual(got, data.subarray(1000, 61_000));

  const refused = (pattern: RegExp) => (error: unknown) =>
    error instanceof LocalChanged && pattern.test(error.message);
  // Another file renamed over the name: another inode.
  await Deno.writeFile(join(dir.path, "other"), data);
  await Deno.rename(join(dir.path, "other"), path);
  await assert.rejects(
    () => readSpan(job, { start: 0, end: 10 }, new Uint8Array(10)),
    refused(/it was replaced while hsync used it$/),
  );
  // A link at the name, to the very file planned: never followed.
  const real = join(dir.path, "real.bin");
  await Deno.rename(path, real);
  await Deno.symlink(real, path);
  const linked = { ...jobOf(real), local: path };
  await assert.rejects(
    () => readSpan(linked, { start: 0, end: 10 }, new Uint8Array(10)),
    refused(/^Cannot read /),
  );
  // A FIFO: refused at once, not waited on.
  await Deno.remove(path);
  const mkfifo = new Deno.Command("mkfifo", { args: [path] });
  if ((await mkfifo.output()).success) {
    await assert.rejects(
      () => readSpan(job, { start: 0, end: 10 }, new Uint8Array(10)),
      refused(/^Cannot read /),
    );
    await Deno.remove(path);
  }
  // Shorter than the span.
  await Deno.writeFile(path, data.subarray(0, 50));
  await assert.rejects(
    () => readSpan(jobOf(path), { start: 0, end: 100 }, new Uint8Array(100)),
    refused(/shrank while it was sent$/),
  );
});
