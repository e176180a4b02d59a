/**
 * A loopback TCP relay that behaves like a long network path: every byte
 * arrives `delayMs` after it was sent, and each direction of a connection
 * has at most `windowBytes` unacknowledged (a byte's share of the window comes
 * back one round trip after it was sent, as TCP's acknowledgements would).
 * One connection then moves at most `windowBytes` per round trip, which is
 * what limits a single TCP stream over a real path with latency.
 *
 * For benchmarks only: it models delay and window, not loss, reordering or a
 * shared bottleneck.
 */
export interface Link extends AsyncDisposable {
  port: number;
  close(): Promise<void>;
}

export function startLink(
  upstreamPort: number,
  delayMs: number,
  windowBytes: number,
  /** Where the relay listens (default: any free port). */
  listenPort = 0,
): Link {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: listenPort });
  const port = (listener.addr as Deno.NetAddr).port;
  const open = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  let closed = false;

  const closeQuietly = (c: Deno.Conn) => {
    open.delete(c);
    try {
      c.close();
    } catch {
      // already closed
    }
  };

  async function pump(from: Deno.Conn, to: Deno.Conn): Promise<void> {
    const queue: Array<{ at: number; data: Uint8Array }> = [];
    let inFlight = 0;
    let wakeReader: (() => void) | undefined;
    let wakeWriter: (() => void) | undefined;
    let ended = false;
    // The writing side went away: the reader must not wait for acknowledgements that never come.
    let gone = false;
    const reader = (async () => {
      try {
        while (true) {
          while (inFlight >= windowBytes && !gone) {
            await new Promise<void>((r) => wakeReader = r);
          }
          if (gone) break;
          const buf = new Uint8Array(Math.min(64 * 1024, windowBytes));
          const n = await from.read(buf);
          if (n === null) break;
          inFlight += n;
          queue.push({
            at: performance.now() + delayMs,
            data: buf.subarray(0, n),
          });
          wakeWriter?.();
        }
      } catch {
        // a side went away
      }
      ended = true;
      wakeWriter?.();
    })();
    const writer = (async () => {
      try {
        while (true) {
          if (queue.length === 0) {
            if (ended) break;
            await new Promise<void>((r) => wakeWriter = r);
            continue;
          }
          const head = queue.shift()!;
          const wait = head.at - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          let off = 0;
          while (off < head.data.length) {
            off += await to.write(head.data.subarray(off));
          }
          // The acknowledgement takes the way back.
          setTimeout(() => {
            inFlight -= head.data.length;
            wakeReader?.();
          }, delayMs);
        }
      } catch {
        // a side went away
      }
      gone = true;
      wakeReader?.();
    })();
    await Promise.all([reader, writer]);
    closeQuietly(from);
    closeQuietly(to);
  }

  const acceptLoop = (async () => {
    for await (const client of listener) {
      if (closed) {
        client.close();
        break;
      }
      open.add(client);
      const task = (async () => {
        let server: Deno.Conn;
        try {
          server = await Deno.connect({
            hostname: "127.0.0.1",
            port: upstreamPort,
          });
        } catch {
          closeQuietly(client);
          return;
        }
        open.add(server);
        await Promise.all([pump(client, server), pump(server, client)]);
      })();
      tasks.add(task);
      task.finally(() => tasks.delete(task));
    }
  })().catch(() => {});

  async function close(): Promise<void> {
    if (closed) return;
    closed = true;
    try {
      listener.close();
    } catch {
      // already closed
    }
    for (const c of [...open]) closeQuietly(c);
    await acceptLoop;
    await Promise.allSettled([...tasks]);
  }

  return { port, close, [Symbol.asyncDispose]: close };
}
