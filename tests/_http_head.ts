/** Raw HTTP/1.1 bytes for tests that speak it over a bare connection. */

/** Where the blank line ending a message's head begins (`\r\n\r\n`), or -1. */
export function indexOfBlankLine(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (
      bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 &&
      bytes[i + 3] === 10
    ) return i;
  }
  return -1;
}
