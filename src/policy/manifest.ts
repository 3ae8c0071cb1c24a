import { parseAllDocuments } from 'yaml';
import type { Policy } from '../model/rules.js';
import { parseCiliumPolicy } from './cilium.js';
import { ManifestError } from './errors.js';
import { parseNetworkPolicy } from './networkpolicy.js';
import { Reader } from './reader.js';

const KINDS: Readonly<Record<string, string>> = {
  NetworkPolicy: 'networking.k8s.io/v1',
  CiliumNetworkPolicy: 'cilium.io/v2',
  CiliumClusterwideNetworkPolicy: 'cilium.io/v2',
};

/**
 * Validates one manifest (already parsed from YAML/JSON) and flattens it into rules.
 * `source` names it in errors, e.g. `policies.yaml#2`.
 */
export function parseManifest(doc: unknown, source: string): Policy {
  const r = new Reader(source);
  const kindPeek = typeof doc === 'object' && doc !== null && !Array.isArray(doc) ? (doc as Record<string, unknown>).kind : undefined;
  const top = kindPeek === 'NetworkPolicy' ? ['apiVersion', 'kind', 'metadata', 'spec', 'status'] : ['apiVersion', 'kind', 'metadata', 'spec', 'specs', 'status'];
  const o = r.object(doc, '', top);
  const kind = r.string(o.kind, 'kind');
  const apiVersion = r.string(o.apiVersion, 'apiVersion');
  const expected = KINDS[kind];
  if (expected === undefined) r.fail('kind', `"${kind}" is not a supported kind (expected one of: ${Object.keys(KINDS).join(', ')})`);
  if (apiVersion !== expected) r.fail('apiVersion', `"${apiVersion}" is not the apiVersion of ${kind} (expected ${expected})`);
  if (kind === 'NetworkPolicy') return parseNetworkPolicy(r, o);
  return parseCiliumPolicy(r, o, kind as 'CiliumNetworkPolicy' | 'CiliumClusterwideNetworkPolicy');
}

/** Parses a multi-document YAML file of manifests. Documents are numbered from 1 in errors. */
export function parseManifestFile(text: string, fileName: string): Policy[] {
  const docs = parseAllDocuments(text, { prettyErrors: true });
  const docList = Array.isArray(docs) ? docs : [docs];
  const out: Policy[] = [];
  docList.forEach((d, i) => {
    const source = `${fileName}#${i + 1}`;
    if (d.errors.length > 0) throw new ManifestError(source, '', `invalid YAML: ${d.errors[0]?.message ?? 'parse error'}`);
    const value: unknown = d.toJS();
    if (value === null || value === undefined) return;
    out.push(parseManifest(value, source));
  });
  return out;
}
