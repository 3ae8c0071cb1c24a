/**
 * Labels as Cilium sees them: every label has a source (`k8s`, `reserved`, `cidr`, ...).
 * A selector key without a source prefix matches labels of any source.
 */

export type LabelSource = string;

export const SOURCE_K8S = 'k8s';
export const SOURCE_RESERVED = 'reserved';
export const SOURCE_CIDR = 'cidr';
export const SOURCE_ANY = 'any';

/** Label keys Cilium derives for every pod identity. */
export const POD_NAMESPACE_KEY = 'io.kubernetes.pod.namespace';
export const NAMESPACE_LABELS_PREFIX = 'io.cilium.k8s.namespace.labels.';
export const SERVICE_ACCOUNT_KEY = 'io.cilium.k8s.policy.serviceaccount';
export const CLUSTER_KEY = 'io.cilium.k8s.policy.cluster';
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';
export const DEFAULT_CLUSTER_NAME = 'default';

export interface Label {
  readonly source: LabelSource;
  readonly key: string;
  readonly value: string;
}

/** A label set, sorted by source then key, keys unique per source. */
export type LabelSet = readonly Label[];

export interface LabelKey {
  readonly source: LabelSource;
  readonly key: string;
}

const KNOWN_SOURCES = new Set([SOURCE_K8S, SOURCE_RESERVED, SOURCE_CIDR, SOURCE_ANY, 'unspec', 'container', 'fqdn', 'cilium-generated', 'node']);

/**
 * Splits `k8s:app` into source and key. Only a known source name counts as a prefix, so a key
 * such as `example.com:8080` (not a valid label key anyway) is not mistaken for a source.
 */
export function parseLabelKey(raw: string, defaultSource: LabelSource = SOURCE_ANY): LabelKey {
  const colon = raw.indexOf(':');
  if (colon > 0) {
    const source = raw.slice(0, colon);
    if (KNOWN_SOURCES.has(source)) {
      return { source: source === 'unspec' ? SOURCE_ANY : source, key: raw.slice(colon + 1) };
    }
  }
  return { source: defaultSource, key: raw };
}

export function formatLabelKey(k: LabelKey): string {
  return `${k.source}:${k.key}`;
}

export function formatLabel(l: Label): string {
  return l.value === '' ? `${l.source}:${l.key}` : `${l.source}:${l.key}=${l.value}`;
}

export function compareLabels(a: Label, b: Label): number {
  if (a.source !== b.source) return a.source < b.source ? -1 : 1;
  if (a.key !== b.key) return a.key < b.key ? -1 : 1;
  return a.value < b.value ? -1 : a.value > b.value ? 1 : 0;
}

export function makeLabelSet(labels: Iterable<Label>): LabelSet {
  const byKey = new Map<string, Label>();
  for (const l of labels) byKey.set(`${l.source}:${l.key}`, l);
  return [...byKey.values()].sort(compareLabels);
}

/** Canonical string of a label set: equal sets give equal strings (the identity key). */
export function labelSetKey(set: LabelSet): string {
  return set.map(formatLabel).join(',');
}

/** Values the set holds for a selector key; a key of source `any` looks through every source. */
export function labelValues(set: LabelSet, key: LabelKey): string[] {
  const out: string[] = [];
  for (const l of set) {
    if (l.key === key.key && (key.source === SOURCE_ANY || l.source === key.source)) out.push(l.value);
  }
  return out;
}

export function k8sLabels(map: Readonly<Record<string, string>>): Label[] {
  return Object.entries(map).map(([key, value]) => ({ source: SOURCE_K8S, key, value }));
}

export function reservedLabel(name: string): Label {
  return { source: SOURCE_RESERVED, key: name, value: '' };
}
