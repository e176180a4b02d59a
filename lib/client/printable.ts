/** Text from a server (paths, messages) made safe to print on a terminal. */

// C0 and C1 controls, DEL, and the Unicode bidirectional overrides and
// isolates that can reorder what a terminal shows.
// deno-lint-ignore no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/**
 * Replaces every control character (escape sequences, newlines, carriage
 * returns, bidi overrides) with a visible `\xNN` or `\uNNNN` escape, so a
 * hostile server cannot move the cursor, recolour, retitle the terminal or
 * forge extra output lines through a file name or an error message.
 */
export function printable(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff
      ? `\\x${code.toString(16).padStart(2, "0")}`
      : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}
