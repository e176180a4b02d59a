/** Test fixture: a loopback TCP proxy that cuts, stalls or truncates server responses on command. */

/** What to do to the response bytes of one connection. */
export type Fault =
  | { kind: "none" }
  /** Close both sides after this many response bytes. */
  | { kind: "cut"; afterBytes: number }
  /** Stop forwarding (but keep the connection open) after this many response bytes. */
  | { kind: "stall"; afterBytes: number };

/** A running proxy. */
export interface FaultProxy extends AsyncDisposable {
  port: number;
  url: string;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Response bytes forwarded so far, over all connections. */
  readonly bytesForwarded: number;
  /** Request bytes (client to server) forwarded so far, over all connections. */
  readonly bytesUpstream: number;
  close(): Promise<void>;
}

/**
 * Starts a proxy to `127.0.0.1:upstreamPort`. `decide(n, request)` is asked
 * for the fault of the n-th connection (0-based) once its first bytes came
 * (`request`: their first line, as `GET /v1/list?...`), so a test can break
 * the first connections, or the one of a given request, and let later ones
 * (the retries) through.
 */
export function startFaultProxy(
  upstreamPort: number,
  decide: (connection: number, request: string) => Fault,
): FaultProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const open = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  let connections = 0;
  let bytesForwarded = 0;
  let bytesUpstream = 0;
  let closed = false;

  function closeQuietly(c: Deno.Conn) {
    open.delete(c);
    try {
      c.close();
    } catch {
      // already closed
    }
  }

  async function pump(
    from: Deno.Conn,
    to: Deno.Conn,
    fault: Fault | undefined,
  ): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    let sent = 0;
    try {
      while (true) {
        const n = await from.read(buf);
        if (n === null) break;
        let chunk = buf.subarray(0, n);
        if (fault && fault.kind !== "none") {
          const room = fault.afterBytes - sent;
          if (room <= 0) {
            if (fault.kind === "stall") continue; // swallow everything
            break;
          }
          if (chunk.length > room) chunk = chunk.subarray(0, room);
        }
        let off = 0;
        while (off < chunk.length) off += await to.write(chunk.subarray(off));
        sent += chunk.length;
        if (fault) bytesForwarded += chunk.length;
        else bytesUpstream += chunk.length;
        if (
          fault?.kind === "cut" && sent >= fault.afterBytes
        ) break;
      }
    } catch {
      // a side went away
    }
    if (fault?.kind === "stall") return; // leave the client hanging
    closeQuietly(from);
    closeQuietly(to);
  }

  const accepting = (async () => {
    for await (const client of listener) {
      if (closed) {
        client.close();
        break;
      }
      const index = connections++;
      open.add(client);
      const task = (async () => {
        // The first request's bytes decide the fault; they go on first.
        const first = new Uint8Array(64 * 1024);
        let got: number | null = null;
        try {
          got = await client.read(first);
        } catch {
          // went away
        }
        if (got === null) {
          closeQuietly(client);
          return;
        }
        const line = new TextDecoder().decode(first.subarray(0, got))
          .split("\r\n")[0];
        const fault = decide(index, line);
        let upstream: Deno.Conn;
        try {
          upstream = await Deno.connect({
            hostname: "127.0.0.1",
            port: upstreamPort,
          });
          let off = 0;
          while (off < got) {
            off += await upstream.write(first.subarray(off, got));
          }
          bytesUpstream += got;
        } catch {
          closeQuietly(client);
          return;
        }
        open.add(upstream);
        await Promise.all([
          pump(client, upstream, undefined),
          pump(upstream, client, fault),
        ]);
      })();
      tasks.add(task);
      task.finally(() => tasks.delete(task));
    }
  })().catch(() => {});

  const close = async () => {
    if (closed) return;
    closed = true;
    listener.close();
    for (const c of [...open]) closeQuietly(c);
    await accepting;
    await Promise.allSettled([...tasks]);
  };
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    get connections() {
      return connections;
    },
    get bytesForwarded() {
      return bytesForwarded;
    },
    get bytesUpstream() {
      return bytesUpstream;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
