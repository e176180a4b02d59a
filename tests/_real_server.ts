/** Test fixture: the real hsyncd handler serving one directory on an ephemeral loopback port, with its own HSYNC_DIR. */
import defaults from "../hsync.ini" with { type: "text" };
import { loadConfig, serverSettings } from "../lib/shared/config.ts";
import { createHandler, type Handler } from "../lib/server/handler.ts";

/** A running server; disposing of it stops it and removes its HSYNC_DIR. */
export interface RealServer extends AsyncDisposable {
  baseUrl: string;
}

/** The real hsyncd handler serving `root` (Only_allowed_path), with the HSYNC_DIR made for it (the caller removes it). */
export async function realHandler(
  root: string,
): Promise<{ handler: Handler; hsyncDir: string }> {
  const hsyncDir = await Deno.makeTempDir({ prefix: "hsync-dir-" });
  const config = await loadConfig({ defaults, hsyncDir });
  const handler = await createHandler({
    settings: serverSettings(config, { Only_allowed_path: root }),
    hsyncDir,
    hostname: "test",
  });
  return { handler, hsyncDir };
}

/** {@linkcode realHandler} on an ephemeral loopback port; `onRequest` sees each request before the handler does. */
export async function realServer(
  root: string,
  onRequest?: (request: Request) => void,
): Promise<RealServer> {
  const { handler, hsyncDir } = await realHandler(root);
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request, info) => {
      onRequest?.(request);
      return handler(request, info);
    },
  );
  return {
    baseUrl: `http://127.0.0.1:${server.addr.port}`,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
      await Deno.remove(hsyncDir, { recursive: true });
    },
  };
}
