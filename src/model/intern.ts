/**
 * The shared copy of a string: equal strings interned here are stored once. A string used as a
 * property key is internalized by V8 (its string table holds one copy per distinct string and is
 * weak, so nothing here outlives its users); `Object.keys` hands back that copy. Used for strings
 * many objects repeat (label-set keys of pods sharing an identity, selector keys, rule paths).
 */
export function intern(s: string): string {
  const holder: Record<string, true> = { [s]: true };
  for (const k in holder) return k;
  return s;
}
