/** Byte counts as people write them: `1048576`, `64K`, `64MiB`, `1G` (binary multiples). */

const WHOLE = /^(\d+)\s*([kmgt]?)i?b?$/i;
const FRACTION = /^(\d+(?:\.\d+)?|\.\d+)\s*([kmgt]?)i?b?$/i;

/**
 * Parses a byte count with an optional K, M, G or T (powers of 1024) and an
 * optional `B`/`iB`; with `fraction`, `1.5M` too (rounded down). Undefined
 * when malformed or not a safe integer.
 */
export function parseBytes(
  text: string,
  options: { fraction?: boolean } = {},
): number | undefined {
  const m = (options.fraction ? FRACTION : WHOLE).exec(text.trim());
  if (m === null) return undefined;
  const mult = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[
    m[2].toLowerCase() as "" | "k" | "m" | "g" | "t"
  ];
  const n = Math.floor(Number(m[1]) * mult);
  return Number.isSafeInteger(n) ? n : undefined;
}
