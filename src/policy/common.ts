import { Cidr, cidrContainsCidr, isValidIp, parseCidr, parseIp } from '../model/cidr.js';
import { isDnsLabel, isDnsSubdomain, POD_NAMESPACE_KEY, SOURCE_K8S } from '../model/labels.js';
import { matchLabelRequirement, Requirement, Selector, andSelector } from '../model/selector.js';
import { KeyedPolicyRef, type Peer, type PolicyRef } from '../model/rules.js';
import { at, join, Reader } from './reader.js';
import { MAX_CACHED_TEXT } from './selector.js';

const METADATA_FIELDS = [
  'name',
  'namespace',
  'labels',
  'annotations',
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
  'generateName',
  'finalizers',
  'managedFields',
  'ownerReferences',
  'selfLink',
];


export function checkNamespaceName(r: Reader, name: string, path: string): void {
  if (!isDnsLabel(name)) r.fail(path, `"${name}" is not a valid namespace name (a DNS label)`);
}

export function checkObjectName(r: Reader, name: string, path: string): void {
  if (!isDnsSubdomain(name)) r.fail(path, `"${name}" is not a valid object name (a DNS subdomain)`);
}

/** Reads `metadata`: name required, namespace defaulting to `default` for namespaced kinds. */
export function readMetadata(r: Reader, v: unknown, namespaced: boolean): { name: string; namespace?: string } {
  const md = r.object(v, 'metadata', METADATA_FIELDS);
  const name = r.nonEmptyString(md.name, 'metadata.name');
  checkObjectName(r, name, 'metadata.name');
  r.stringMap(md.labels, 'metadata.labels');
  if (!namespaced) return { name };
  // kubectl gives an object without a namespace, `""` included, the context's (cli-runtime resource
  // `SetNamespace`: `len(info.Namespace) == 0`); distill's context namespace is `default`.
  const written = r.optString(md.namespace, 'metadata.namespace');
  const namespace = written === undefined || written === '' ? 'default' : written;
  checkNamespaceName(r, namespace, 'metadata.namespace');
  return { name, namespace };
}

function namespaceRequirement(namespace: string) {
  return matchLabelRequirement({ source: SOURCE_K8S, key: POD_NAMESPACE_KEY }, namespace);
}

/** A subject selector of a namespaced policy only ever selects pods of its namespace. */
export function restrictToNamespace(sel: Selector, namespace: string | undefined): Selector {
  return namespace === undefined ? sel : withRequirement(sel, namespace, () => namespaceRequirement(namespace));
}

/**
 * `sel` AND one more requirement, named by `name` (equal names, equal requirements), made once per
 * (selector key, name): with parsed selectors shared (selector.ts), every policy of a namespace
 * scoping an equal selector gets the same result instead of a copy. Equal keys mean equal
 * requirements (makeSelector). Bounded: a full cache is emptied.
 */
const extended = new Map<string, Selector>();

export function withRequirement(sel: Selector, name: string, requirement: () => Requirement): Selector {
  const key = `${name}\0${sel.key}`;
  const hit = extended.get(key);
  if (hit !== undefined) return hit;
  const out = andSelector(sel, [requirement()]);
  if (key.length > MAX_CACHED_TEXT) return out;
  if (extended.size >= 16384) extended.clear();
  extended.set(key, out);
  return out;
}

/** Empties the cache of `withRequirement` (a trace's parse is over: what it built is kept by its policies). */
export function forgetExtendedSelectors(): void {
  extended.clear();
}

export function readCidr(r: Reader, v: unknown, path: string, requirePrefix: boolean): Cidr {
  const s = r.nonEmptyString(v, path);
  if (requirePrefix && !s.includes('/')) r.fail(path, `"${s}" is not a CIDR (expected address/prefix-length)`);
  // Go's netip.ParsePrefix (Cilium's CIDRRule.sanitize, also for a NetworkPolicy ipBlock; the API's CEL
  // isCIDR) refuses a prefix length with a leading zero ("bad bits after slash"). Kubernetes' ipBlock
  // validation (ParseCIDRSloppy) takes "/024" as /24, but Cilium never reads it so (finding 651).
  if (/\/0\d/.test(s)) r.fail(path, `"${s}": a prefix length with a leading zero is refused (Go netip.ParsePrefix: bad bits after slash)`);
  try {
    return parseCidr(s);
  } catch (e) {
    return r.fail(path, (e as Error).message);
  }
}

/**
 * The API's `format: cidr` (kube-openapi strfmt `IsCIDR`: Go's net.ParseCIDR), for an item the API
 * server checks and Cilium never parses (a CIDR group's except: CIDRRule.sanitize returns first): an
 * address as netip.ParseAddr reads it, without a zone, then a decimal prefix length up to its bits,
 * leading zeros taken (net's `dtoi`: "/024" is /24, which readCidr refuses for fields Cilium parses).
 */
export function checkCidrFormat(r: Reader, v: unknown, path: string): void {
  const s = r.nonEmptyString(v, path);
  const slash = s.indexOf('/');
  const addr = s.slice(0, Math.max(slash, 0));
  const bits = s.slice(slash + 1);
  const ok = slash > 0 && isValidIp(addr) && /^\d+$/.test(bits) && Number(bits) <= (parseIp(addr).family === 'ipv4' ? 32 : 128);
  if (!ok) r.fail(path, `"${s}" is not a CIDR (the API's format: cidr, Go net.ParseCIDR)`);
}

/**
 * A CIDR with exceptions; every exception must lie inside the CIDR (both APIs require it). With
 * `strictSubset` (Kubernetes' ipBlock: "must be a strict subset of `cidr`",
 * pkg/apis/networking/validation `ValidateIPBlock`) an exception may not equal the CIDR either.
 */
export function readCidrWithExcept(r: Reader, cidrV: unknown, exceptV: unknown, path: string, cidrField: string, exceptField: string, strictSubset = false): Peer {
  const cidr = readCidr(r, cidrV, join(path, cidrField), true);
  const except = (r.optArray(exceptV, join(path, exceptField)) ?? []).map((e, i) => {
    const epath = at(join(path, exceptField), i);
    const c = readCidr(r, e, epath, true);
    if (!strictSubset && exceptAddressInside(cidr, e as string, c)) return cidr;
    if (!cidrContainsCidr(cidr, c)) r.fail(epath, `${c.text} is not within ${cidr.text}`);
    if (strictSubset && c.prefixLength === cidr.prefixLength) r.fail(epath, `${c.text} must be a strict subset of cidr ${cidr.text}`);
    return c;
  });
  return { kind: 'cidr', cidr, except };
}

export function refOf(kind: PolicyRef['kind'], md: { name: string; namespace?: string }): PolicyRef {
  return new KeyedPolicyRef(kind, md.namespace, md.name);
}

/**
 * Cilium's CIDRRule.sanitize (pkg/policy/api/rule_validation.go) only checks that the exception's
 * address as written lies in the CIDR (`prefix.Contains(except.Addr())`), so an exception wider
 * than the CIDR ("10.0.0.0/4" in 10.0.0.0/8) is accepted; its DoesNotExist requirement on the
 * wider prefix's label (GetAsEndpointSelectors, pkg/policy/api/cidr.go) then excludes the whole
 * CIDR. True when that is the case: the exception then stands for the whole CIDR.
 */
function exceptAddressInside(cidr: Cidr, text: string, except: Cidr): boolean {
  if (except.family !== cidr.family || except.prefixLength >= cidr.prefixLength) return false;
  const slash = text.indexOf('/');
  return cidrContainsCidr(cidr, parseCidr(slash < 0 ? text : text.slice(0, slash)));
}