/** The one rule for symbolic links in a copy: a link's text is safe when, read from where the link is, it stays inside the copy. */

/**
 * Whether `target`, the text of a link at `linkRel` (relative to the copy's
 * root, `/`-separated), names something inside that root when resolved
 * lexically from the link's directory: not empty, not absolute, no NUL,
 * and no `..` that climbs above the root. Other links inside the copy are
 * held to the same rule, so a chain of safe links stays inside too (the
 * rule of rsync's `--safe-links`).
 */
export function linkStaysInside(linkRel: string, target: string): boolean {
  if (target === "" || target.startsWith("/") || target.includes("\0")) {
    return false;
  }
  const at = linkRel.split("/").filter((c) => c !== "" && c !== ".");
  at.pop();
  for (const c of target.split("/")) {
    if (c === "" || c === ".") continue;
    if (c === "..") {
      if (at.length === 0) return false;
      at.pop();
    } else {
      at.push(c);
    }
  }
  return true;
}
