/** A dictionary-mode object (no prototype): adding a key never creates a hidden class. Always empty between calls. */
const holder: Record<string, true> = Object.create(null) as Record<string, true>;

/**
 * The shared copy of a string: equal strings interned here are stored once. A string stored as a
 * property key is internalized by V8 (its string table holds one flat copy per distinct string and
 * is weak, so nothing here outlives its users); `Object.keys` hands back that copy. Used for
 * strings many objects repeat (label-set keys of pods sharing an identity, selector keys, rule
 * paths, unit uids), which concatenation or JSON.stringify would otherwise leave as trees of pieces.
 */
export function intern(s: string): string {
  holder[s] = true;
  const shared = Object.keys(holder)[0] ?? s;
  delete holder[s];
  return shared;
}

/**
 * `s` as one flat string. Strings built by concatenation or JSON.stringify are trees of pieces
 * (32 bytes a node) until something reads them as a whole; `trim` does, and the tree collapses.
 * For long-lived strings that are mostly unique (no point in interning them).
 */
export function flat(s: string): string {
  const t = s.trim();
  return t.length === s.length ? t : s;
}
