/** The round trips a server's answers tell (lib/client/round_trips.ts). */
import assert from "node:assert/strict";
import { RoundTrips } from "../lib/client/round_trips.ts";

Deno.test("a first answer's wait counts half of a round trip (it waited for its connection too) until a later one tells it whole", () => {
  const trips = new RoundTrips();
  assert.equal(trips.opening, true);
  assert.equal(trips.pathMs, undefined);
  // Two requests sent before any answer came: 20 and 24 ms.
  trips.answered(true, 24);
  trips.answered(true, 20);
  assert.equal(trips.opening, false);
  assert.equal(trips.shortestMs, 20);
  assert.equal(trips.pathMs, 10);
  // A request on an open connection: the round trip itself.
  trips.answered(false, 11);
  assert.equal(trips.shortestMs, 11);
  assert.equal(trips.pathMs, 11);
  trips.answered(false, 9);
  assert.equal(trips.pathMs, 9);
});

Deno.test("a later wait held by the client's own work does not make a near server far: the first answers bound the round trip", () => {
  const trips = new RoundTrips();
  trips.answered(true, 3);
  assert.equal(trips.pathMs, 1.5);
  trips.answered(false, 25);
  assert.equal(trips.pathMs, 3);
});

Deno.test("an answer to a request with a body tells no round trip, but is an answer: later requests are no longer the first", async () => {
  const trips = new RoundTrips();
  let first = false;
  trips.first.then(() => first = true);
  trips.answered(true);
  await Promise.resolve();
  assert.equal(first, true);
  assert.equal(trips.opening, false);
  assert.equal(trips.shortestMs, undefined);
  trips.answered(false, 3);
  assert.equal(trips.pathMs, 3);
});
