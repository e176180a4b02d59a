/** End-to-end: hsyncd routes by the request line, never by a Host header that smuggles a path. */
import assert from "node:assert/strict";
import { startServer, tempDir } from "./_programs.ts";

/** Sends one raw HTTP/1.1 request and returns everything the server answered. */
async function raw(port: number, text: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(text));
    let out = "";
    const buf = new Uint8Array(65536);
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      out += new TextDecoder().decode(buf.subarray(0, n));
    }
    return out;
  } finally {
    try {
      conn.close();
    } catch {
      // already closed by the server
    }
  }
}

Deno.test("a Host header holding a path does not route the request: GET /v1/health with Host 127.0.0.1/v1/file?path=... gets 400, not the file", async () => {
  await using tmp = await tempDir();
  const data = `${tmp.path}/data`;
  await Deno.mkdir(data);
  await Deno.writeTextFile(`${data}/private.txt`, "PRIVATE-BYTES");
  await using server = await startServer({
    dir: tmp.path,
    config: `[hsyncd]\nOnly_allowed_path = ${data}\n`,
  });
  const smuggled = `127.0.0.1/v1/file?path=${
    encodeURIComponent(`${data}/private.txt`)
  }#`;
  const answer = await raw(
    server.port,
    `GET /v1/health HTTP/1.1\r\nHost: ${smuggled}\r\nConnection: close\r\n\r\n`,
  );
  assert.ok(!answer.includes("PRIVATE-BYTES"), answer);
  assert.match(answer, /^HTTP\/1\.1 400 /);
  assert.match(answer, /"error":"bad_request"/);
  // A plain Host is served as always.
  const health = await raw(
    server.port,
    `GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\nConnection: close\r\n\r\n`,
  );
  assert.match(health, /^HTTP\/1\.1 200 /);
  assert.match(health, /"name":"hsyncd"/);
});
