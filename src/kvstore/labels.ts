/**
 * Cilium's kvstore form of a label set (pkg/labels Labels.SortedList, "DO NOT BREAK THE FORMAT"):
 * every label as `source:key=value;`, sorted by key, concatenated, so the string ends with `;`.
 * Example: `k8s:app=web;k8s:io.kubernetes.pod.namespace=prod;`. The etcd backend stores it as is
 * (its Encode is the identity), as the master key's value and inside the slave key's path.
 */
interface Label {
  readonly source: string;
  readonly key: string;
  readonly value: string;
}

export class LabelFormatError extends Error {}

/** Parses `source:key=value` (the source is mandatory, as in every kvstore label). */
function parseLabel(text: string): Label {
  const colon = text.indexOf(':');
  const eq = text.indexOf('=', colon + 1);
  if (colon <= 0 || eq < 0 || eq === colon + 1) {
    throw new LabelFormatError(`label ${JSON.stringify(text)}: expected source:key=value`);
  }
  const label = { source: text.slice(0, colon), key: text.slice(colon + 1, eq), value: text.slice(eq + 1) };
  if (text.includes(';')) throw new LabelFormatError(`label ${JSON.stringify(text)}: must not contain ';' (the kvstore separator)`);
  // No '/' in the source: the slave-key prefix value/<labels>/ then matches exactly one label set.
  if (label.source.includes('/')) throw new LabelFormatError(`label ${JSON.stringify(text)}: source must not contain '/'`);
  return label;
}

/** The sorted kvstore key of a label set given as `source:key=value` strings. */
export function labelSetKey(labels: Iterable<string>): string {
  const byKey = new Map<string, Label>();
  for (const text of labels) {
    const label = parseLabel(text);
    if (byKey.has(label.key)) throw new LabelFormatError(`label set: key ${JSON.stringify(label.key)} appears twice`);
    byKey.set(label.key, label);
  }
  if (byKey.size === 0) throw new LabelFormatError('label set: empty (a global identity needs at least one label)');
  const keys = [...byKey.keys()].sort();
  return keys.map((k) => formatLabel(byKey.get(k) as Label)).join('');
}

const formatLabel = (l: Label): string => `${l.source}:${l.key}=${l.value};`;

/** The labels of a kvstore key, as `source:key=value` strings in key order. */
export function parseLabelSetKey(key: string): string[] {
  if (!key.endsWith(';')) throw new LabelFormatError(`label set key ${JSON.stringify(key)}: must end with ';'`);
  return key.slice(0, -1).split(';').map((t) => {
    const l = parseLabel(t);
    return `${l.source}:${l.key}=${l.value}`;
  });
}

/**
 * The sorted key of a label set read from a kvstore value in any order (the index finds it whatever
 * order etcd holds it in: finding 1822). Every label is kept: Cilium's `GlobalIdentity.PutKey` reads
 * the value with `labels.NewLabelArrayFromSortedList`, which keeps each label, and its selectors
 * match on source and key (`LabelArray.Has`), so `k8s:app` and `unspec:app` are two labels (review
 * 1891). A source and key named twice keep the first value: what `LabelArray.Get`, which selectors
 * read, returns.
 */
export function canonicalLabelSetKey(labels: readonly string[]): string {
  const firstBySourceKey = new Map<string, Label>();
  for (const text of labels) {
    const l = parseLabel(text);
    const k = `${l.source}:${l.key}`;
    if (!firstBySourceKey.has(k)) firstBySourceKey.set(k, l);
  }
  if (firstBySourceKey.size === 0) throw new LabelFormatError('label set: empty (a global identity needs at least one label)');
  // Sorted by key, as Cilium's SortedList, then by source (one key under two sources: a value Cilium's own writers never make).
  const sorted = [...firstBySourceKey.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.source < b.source ? -1 : a.source > b.source ? 1 : 0));
  return sorted.map(formatLabel).join('');
}
