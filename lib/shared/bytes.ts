/** Byte arrays joined into one: the one copy of a body read in pieces, a frame, an SSH message. */

/** `parts` one after the other in one new array (an array of parts: a body may come in very many). */
export function joinBytes(
  parts: readonly Uint8Array[],
): Uint8Array<ArrayBuffer> {
  let size = 0;
  for (const p of parts) size += p.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The parts given one after the other (an SSH message built field by field). */
export function concatBytes(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  return joinBytes(parts);
}
