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
