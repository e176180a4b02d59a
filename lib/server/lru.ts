/** A bounded map that forgets what was used least recently (the hash endpoint's results). */

/** A small least-recently-used map. */
export class Lru<V> {
  #max: number;
  #map = new Map<string, V>();

  constructor(max: number) {
    this.#max = Math.max(1, max);
  }

  /** The value of `key`, now the most recently used; undefined when absent. */
  get(key: string): V | undefined {
    const value = this.#map.get(key);
    if (value !== undefined) {
      this.#map.delete(key);
      this.#map.set(key, value);
    }
    return value;
  }

  /** Stores `value` under `key`, dropping the least recently used entry beyond the size. */
  set(key: string, value: V): void {
    this.#map.delete(key);
    this.#map.set(key, value);
    if (this.#map.size > this.#max) {
      this.#map.delete(this.#map.keys().next().value as string);
    }
  }
}
