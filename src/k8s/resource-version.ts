/**
 * True when an event at resourceVersion `a` is stale against `b`, the object's last: older, or
 * the same for an upsert. A delete at the same version counts: an informer's relist reports a
 * vanished object with the last version it saw. Versions that are not integers are not compared.
 */
export function stale(a: string | undefined, b: string | undefined, deleted: boolean): boolean {
  if (!isDecimalVersion(a) || !isDecimalVersion(b)) return false;
  const order = compareDecimal(a, b);
  return deleted ? order < 0 : order <= 0;
}

/** True when `rv` is a resourceVersion that can be compared: a decimal integer (the API server's are etcd revisions). */
export function isDecimalVersion(rv: string | undefined): rv is string {
  return rv !== undefined && /^\d+$/.test(rv);
}

/** The order of two decimal integers, in linear time (BigInt parsing of millions of digits takes seconds). */
export function compareDecimal(a: string, b: string): number {
  const x = a.replace(/^0+/, '');
  const y = b.replace(/^0+/, '');
  if (x.length !== y.length) return x.length - y.length;
  return x < y ? -1 : x > y ? 1 : 0;
}

/** True when two resourceVersions can be ordered: both decimal integers. */
function comparable(a: string | undefined, b: string | undefined): boolean {
  return isDecimalVersion(a) && isDecimalVersion(b);
}

/** An object's `metadata.uid` when it is a non-empty string. */
export function uidOf(obj: unknown): string | undefined {
  const md = typeof obj === 'object' && obj !== null ? (obj as { metadata?: unknown }).metadata : undefined;
  const uid = typeof md === 'object' && md !== null ? (md as { uid?: unknown }).uid : undefined;
  return typeof uid === 'string' && uid !== '' ? uid : undefined;
}

/**
 * True when an event of an object with uid `uid` at `rv` is of another incarnation than the one held (`heldUid` at
 * `heldRv`) and the versions cannot be ordered (finding 3720). Each incarnation has its own uid ("unique in time and
 * space", Kubernetes object metadata), so such a DELETED never deletes the held one. Where versions are integers they
 * decide instead: a DELETED of another uid newer than the held object shows that one gone too.
 */
export function otherIncarnation(uid: string | undefined, rv: string | undefined, heldUid: string | undefined, heldRv: string | undefined): boolean {
  return uid !== undefined && heldUid !== undefined && uid !== heldUid && !comparable(rv, heldRv);
}
