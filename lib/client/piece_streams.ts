/**
 * The streams of one big file fetched in pieces: as many at once as the
 * run's governor says pay (one at first, more while more raise the
 * throughput; far away a decided count at once), each taking the next piece
 * from the front of what is left, sized by the governor, until nothing is.
 * Streams are added as the target grows and leave after their piece when it
 * shrinks.
 */
import type { ByteRange } from "../shared/byte_range.ts";
import { discard, type EarlyBytes } from "./early_range.ts";
import { PieceQueue } from "./piece_queue.ts";
import type { Exchange } from "./remote.ts";
import type { StreamGovernor } from "./stream_governor.ts";

/** A piece being fetched: its next byte to arrive (`pos`, moved as bytes reach the disk) and its end. */
export interface PieceCursor {
  pos: number;
  end: number;
}

/** What {@linkcode fetchInPieces} fetches and with what. */
export interface PieceStreams {
  /** The file's bytes to fetch (sorted, disjoint). */
  gaps: ByteRange[];
  governor: StreamGovernor;
  /** Streams at most (`Max_part_num`). */
  most: number;
  /** The file's first bytes, already asked for: the first stream's first piece. */
  early?: EarlyBytes;
  signal: AbortSignal;
  /** Told a stream's failure (the caller stops the others through `signal`). */
  fail: (error: unknown) => void;
  /** Fetches the piece of `cursor` (its answer `exchange` when given), moving `cursor.pos` as bytes arrive. */
  fetch: (cursor: PieceCursor, exchange?: Exchange) => Promise<void>;
}

/** Fetches `o.gaps` in pieces by the streams the governor asks for; settles once every stream ended. */
export async function fetchInPieces(o: PieceStreams): Promise<void> {
  const { governor, signal } = o;
  const left = new PieceQueue(o.gaps);
  // The early bytes are the first piece, for the first stream.
  let opening = o.early === undefined
    ? undefined
    : { piece: left.take(o.early.end)!, exchange: o.early.exchange };
  const running = new Set<Promise<void>>();
  // What the streams asked for and have not received: a piece is a share
  // of these and what is left, so streams starting together get equal ones.
  const held = new Set<PieceCursor>();
  const fetch = async (piece: ByteRange, exchange?: Exchange) => {
    const cursor = { pos: piece.start, end: piece.end };
    held.add(cursor);
    try {
      await o.fetch(cursor, exchange);
    } finally {
      held.delete(cursor);
    }
  };
  const wanted = () => Math.min(o.most, governor.target);
  let active = 0;
  const stream = async (
    given?: { piece: ByteRange; exchange: Exchange },
  ) => {
    // Counted out at once when it leaves: two streams ending together
    // must not both see the other one still there and both leave.
    let counted = true;
    const leave = () => {
      if (counted) active--;
      counted = false;
    };
    try {
      if (given !== undefined) await fetch(given.piece, given.exchange);
      while (!signal.aborted && active <= wanted()) {
        let holding = 0;
        for (const cursor of held) holding += cursor.end - cursor.pos;
        const piece = left.take(
          governor.pieceBytes(left.remaining, active, holding),
        );
        if (piece === undefined) break;
        await fetch(piece);
      }
    } finally {
      leave();
    }
  };
  const spawn = () => {
    while (
      !signal.aborted && active < wanted() &&
      (opening !== undefined || left.remaining > 0)
    ) {
      active++;
      const given = opening;
      opening = undefined;
      const task: Promise<void> = stream(given).catch(o.fail).finally(() => {
        running.delete(task);
      });
      running.add(task);
    }
  };
  const stop = governor.onChange(spawn);
  try {
    spawn();
    while (running.size > 0) {
      await Promise.all([...running]);
      // Every stream left (the target shrank as they ended): go on.
      if (running.size === 0) spawn();
    }
  } finally {
    stop();
    // Aborted before a stream took them.
    discard(opening?.exchange);
  }
}
