import type { Cidr } from '../model/cidr.js';
import { cidrGroupNameKey, CidrGroup } from '../model/cidr-group.js';
import { checkCidrFormat, readCidr, readMetadata } from './common.js';
import { at, join, Reader } from './reader.js';
import { labelKeyProblem, labelValueProblem } from '../model/labels.js';

/** The apiVersions a CiliumCIDRGroup is read at: cilium.io/v2 (1.19's watcher reads `cilium_v2.CiliumCIDRGroup`) and v2alpha1, still served. */
const CIDR_GROUP_API_VERSIONS = ['cilium.io/v2', 'cilium.io/v2alpha1'];

/** Keys `utils.RemoveCiliumLabels` drops from a group's labels (k8sconst.LabelPrefix). */
const CILIUM_LABEL_PREFIX = 'io.cilium.k8s';

/**
 * A CiliumCIDRGroup manifest (`spec.externalCIDRs`, the CRD's `format: cidr` items). Cilium 1.19's
 * `applyCIDRGroup` (pkg/policy/k8s/cilium_cidr_group.go) parses each item with netip.ParsePrefix and
 * skips one that fails ("CIDRGroup has invalid CIDR"): an item the API takes but netip refuses
 * ("10.0.0.0/024") is skipped here too. The prefixes' labels: the group's metadata.labels without
 * `io.cilium.k8s*` keys, then its name label (`LabelForCIDRGroupRef`), all of source `cidrgroup`.
 */
export function parseCidrGroup(doc: unknown, source: string): CidrGroup {
  const r = new Reader(source, true);
  const o = r.object(doc, '', ['apiVersion', 'kind', 'metadata', 'spec', 'status']);
  if (o.kind !== 'CiliumCIDRGroup') r.fail('kind', `"${String(o.kind)}" is not CiliumCIDRGroup`);
  const apiVersion = r.string(o.apiVersion, 'apiVersion');
  if (!CIDR_GROUP_API_VERSIONS.includes(apiVersion)) r.fail('apiVersion', `"${apiVersion}" is not an apiVersion of CiliumCIDRGroup (expected one of: ${CIDR_GROUP_API_VERSIONS.join(', ')})`);
  const { name } = readMetadata(r, o.metadata, false);
  const md = o.metadata as Record<string, unknown>;
  const labels = new Map<string, string>();
  for (const [k, v] of Object.entries(r.stringMap(md.labels, 'metadata.labels'))) {
    const problem = labelKeyProblem(k) ?? labelValueProblem(v);
    if (problem !== undefined) r.fail(join('metadata.labels', k), problem);
    if (!k.startsWith(CILIUM_LABEL_PREFIX)) labels.set(k, v);
  }
  labels.set(cidrGroupNameKey(name), '');
  const spec = r.object(o.spec, 'spec', ['externalCIDRs']);
  const cidrs: Cidr[] = [];
  const seen = new Set<string>();
  r.array(spec.externalCIDRs, 'spec.externalCIDRs').forEach((c, i) => {
    const path = at('spec.externalCIDRs', i);
    checkCidrFormat(r, c, path);
    const p = netipPrefix(r, c as string, path);
    if (p !== undefined && !seen.has(p.text)) {
      seen.add(p.text);
      cidrs.push(p);
    }
  });
  r.throwDeferred();
  return { name, labels, cidrs };
}

/** netip.ParsePrefix's reading, or undefined where it fails (Cilium skips the item). */
function netipPrefix(r: Reader, text: string, path: string): Cidr | undefined {
  try {
    return readCidr(new Reader(r.source, true), text, path, true);
  } catch {
    return undefined;
  }
}
