import { markParsedPolicy, type Policy, type PolicyWarning } from '../model/rules.js';
import { carriesNoPolicy, noPolicyVersionsOf } from './builtin-kinds.js';
import { parseCiliumPolicy, ParseOptions } from './cilium.js';
import { CNP_API_VERSIONS, cnpVersionOf, parseClusterNetworkPolicy } from './clusternetworkpolicy.js';
import { ManifestError } from './errors.js';
import { parseCidrGroup } from './cidr-group.js';
import type { CidrGroup } from '../model/cidr-group.js';

export type { ParseOptions, CiliumAgentOptions } from './cilium.js';
export { ciliumAgentOptions } from './cilium.js';
import { parseNetworkPolicy } from './networkpolicy.js';
import { CheckedObject, checkObjectManifest, isObjectKind } from './objects.js';
import { Reader } from './reader.js';
import { loadYamlDocuments } from './yaml.js';

/** The apiVersions each kind is read at, the first the one an error names first. */
const KINDS: Readonly<Record<string, readonly string[]>> = {
  NetworkPolicy: ['networking.k8s.io/v1'],
  CiliumNetworkPolicy: ['cilium.io/v2'],
  CiliumClusterwideNetworkPolicy: ['cilium.io/v2'],
  // network-policy-api serves v1beta1 (the storage version) and v1alpha2; each is read as its own version (src/policy/clusternetworkpolicy.ts).
  ClusterNetworkPolicy: CNP_API_VERSIONS,
};

const expectedText = (versions: readonly string[]): string => versions.join(' or ');

/**
 * Validates one manifest (already parsed from YAML/JSON) and flattens it into rules.
 * `source` names it in errors, e.g. `policies.yaml#2`.
 */
export function parseManifest(doc: unknown, source: string, options: ParseOptions = {}): Policy {
  return markParsedPolicy(readManifest(doc, source, options));
}

/**
 * `parseManifest` for a reader that makes its own policy object from the result and marks that one
 * (a trace: `markParsedPolicy` on both would double the weak set while a big trace is read).
 */
export function readManifest(doc: unknown, source: string, options: ParseOptions = {}): Policy {
  const r = new Reader(source, true);
  if (isList(doc)) r.fail('kind', `"${String(doc.kind)}" is a list of manifests: a List is read only from a manifest file; give one policy here`);
  const kindPeek = typeof doc === 'object' && doc !== null && !Array.isArray(doc) ? (doc as Record<string, unknown>).kind : undefined;
  const top = kindPeek === 'NetworkPolicy' || kindPeek === 'ClusterNetworkPolicy' ? ['apiVersion', 'kind', 'metadata', 'spec', 'status'] : ['apiVersion', 'kind', 'metadata', 'spec', 'specs', 'status'];
  const o = r.object(doc, '', top);
  const kind = r.string(o.kind, 'kind');
  const apiVersion = r.string(o.apiVersion, 'apiVersion');
  const expected = (Object.hasOwn(KINDS, kind) ? KINDS[kind] : undefined) ?? r.fail('kind', `"${kind}" is not a supported kind (expected one of: ${Object.keys(KINDS).join(', ')})`);
  if (!expected.includes(apiVersion)) r.fail('apiVersion', `"${apiVersion}" is not the apiVersion of ${kind} (expected ${expectedText(expected)})`);
  const policy = kind === 'NetworkPolicy' ? parseNetworkPolicy(r, o) : kind === 'ClusterNetworkPolicy' ? parseClusterNetworkPolicy(r, o, cnpVersionOf(apiVersion), options) : parseCiliumPolicy(r, o, kind as 'CiliumNetworkPolicy' | 'CiliumClusterwideNetworkPolicy', options);
  // Every reader's deferred "not supported" (Reader.unsupported), whichever helper recorded it.
  r.throwDeferred();
  return policy;
}

const LIST_KINDS = ['List', ...Object.keys(KINDS).map((k) => `${k}List`)];

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function isList(doc: unknown): doc is Record<string, unknown> {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return false;
  const kind = (doc as Record<string, unknown>).kind;
  return typeof kind === 'string' && LIST_KINDS.includes(kind);
}

/**
 * One manifest, or each item of a `kind: List` (what `kubectl get -o yaml` prints for several
 * objects; typed lists such as `NetworkPolicyList` too). Items are named `<source>.items[i]`.
 */
export function parseManifests(doc: unknown, source: string, options: ParseOptions = {}): Policy[] {
  if (!isList(doc)) return [parseManifest(doc, source, options)];
  const r = new Reader(source);
  const o = r.object(doc, '', ['apiVersion', 'kind', 'metadata', 'items']);
  const apiVersion = r.string(o.apiVersion, 'apiVersion');
  const kind = o.kind as string;
  const expected = kind === 'List' ? ['v1'] : (KINDS[kind.slice(0, -'List'.length)] ?? []);
  if (!expected.includes(apiVersion)) r.fail('apiVersion', `"${apiVersion}" is not the apiVersion of ${kind} (expected ${expectedText(expected)})`);
  const itemKind = kind.slice(0, -'List'.length);
  return (r.optArray(o.items, 'items') ?? []).map((item, i) => parseManifest(withListKind(item, itemKind, apiVersion), `${source}.items[${i}]`, options));
}

/**
 * An item of a typed list with neither `kind` nor `apiVersion` (the API's own lists leave them out:
 * `kubectl get --raw .../networkpolicies`) takes the list's, as kubectl decodes it: apimachinery
 * unstructured `decodeToList` ("Set the item's Kind and APIVersion to those inferred from the List",
 * when `GetKind()` and `GetAPIVersion()` are both empty). A `kind: List` infers the kind "", which no
 * reader takes (attack finding 2473).
 */
function withListKind(item: unknown, itemKind: string, apiVersion: string): unknown {
  const blank = (v: unknown): boolean => typeof v !== 'string' || v === '';
  if (itemKind === '' || !isObject(item) || !blank(item.kind) || !blank(item.apiVersion)) return item;
  return { ...item, kind: itemKind, apiVersion };
}

/**
 * What `distill validate` and `-f` read: policies, `v1` Pods and Namespaces (checked for their names
 * and labels), in any document or List item of a multi-document file. Built-in kinds that carry no
 * policy (Deployment, Service, ...) are skipped with a warning in `skipped`; any other kind is refused.
 * Errors name the document's kind and name next to `file#N` where it has them. With `errors`, a
 * document (or List item) that is refused is added to it and left out, and the others are still read,
 * as `kubectl apply -f` reports each object it cannot take; without it the first error is thrown.
 * `options.cidrGroups` (`distill validate`): CiliumCIDRGroup documents are read (src/policy/cidr-group.ts)
 * into `cidrGroups`, and `cidrGroupRef`/`cidrGroupSelector` peers as the agent reads them once it
 * watches the groups; otherwise a group is refused as an unread kind and a group peer is "not supported".
 * `policySources[i]` is where `policies[i]` was read: `file#N` (the N-th document), `file#N.items[i]`
 * for an item of a `kind: List`, so an answer naming a policy can say which document it came from.
 */
export function readManifestFile(text: string, fileName: string, errors?: ManifestError[], options: { readonly cidrGroups?: boolean } = {}): { policies: Policy[]; policySources: string[]; objects: CheckedObject[]; skipped: PolicyWarning[]; cidrGroups: CidrGroup[] } {
  const policies: Policy[] = [];
  const policySources: string[] = [];
  const addPolicies = (read: readonly Policy[], source: string): void => {
    policies.push(...read);
    for (let i = 0; i < read.length; i++) policySources.push(source);
  };
  const cidrGroups: CidrGroup[] = [];
  const parseOptions: ParseOptions = options.cidrGroups === true ? { cidrGroups: true } : {};
  const objects: CheckedObject[] = [];
  const skipped: PolicyWarning[] = [];
  const each = (read: () => void): void => {
    try {
      read();
    } catch (e) {
      if (errors === undefined || !(e instanceof ManifestError)) throw e;
      errors.push(e);
    }
  };
  const one = (doc: unknown, source: string): void => {
    const top = typeof doc === 'object' && doc !== null && !Array.isArray(doc) ? (doc as Record<string, unknown>) : {};
    const label = documentLabel(source, top);
    try {
      if (isObjectKind(top.kind)) objects.push(checkObjectManifest(doc, source));
      else if (options.cidrGroups === true && top.kind === 'CiliumCIDRGroup') cidrGroups.push(parseCidrGroup(doc, source));
      else if (carriesNoPolicy(top.apiVersion, top.kind)) skipped.push({ source: label, path: 'kind', detail: `${String(top.kind)} (${String(top.apiVersion)}) carries no network policy: skipped` });
      else addPolicies([parseManifest(refuseUnreadKind(doc, top, source), source, parseOptions)], source);
    } catch (e) {
      if (!(e instanceof ManifestError) || e.source !== source) throw e;
      const hint = e.fieldPath === '' || e.fieldPath === 'kind' ? shapeHint(doc) : undefined;
      if (label !== source || hint !== undefined) throw new ManifestError(label, e.fieldPath, hint === undefined ? e.detail : `${e.detail}; ${hint}`, e.unread);
      throw e;
    }
  };
  for (const { source, value } of loadYamlDocuments(text, fileName)) {
    if (value === null || value === undefined) continue;
    if (options.cidrGroups === true && isObject(value) && value.kind === 'CiliumCIDRGroupList') each(() => cidrGroups.push(...groupListItems(value, source)));
    else if (!isList(value)) each(() => one(value, source));
    else if (value.kind !== 'List') each(() => addPolicies(parseManifests(value, source, parseOptions), source));
    else each(() => listItems(value, source).forEach((item, i) => each(() => one(item, `${source}.items[${i}]`))));
  }
  return { policies, policySources, objects, skipped, cidrGroups };
}

/** The groups of a typed `CiliumCIDRGroupList` (its items may leave out `apiVersion` and `kind`, as the API's lists do). */
function groupListItems(value: Record<string, unknown>, source: string): CidrGroup[] {
  const r = new Reader(source);
  const o = r.object(value, '', ['apiVersion', 'kind', 'metadata', 'items']);
  const apiVersion = r.string(o.apiVersion, 'apiVersion');
  return (r.optArray(o.items, 'items') ?? []).map((item, i) => {
    const it = typeof item === 'object' && item !== null && !Array.isArray(item) ? (item as Record<string, unknown>) : {};
    return parseCidrGroup({ apiVersion, kind: 'CiliumCIDRGroup', ...it }, `${source}.items[${i}]`);
  });
}

/** The items of a `kind: List` (apiVersion v1). */
function listItems(value: Record<string, unknown>, source: string): unknown[] {
  const r = new Reader(source);
  const o = r.object(value, '', ['apiVersion', 'kind', 'metadata', 'items']);
  if (r.string(o.apiVersion, 'apiVersion') !== 'v1') r.fail('apiVersion', `"${String(o.apiVersion)}" is not the apiVersion of List (expected v1)`);
  return r.optArray(o.items, 'items') ?? [];
}

/** Whether `v` is a JSON object with the key `key`. */
function hasKey(v: unknown, key: string): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.hasOwn(v, key);
}

/**
 * What a document that is not a Kubernetes object most likely is, for the error refusing it (attack
 * findings 2121, 2122): Cilium's own rule files (examples/policies/*.json, the JSON that `cilium-dbg
 * policy import` reads: a list of rules, or one rule, with no `kind`), a bare spec copied from a
 * manifest, or a watch event (`kubectl get --watch --output-watch-events -o json`: `{type, object}`).
 * Only a hint: the document is refused either way.
 */
function shapeHint(doc: unknown): string | undefined {
  if (hasKey(doc, 'kind')) return undefined;
  const ciliumRule = (v: unknown): boolean => hasKey(v, 'endpointSelector') || hasKey(v, 'nodeSelector');
  const wrap = 'write each rule as the spec of a CiliumNetworkPolicy (apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name, namespace}, spec: RULE)';
  if (Array.isArray(doc) && doc.length > 0 && doc.every(ciliumRule)) return `this is a list of Cilium rules (the JSON \`cilium-dbg policy import\` reads), not a Kubernetes manifest: ${wrap}`;
  if (ciliumRule(doc)) return `this is a Cilium rule (a CiliumNetworkPolicy's spec), not a Kubernetes manifest: ${wrap}`;
  if (hasKey(doc, 'podSelector')) return "this is a NetworkPolicy's spec, not a manifest: write it as spec of a NetworkPolicy (apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name, namespace}, spec: ...)";
  if (hasKey(doc, 'type') && hasKey(doc, 'object')) return 'this is a watch event (`kubectl get --watch --output-watch-events` prints them): `distill agent --watch FILE` reads watch streams; a manifest is the event\'s `object`';
  return undefined;
}

/** `file#N (Kind namespace/name)`, or less where the document lacks them. */
function documentLabel(source: string, top: Record<string, unknown>): string {
  if (typeof top.kind !== 'string') return source;
  const md = typeof top.metadata === 'object' && top.metadata !== null ? (top.metadata as Record<string, unknown>) : {};
  const name = typeof md.name === 'string' ? (typeof md.namespace === 'string' && md.namespace !== '' ? `${md.namespace}/${md.name}` : md.name) : '';
  return `${source} (${top.kind}${name === '' ? '' : ` ${name}`})`;
}

/** Refuses a kind that is neither a policy, a Pod or Namespace, nor a built-in kind at a known apiVersion. */
function refuseUnreadKind(doc: unknown, top: Record<string, unknown>, source: string): unknown {
  const kind = top.kind;
  if (typeof kind !== 'string' || Object.hasOwn(KINDS, kind)) return doc;
  const r = new Reader(source);
  const versions = noPolicyVersionsOf(kind);
  if (versions.length > 0) r.fail('apiVersion', `"${String(top.apiVersion)}" is not an apiVersion distill knows for ${kind} (expected ${versions.join(' or ')}); an object distill cannot classify is refused, not skipped`);
  // network-policy-api's v1alpha1 kinds (apis/v1alpha1 adminnetworkpolicy_types.go, baselineadminnetworkpolicy_types.go):
  // their tiers are ClusterNetworkPolicy's spec.tier in v1alpha2 (apis/v1alpha2 clusternetworkpolicy_types.go, Tier).
  const older = kind === 'AdminNetworkPolicy' || kind === 'BaselineAdminNetworkPolicy' ? `; ${kind} is network-policy-api's older API (v1alpha1): distill reads ClusterNetworkPolicy (${expectedText(CNP_API_VERSIONS)}), whose spec.tier ${kind === 'AdminNetworkPolicy' ? 'Admin' : 'Baseline'} takes its place` : '';
  // A kustomize folder's own file (kubectl apply -f refuses it too; kubectl apply -k renders the folder first).
  const kustomize = kind === 'Kustomization' ? '; this is a kustomize file, not an object: render the folder first (`kubectl kustomize DIR | distill validate -`)' : '';
  r.fail('kind', `"${kind}" is not a supported kind (expected one of: ${[...Object.keys(KINDS), 'Pod', 'Namespace', 'List'].join(', ')}; built-in kinds without network policy, such as Deployment or Service, are skipped)${older}${kustomize}`);
}

/**
 * The policies of a manifest file's text (multi-document YAML, JSON, a stream of JSON objects, `kind: List`),
 * read as kubectl reads it: go-yaml v2's scalars (`yes` is a boolean, `010` is 8), its line breaks, merge
 * keys and duplicate keys (docs/semantics.md); a YAML 1.2 library reads some of these differently (attack
 * finding 2126). Documents are numbered from 1 in errors (`policies.yaml#2`); the first refused one throws a
 * `ManifestError`. Every document must be a policy or a List of them. `options` as `parseManifest`'s
 * (e.g. `{ cidrGroups: true }` to read `cidrGroupRef`/`cidrGroupSelector` peers; finding 2302).
 */
export function parseManifestFile(text: string, fileName: string, options?: ParseOptions): Policy[] {
  const out: Policy[] = [];
  for (const { source, value } of loadYamlDocuments(text, fileName)) {
    if (value === null || value === undefined) continue;
    out.push(...parseManifests(value, source, options));
  }
  return out;
}

/**
 * The policies and CiliumCIDRGroups of a manifest file's text, read as `parseManifestFile` reads it but with
 * `options.cidrGroups` set (`cidrGroupRef`/`cidrGroupSelector` peers read): every document is a policy, a
 * CiliumCIDRGroup (`cilium.io/v2` or `v2alpha1`), a typed `CiliumCIDRGroupList` or a `kind: List` of policies and
 * groups; the first refused one throws a `ManifestError` (finding 2306). The groups go to the engine as
 * `upsertCidrGroup` events before the policies that name them.
 */
export function parseManifestFileWithGroups(text: string, fileName: string, options: ParseOptions = {}): { policies: Policy[]; cidrGroups: CidrGroup[] } {
  const parseOptions: ParseOptions = { ...options, cidrGroups: true };
  const policies: Policy[] = [];
  const cidrGroups: CidrGroup[] = [];
  const one = (doc: unknown, source: string): void => {
    if (isObject(doc) && doc.kind === 'CiliumCIDRGroup') cidrGroups.push(parseCidrGroup(doc, source));
    else policies.push(parseManifest(doc, source, parseOptions));
  };
  for (const { source, value } of loadYamlDocuments(text, fileName)) {
    if (value === null || value === undefined) continue;
    if (isObject(value) && value.kind === 'CiliumCIDRGroupList') cidrGroups.push(...groupListItems(value, source));
    else if (isObject(value) && value.kind === 'List') listItems(value, source).forEach((item, i) => one(item, `${source}.items[${i}]`));
    else if (isList(value)) policies.push(...parseManifests(value, source, parseOptions));
    else one(value, source);
  }
  return { policies, cidrGroups };
}
