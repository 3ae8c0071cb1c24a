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
 * The sorted key of a label set read from a kvstore value in any order, a key named twice taking
 * its last value: Cilium indexes its cache by the parsed labels re-encoded (pkg/allocator/cache.go
 * `OnAdd`: `nextKeyCache[encodeKey(key)]`; pkg/labels `NewLabelsFromModel` keeps one label per key).
 */
export function canonicalLabelSetKey(labels: readonly string[]): string {
  const lastByKey = new Map<string, string>();
  for (const text of labels) lastByKey.set(parseLabel(text).key, text);
  return labelSetKey(lastByKey.values());
}
