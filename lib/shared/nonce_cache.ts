/** The nonces a server has seen per key, for replay protection of signed requests (see `createVerifier` in auth.ts). */

/** A nonce taken for a request whose signature is being checked or was good. */
interface NonceEntry {
  timestamp: number;
  expiry: number;
  confirmed: boolean;
}

/**
 * The nonces seen, per key, each until its timestamp has left the accepted
 * window. A nonce is taken before its signature is checked (so concurrent
 * copies of one request cannot all pass) and given back when the signature
 * fails. Bounds: per key and in all. A key over its bound, or the key with
 * most nonces when all are over the total, loses its oldest checked nonce,
 * and its requests signed at or before that nonce's time are refused from
 * then on (its floor): a replay of a forgotten nonce stays refused, and no
 * key can lock out another. Nonces still being checked are never dropped,
 * so a forged request cannot raise a key's floor.
 */
export class NonceCache {
  readonly #byKey = new Map<string, Map<string, NonceEntry>>();
  readonly #floor = new Map<string, number>();
  #size = 0;
  readonly #max: number;
  readonly #maxPerKey: number;

  constructor(max: number, maxPerKey: number) {
    this.#max = max;
    this.#maxPerKey = maxPerKey;
  }

  /** Takes `nonce` for `key`; the reason when it cannot be taken. */
  take(
    key: string,
    nonce: string,
    timestamp: number,
    expiry: number,
    now: number,
  ): string | undefined {
    if (timestamp <= (this.#floor.get(key) ?? -Infinity)) {
      return "timestamp at or before the oldest nonce this key has had dropped";
    }
    let nonces = this.#byKey.get(key);
    if (nonces === undefined) this.#byKey.set(key, nonces = new Map());
    this.#expire(nonces, now);
    if (nonces.has(nonce)) return "replayed nonce (already used)";
    if (nonces.size >= this.#maxPerKey && !this.#dropOldest(key, nonces)) {
      return "every nonce of this key is still being checked";
    }
    if (this.#size >= this.#max) {
      for (const map of this.#byKey.values()) this.#expire(map, now);
      const [biggest, map] = [...this.#byKey].reduce((a, b) =>
        b[1].size > a[1].size ? b : a
      );
      if (this.#size >= this.#max && !this.#dropOldest(biggest, map)) {
        return "nonce cache full of requests being checked";
      }
    }
    nonces.set(nonce, { timestamp, expiry, confirmed: false });
    this.#size++;
    return undefined;
  }

  /** The signature was good: the nonce stays until it expires. */
  confirm(key: string, nonce: string): void {
    const entry = this.#byKey.get(key)?.get(nonce);
    if (entry !== undefined) entry.confirmed = true;
  }

  /** The signature failed: the nonce is free again. */
  release(key: string, nonce: string): void {
    const nonces = this.#byKey.get(key);
    if (nonces?.get(nonce)?.confirmed === false) {
      nonces.delete(nonce);
      this.#size--;
    }
  }

  // Insertion order is arrival order, close to expiry order: a scan from the front.
  #expire(nonces: Map<string, NonceEntry>, now: number): void {
    for (const [nonce, entry] of nonces) {
      if (entry.expiry > now) break;
      nonces.delete(nonce);
      this.#size--;
    }
  }

  #dropOldest(key: string, nonces: Map<string, NonceEntry>): boolean {
    for (const [nonce, entry] of nonces) {
      if (!entry.confirmed) continue;
      nonces.delete(nonce);
      this.#size--;
      this.#floor.set(
        key,
        Math.max(this.#floor.get(key) ?? -Infinity, entry.timestamp),
      );
      return true;
    }
    return false;
  }
}
