import { derivedLabelDetail, derivedLabelKeys, FILTERED_NAMESPACE_LABEL_DETAIL, filteredNamespaceLabelKeys } from '../model/labels.js';
import type { PolicyWarning } from '../model/rules.js';
import { readMetadata } from './common.js';
import { join, Reader } from './reader.js';
import { checkLabels } from './selector.js';

/**
 * Kubernetes objects other than policies that `distill validate` reads: `v1` Pods and Namespaces,
 * for their names and labels (what identities are made of). Their labels are validated as the API
 * validates them; pod labels in a label space distill derives itself are reported, since they
 * will be dropped from the pod's identity.
 */
const OBJECT_KINDS = ['Pod', 'Namespace'] as const;
export type ObjectKind = (typeof OBJECT_KINDS)[number];

export interface CheckedObject {
  readonly kind: ObjectKind;
  readonly name: string;
  readonly warnings: readonly PolicyWarning[];
}

export function isObjectKind(kind: unknown): kind is ObjectKind {
  return typeof kind === 'string' && (OBJECT_KINDS as readonly string[]).includes(kind);
}

/** Validates a Pod or Namespace manifest; `source` names it in errors and warnings. */
export function checkObjectManifest(doc: unknown, source: string): CheckedObject {
  const r = new Reader(source);
  const o = r.object(doc, '', ['apiVersion', 'kind', 'metadata', 'spec', 'status']);
  const kind = r.oneOf(o.kind, 'kind', OBJECT_KINDS);
  if (r.string(o.apiVersion, 'apiVersion') !== 'v1') r.fail('apiVersion', `"${String(o.apiVersion)}" is not the apiVersion of ${kind} (expected v1)`);
  const md = readMetadata(r, o.metadata, kind === 'Pod');
  const labels = r.stringMap((o.metadata as Record<string, unknown>).labels, 'metadata.labels');
  checkLabels(r, labels, 'metadata.labels');
  const warnings =
    kind === 'Pod'
      ? derivedLabelKeys(labels).map((k) => ({ source, path: join('metadata.labels', k), detail: derivedLabelDetail(k) }))
      : filteredNamespaceLabelKeys(labels).map((k) => ({ source, path: join('metadata.labels', k), detail: FILTERED_NAMESPACE_LABEL_DETAIL }));
  return { kind, name: md.namespace === undefined ? md.name : `${md.namespace}/${md.name}`, warnings };
}
