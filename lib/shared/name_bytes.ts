/** How long paths and names may be, in UTF-8 bytes, and measuring a text against that. */

/** Longest path accepted, in UTF-8 bytes (Linux PATH_MAX). */
export const MAX_PATH_BYTES = 4096;
/** Longest single path component, in UTF-8 bytes (Linux NAME_MAX). */
export const MAX_NAME_BYTES = 255;

const encoder = new TextEncoder();

/** Whether `text` takes more than `max` bytes in UTF-8. */
export function utf8Longer(text: string, max: number): boolean {
  // A UTF-16 code unit is at most 3 UTF-8 bytes: most texts need no encoding to be measured.
  return text.length * 3 > max && encoder.encode(text).length > max;
}
