/**
 * A loopback TCP relay that behaves like a long network path: every byte
 * arrives `delayMs` after it was sent, and each direction of a connection
 * has at most `windowBytes` unacknowledged (a byte's share of the window comes
 * back one round trip after it was sent, as TCP's acknowledgements would).
 * One connection then moves at most `windowBytes` per round trip, which is
 * what limits a single TCP stream over a real path with latency. A new
 * connection also pays TCP's handshake: nothing crosses it, either way,
 * before one round trip after it was accepted, so a tool that opens many
 * connections pays for them as it would on the real path.
 *
 * For benchmarks only: it models delay, window and handshake, not loss,
 * reordering or a shared bottleneck. Run it in its own process
 * (`bench/_link_main.ts`) when something is timed beside it, so its copying
 * does not share an event loop with the measurement.
 */
import { joinBytes } from "../lib/shared/bytes.ts";

export interface Link extends AsyncDisposable {
  port: number;
  close(): Promise<void>;
}

/** How the relay batches its work; the defaults are what bench.ts uses. */
export interface LinkOptions {
  /** Charge a new connection one round trip before any byte crosses it (default true). */
  handshake?: boolean;
  /** Port to listen on (default: an ephemeral one). */
  port?: number;
}

/** Largest read; the socket gives what it has, so at low rates reads stay small. */
const READ_BYTES = 1024 * 1024;
/**
 * Bytes read within this many milliseconds of a queued batch's own read go
 * out with it (at most this much early), so one timer and one write serve
 * them all: at 200 MB/s a relay with a timer per read spends its core on
 * timers.
 */
const BATCH_MS = 1;

/** Starts a relay on 127.0.0.1 to 127.0.0.1:`upstreamPort`. */
export function startLink(
  upstreamPort: number,
  delayMs: number,
  windowBytes: number,
  options: LinkOptions = {},
): Link {
  const handshakeMs = options.handshake === false ? 0 : 2 * delayMs;
  const listener = Deno.listen({
    hostname: "127.0.0.1",
    port: options.port ?? 0,
  });
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

  /** Copies `from` to `to`, each batch delayed; `notBefore` is when the handshake is over. */
  async function pump(
    from: Deno.Conn,
    to: Deno.Conn,
    notBefore: number,
  ): Promise<void> {
    const queue: Array<{ at: number; readAt: number; pieces: Uint8Array[] }> =
      [];
    let inFlight = 0;
    let wakeReader: (() => void) | undefined;
    let wakeWriter: (() => void) | undefined;
    let ended = false;
    // Acknowledgements due, oldest first, served by one timer at a time.
    const acks: Array<{ at: number; bytes: number }> = [];
    let ackTimer: ReturnType<typeof setTimeout> | undefined;
    const releaseAcks = () => {
      ackTimer = undefined;
      const now = performance.now() + 0.5;
      while (acks.length && acks[0].at <= now) inFlight -= acks.shift()!.bytes;
      wakeReader?.();
      if (acks.length) {
        ackTimer = setTimeout(releaseAcks, acks[0].at - performance.now());
      }
    };
    const scratch = new Uint8Array(Math.min(READ_BYTES, windowBytes));
    // The writing side went away: the reader must not wait for acknowledgements that never come.
    let gone = false;
    const reader = (async () => {
      try {
        while (true) {
          while (inFlight >= windowBytes && !gone) {
            await new Promise<void>((r) => wakeReader = r);
          }
          if (gone) break;
          const room = Math.min(scratch.length, windowBytes - inFlight);
          const n = await from.read(scratch.subarray(0, room));
          if (n === null) break;
          inFlight += n;
          const now = performance.now();
          const data = scratch.slice(0, n);
          const last = queue[queue.length - 1];
          if (last && now - last.readAt < BATCH_MS) last.pieces.push(data);
          else {
            queue.push({
              at: Math.max(now, notBefore) + delayMs,
              readAt: now,
              pieces: [data],
            });
          }
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
          const head = queue[0];
          const wait = head.at - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          queue.shift();
          const data = head.pieces.length === 1
            ? head.pieces[0]
            : joinBytes(head.pieces);
          let off = 0;
          while (off < data.length) off += await to.write(data.subarray(off));
          // The acknowledgement takes the way back.
          acks.push({ at: performance.now() + delayMs, bytes: data.length });
          if (ackTimer === undefined) {
            ackTimer = setTimeout(releaseAcks, delayMs);
          }
        }
      } catch {
        // a side went away
      }
      if (ackTimer !== undefined) clearTimeout(ackTimer);
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
      const notBefore = performance.now() + handshakeMs;
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
        await Promise.all([
          pump(client, server, notBefore),
          pump(server, client, notBefore),
        ]);
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
