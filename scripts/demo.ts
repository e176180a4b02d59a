// deno-lint-ignore-file no-console
/** `deno task demo`: hsyncd on a free loopback port over generated sample data, a pull with progress, verification, then cleanup. */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";
import { makeSampleTree } from "./sample_data.ts";
import { RUNTIME_FLAGS } from "./compile.ts";

const root = fromFileUrl(new URL("..", import.meta.url));

async function hashTree(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  async function walk(d: string, rel: string) {
    for await (const e of Deno.readDir(d)) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory) {
        out.set(r + "/", "dir");
        await walk(join(d, e.name), r);
      } else {
        const h = createHash("sha256");
        for await (const chunk of (await Deno.open(join(d, e.name))).readable) {
          h.update(chunk);
        }
        out.set(r, h.digest("hex"));
      }
    }
  }
  await walk(dir, "");
  return out;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

const work = await Deno.makeTempDir({ prefix: "hsync-demo-" });
let server: Deno.ChildProcess | undefined;
let code = 0;
try {
  const data = join(work, "data");
  const out = join(work, "copy");
  console.log(`demo: generating sample data in ${data}`);
  const tree = await makeSampleTree(data);
  console.log(
    `demo: ${tree.files} files, ${tree.dirs} directories, ${
      (tree.bytes / 1e6).toFixed(1)
    } MB`,
  );
  const hsyncDir = join(work, "hsync-dir");
  await Deno.mkdir(hsyncDir);
  const ini = join(work, "demo.ini");
  await Deno.writeTextFile(ini, `[hsyncd]\nOnly_allowed_path = ${data}\n`);
  const port = freePort();
  const env = { HSYNC_DIR: hsyncDir };

  server = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-q",
      "-P=hsyncd",
      ...RUNTIME_FLAGS.hsyncd,
      join(root, "main_server.ts"),
      "-host",
      "127.0.0.1",
      "-p",
      String(port),
      "-c",
      ini,
      "-l",
      join(work, "hsyncd.log"),
    ],
    cwd: root,
    env,
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const deadline = Date.now() + 20_000;
  while (true) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/v1/health`);
      const health = await r.json();
      console.log(
        `demo: ${health.name} ${health.version} answers on 127.0.0.1:${port}`,
      );
      break;
    } catch {
      if (Date.now() > deadline) {
        throw new Error("hsyncd did not start within 20 s");
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  const pull = (label: string) => {
    console.log(
      `demo: ${label}: hsync -i ${data} -o ${out} -host 127.0.0.1 -p ${port}`,
    );
    return new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-q",
        "-P=hsync",
        ...RUNTIME_FLAGS.hsync,
        join(root, "main_client.ts"),
        "-i",
        data,
        "-o",
        out,
        "-host",
        "127.0.0.1",
        "-p",
        String(port),
      ],
      cwd: root,
      env,
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    }).output();
  };
  const first = await pull("first pull");
  if (first.code !== 0) throw new Error(`hsync exited with ${first.code}`);

  const [want, got] = await Promise.all([hashTree(data), hashTree(out)]);
  const bad = [...want].filter(([p, h]) => got.get(p) !== h).map(([p]) => p);
  const extra = [...got.keys()].filter((p) => !want.has(p));
  if (bad.length > 0 || extra.length > 0) {
    throw new Error(
      `verification failed: differing ${bad.slice(0, 5).join(", ")} extra ${
        extra.slice(0, 5).join(", ")
      }`,
    );
  }
  console.log(`demo: verified: ${want.size} entries byte-identical (SHA-256)`);

  const second = await pull("second pull (identical files are skipped)");
  if (second.code !== 0) throw new Error(`hsync exited with ${second.code}`);
} catch (error) {
  console.error(`demo: ${error instanceof Error ? error.message : error}`);
  code = 1;
} finally {
  if (server) {
    server.kill("SIGTERM");
    const status = await server.status;
    console.log(`demo: hsyncd stopped (exit code ${status.code})`);
  }
  await Deno.remove(work, { recursive: true });
}
Deno.exit(code);
