/**
 * A long synchronous loop made fair: it lets the event loop run once it has
 * gone a few milliseconds without, so the requests and answers around it
 * are not held until it ends.
 *
 * A turn must make the runtime poll its sockets, and few things do. An
 * asynchronous op that settles at once does not (hsyncd let a new
 * connection in only after 17 `lstat`s), nor does a message through a
 * `MessageChannel`; a timer does, but Deno's `setTimeout(0)` waits about
 * 2 ms. A byte written into one end of a private Unix socket pair can only
 * be read at the other once the runtime has polled its sockets: 10-17 us a
 * turn here. The pair is made at the first turn (a loop that never runs
 * long makes none) in a directory of its own (mode 0700, removed at once)
 * and closed with the breather; where no Unix socket can be made (the
 * permissions, the system), a timer turns the loop instead.
 */
import { sleep } from "./sleep.ts";

/**
 * Pauses a loop for one turn of the event loop once it has worked `everyMs`
 * since the last pause. The loop works from its start or its last turn; a
 * loop that waits for others between its steps (a stream waiting for its
 * reader) says so with {@linkcode Breather.rest}, and that wait does not
 * count: serving 64 clients at once, listings that counted it turned at
 * every step, each turn a wait behind the other clients' work, and held
 * their slots for it.
 */
export class Breather implements Disposable {
  readonly #everyMs: number;
  /** Milliseconds worked since the last turn, up to {@linkcode #since}. */
  #worked = 0;
  /** When the loop's current stretch of work began; undefined while it rests. */
  #since: number | undefined = performance.now();
  #pair?: Promise<SocketPair | undefined>;
  /** The turn in progress: a second caller waits for it (it is a turn too). */
  #turning?: Promise<void>;

  constructor(everyMs: number) {
    this.#everyMs = everyMs;
  }

  /** Resolves at once, or after one turn of the event loop when the loop has worked `everyMs` without. */
  async breathe(): Promise<void> {
    const now = performance.now();
    this.#worked += now - (this.#since ?? now);
    this.#since = now;
    if (this.#worked < this.#everyMs) return;
    await this.turn();
    this.#worked = 0;
    this.#since = performance.now();
  }

  /** The loop waits for others until its next {@linkcode breathe}: that time is not work. */
  rest(): void {
    if (this.#since !== undefined) {
      this.#worked += performance.now() - this.#since;
    }
    this.#since = undefined;
  }

  /** One turn of the event loop, now. */
  turn(): Promise<void> {
    return this.#turning ??= this.#turn().finally(() =>
      this.#turning = undefined
    );
  }

  async #turn(): Promise<void> {
    const pair = await (this.#pair ??= openPair());
    if (pair !== undefined && await pair.turn()) return;
    await sleep(0);
  }

  /** Closes the socket pair (a later turn makes another: close again after it). */
  close(): void {
    this.#pair?.then((pair) => pair?.close());
    this.#pair = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** The two ends of a connected Unix socket, private to this process. */
class SocketPair {
  readonly #writer: Deno.Conn;
  readonly #reader: Deno.Conn;
  readonly #one = new Uint8Array(1);
  readonly #got = new Uint8Array(16);
  #broken = false;

  constructor(writer: Deno.Conn, reader: Deno.Conn) {
    this.#writer = writer;
    this.#reader = reader;
  }

  /** A byte through the pair: false when it could not go (closed meanwhile). */
  async turn(): Promise<boolean> {
    if (this.#broken) return false;
    try {
      await this.#writer.write(this.#one);
      return await this.#reader.read(this.#got) === 1;
    } catch {
      this.#broken = true;
      return false;
    }
  }

  close(): void {
    this.#broken = true;
    for (const conn of [this.#writer, this.#reader]) {
      try {
        conn.close();
      } catch {
        // Closed already.
      }
    }
  }
}

/** A connected pair, or undefined when one cannot be made here. */
async function openPair(): Promise<SocketPair | undefined> {
  let dir: string | undefined;
  try {
    dir = Deno.makeTempDirSync({ prefix: "hsync-turn-" });
    const path = `${dir}/s`;
    const listener = Deno.listen({ transport: "unix", path });
    try {
      const [writer, reader] = await Promise.all([
        Deno.connect({ transport: "unix", path }),
        listener.accept(),
      ]);
      return new SocketPair(writer, reader);
    } finally {
      listener.close();
    }
  } catch {
    return undefined;
  } finally {
    if (dir !== undefined) {
      try {
        Deno.removeSync(dir, { recursive: true });
      } catch {
        // Left in the temporary directory: harmless.
      }
    }
  }
}
