import { markParsedPolicy, type Direction, type Policy, type PolicyRule, type RuleOrigin } from '../model/rules.js';
import { ciliumExtendedKey } from '../model/labels.js';
import { ALL_L4 } from '../model/ports.js';
import { coveringSelector, WILDCARD_SELECTOR } from '../model/selector.js';
import { MIN_PRIORITY, RULES_PER_DIRECTION, type TieredSpec, type TierPlacement, type TierRule } from '../model/tiers.js';
import { ManifestError } from './errors.js';
import { parseManifest, type ParseOptions } from './manifest.js';

/**
 * (NetworkPolicy and ClusterNetworkPolicy: see networkPolicyStandIn, clusterNetworkPolicyStandIn.)
 * A Cilium policy that uses what distill does not read (a field Cilium supports: `toServices`,
 * `fromRequires`, `cidrGroupRef`, an L7 `secret`, a field of a newer CRD) is still enforced by
 * Cilium. Skipping it would drop the isolation it gives its subject and the denies it holds, so
 * the agent enforces a fail-closed stand-in instead: each rule distill cannot read is dropped from
 * an allow list (the direction stays isolated: an emptied list becomes `[{}]`, Cilium's "NoAllow"
 * rule) and becomes "deny every peer" in a deny list; the rest of the policy is kept. Undefined
 * when some error is not such a feature (an invalid policy, which Cilium refuses too), for host
 * policies (`nodeSelector`: no pod is their subject), or when the subject cannot be read.
 */
export function failClosedStandIn(doc: unknown, source: string, error: unknown, options: ParseOptions = {}): Policy | undefined {
  if (!unsupported(error) || typeof doc !== 'object' || doc === null || Array.isArray(doc)) return undefined;
  const o = doc as Record<string, unknown>;
  if (o.kind === 'ClusterNetworkPolicy') return clusterNetworkPolicyStandIn(o, source, options);
  if (o.kind === 'NetworkPolicy') return networkPolicyStandIn(o, source);
  if (o.kind !== 'CiliumNetworkPolicy' && o.kind !== 'CiliumClusterwideNetworkPolicy') return undefined;
  const parses = (spec: unknown): unknown => specError(o, spec, source, options);
  const specs: unknown[] = [];
  for (const s of [...(o.spec !== undefined ? [o.spec] : []), ...(Array.isArray(o.specs) ? (o.specs as unknown[]) : [])]) {
    const read = standInSpec(s, parses);
    // null (a host spec, left out) is kept as is; undefined may still be an ambiguous subject (2024).
    const stood = read === undefined ? ambiguousSubjectStandIn(s, parses) : read;
    if (stood === undefined) return undefined;
    if (stood !== null) specs.push(...(Array.isArray(stood) ? stood : [stood]));
  }
  if (specs.length === 0) return undefined;
  try {
    return parseManifest({ apiVersion: o.apiVersion, kind: o.kind, metadata: o.metadata, specs }, source, options);
  } catch {
    return undefined;
  }
}

function unsupported(e: unknown): boolean {
  // toNodes/fromNodes without the agent's node-selector flag: the cluster's Cilium may run with it.
  // `unread`: every deferred `Reader.unsupported` error, whose wording the pattern once had to match (finding 2021).
  return e instanceof ManifestError && (e.unread || /is not supported by distill|unknown field|"enable-node-selector-labels" flag/.test(e.detail));
}

const LISTS = [
  { field: 'ingress', deny: false, all: 'fromEntities' },
  { field: 'egress', deny: false, all: 'toEntities' },
  { field: 'ingressDeny', deny: true, all: 'fromEntities' },
  { field: 'egressDeny', deny: true, all: 'toEntities' },
] as const;

/** One spec's stand-in; null: a host policy (skipped); undefined: no stand-in possible. */
function standInSpec(v: unknown, parses: (spec: unknown) => unknown): Record<string, unknown> | null | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const s = v as Record<string, unknown>;
  if (s.nodeSelector !== undefined) return null;
  const subject = { endpointSelector: s.endpointSelector };
  if (parses({ ...subject, ingress: [{}] }) !== undefined) return undefined;
  // The spec's `enableDefaultDeny` is kept: with a direction's flag false its rules only add allows and denies, so an
  // unreadable allow dropped there isolates nothing, as Cilium does not (it isolated the direction before: finding 2231).
  // Only a flag that reads: one distill cannot read (a field of a newer CRD in it) is dropped, so the spec isolates the
  // directions it has rules for, as before 2231 (with it kept the stand-in did not parse and the policy had none, its
  // denies dropped: review 27v, finding 2326).
  const flag = s.enableDefaultDeny !== undefined && parses({ ...subject, ingress: [{}], enableDefaultDeny: s.enableDefaultDeny }) === undefined ? { enableDefaultDeny: s.enableDefaultDeny } : {};
  const out: Record<string, unknown> = { ...subject, ...flag };
  for (const { field, deny, all } of LISTS) {
    if (!Array.isArray(s[field]) || (s[field] as unknown[]).length === 0) continue;
    const kept: unknown[] = [];
    for (const rule of s[field] as unknown[]) {
      const err = parses({ ...subject, [field]: [rule] });
      if (err === undefined) kept.push(rule);
      else if (!unsupported(err)) return undefined;
      else if (deny) kept.push({ [all]: ['all'] });
    }
    out[field] = kept.length > 0 ? kept : [{}];
  }
  // Spec-level fields distill does not read (a newer CRD): isolate what the spec has rules for.
  return parses(out) === undefined ? out : undefined;
}

/**
 * A spec whose subject writes one Cilium key twice with different values (`app: a` and `:app: b`, both
 * `any.app`): Cilium keeps one of them, chosen by Go's map order (finding 764), so its subject is one of
 * the candidates and distill cannot tell which. Skipping the object left either open (attack finding
 * 2024). Instead each candidate subject is isolated in the directions the spec has rules for, with no
 * allow, and keeps the spec's deny rules (each unreadable one denying every peer): closed under either
 * reading. Undefined when that cannot be built.
 */
function ambiguousSubjectStandIn(v: unknown, parses: (spec: unknown) => unknown): Record<string, unknown>[] | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const s = v as Record<string, unknown>;
  const candidates = subjectCandidates(s.endpointSelector);
  if (candidates === undefined) return undefined;
  const out: Record<string, unknown>[] = [];
  for (const endpointSelector of candidates) {
    const spec: Record<string, unknown> = { endpointSelector };
    for (const { field, deny, all } of LISTS) {
      if (!Array.isArray(s[field]) || (s[field] as unknown[]).length === 0) continue;
      if (!deny) {
        spec[field] = [{}];
        continue;
      }
      const kept: unknown[] = [];
      for (const rule of s[field] as unknown[]) {
        const err = parses({ endpointSelector, [field]: [rule] });
        if (err === undefined) kept.push(rule);
        else if (!unsupported(err)) return undefined;
        else kept.push({ [all]: ['all'] });
      }
      spec[field] = kept;
    }
    if (parses(spec) !== undefined) return undefined;
    out.push(spec);
  }
  return out.length > 0 ? out : undefined;
}

/** At most this many candidate subjects (each colliding key multiplies them). */
const MAX_SUBJECT_CANDIDATES = 16;

/**
 * The selectors Cilium may make of `sel` when its matchLabels write one extended key with different
 * values: one per choice of the entry kept for each such key; undefined when there is no such key or
 * too many candidates.
 */
function subjectCandidates(sel: unknown): Record<string, unknown>[] | undefined {
  if (typeof sel !== 'object' || sel === null || Array.isArray(sel)) return undefined;
  const o = sel as Record<string, unknown>;
  const ml = o.matchLabels;
  if (typeof ml !== 'object' || ml === null || Array.isArray(ml)) return undefined;
  const groups = new Map<string, string[]>();
  for (const k of Object.keys(ml)) {
    const ext = ciliumExtendedKey(k);
    groups.set(ext, [...(groups.get(ext) ?? []), k]);
  }
  const entries = ml as Record<string, unknown>;
  const ambiguous = [...groups.values()].filter((keys) => new Set(keys.map((k) => entries[k])).size > 1);
  if (ambiguous.length === 0) return undefined;
  const dropped = new Set(ambiguous.flat());
  let choices: string[][] = [[]];
  for (const keys of ambiguous) {
    choices = choices.flatMap((c) => keys.map((k) => [...c, k]));
    // Past the limit, one selector for their union (each such key In its written values): giving up here
    // skipped the object, leaving every candidate open (review 26s, finding 2140).
    if (choices.length > MAX_SUBJECT_CANDIDATES) return [candidateUnion(o, entries, ambiguous, dropped)];
  }
  return choices.map((kept) => {
    const labels: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
    for (const [k, val] of Object.entries(entries)) if (!dropped.has(k) || kept.includes(k)) labels[k] = val;
    return { ...o, matchLabels: labels };
  });
}

/**
 * The union of every candidate subject as one selector: the entries no ambiguity touches, and per
 * ambiguous extended key an In expression over the values its spellings write (a pod some candidate
 * selects has, for each such key, one of them; a pod meeting them all is selected by one candidate).
 */
function candidateUnion(o: Record<string, unknown>, entries: Record<string, unknown>, ambiguous: readonly string[][], dropped: ReadonlySet<string>): Record<string, unknown> {
  const labels: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  for (const [k, val] of Object.entries(entries)) if (!dropped.has(k)) labels[k] = val;
  const written = Array.isArray(o.matchExpressions) ? (o.matchExpressions as unknown[]) : [];
  const union = ambiguous.map((keys) => ({ key: keys[0], operator: 'In', values: [...new Set(keys.map((k) => entries[k]))] }));
  return { ...o, matchLabels: labels, matchExpressions: [...written, ...union] };
}

/** The error reading manifest `o` with `spec` in place of its own gives, or undefined when it reads. */
function specError(o: Record<string, unknown>, spec: unknown, source: string, options: ParseOptions = {}): unknown {
  try {
    parseManifest({ apiVersion: o.apiVersion, kind: o.kind, metadata: o.metadata, spec }, source, options);
    return undefined;
  } catch (e) {
    return e;
  }
}

/**
 * A NetworkPolicy with a field of a newer Kubernetes API (the API server serves what its own
 * version defines; Cilium's client drops what it does not know): its subject stays isolated in
 * the directions the policy as written isolates (policyTypes made explicit, so dropping every
 * egress rule cannot undo the defaulting), each rule distill cannot read is dropped (NetworkPolicy
 * only allows), a spec field it cannot read is left out. Attack finding 710.
 */
function networkPolicyStandIn(o: Record<string, unknown>, source: string): Policy | undefined {
  const spec = o.spec;
  if (!isObject(spec)) return undefined;
  const parses = (s: Record<string, unknown>): unknown => specError(o, s, source);
  const written = Array.isArray(spec.policyTypes) && spec.policyTypes.length > 0 ? spec.policyTypes : undefined;
  const policyTypes = written ?? ['Ingress', ...(Array.isArray(spec.egress) && spec.egress.length > 0 ? ['Egress'] : [])];
  const base: Record<string, unknown> = { ...(spec.podSelector !== undefined ? { podSelector: spec.podSelector } : {}), policyTypes };
  if (parses(base) !== undefined) return undefined;
  const out = { ...base };
  for (const field of ['ingress', 'egress'] as const) {
    const list = spec[field];
    if (list === undefined || list === null) continue;
    if (!Array.isArray(list)) return undefined;
    const kept: unknown[] = [];
    for (const rule of list as unknown[]) {
      const err = parses({ ...base, [field]: [rule] });
      if (err === undefined) kept.push(rule);
      else if (!unsupported(err)) return undefined;
    }
    out[field] = kept;
  }
  try {
    return parseManifest({ apiVersion: o.apiVersion, kind: o.kind, metadata: o.metadata, spec: out }, source);
  } catch {
    return undefined;
  }
}

/** The experimental ClusterNetworkPolicy peers distill refuses (src/policy/clusternetworkpolicy.ts). */
const EXPERIMENTAL_PEERS = ['domainNames'];

/**
 * A ClusterNetworkPolicy whose peers include an experimental one distill does not read, or a rule
 * it does not support (e.g. a named port beside networks, which the standard CRD accepts): each such
 * peer or rule's peers become one distill does not know, which the API makes fail closed (an Accept rule's peer
 * matches nothing, a Deny or Pass rule with one denies everything: apis/v1alpha2
 * clusternetworkpolicy_types.go, ClusterNetworkPolicyIngressPeer / EgressPeer).
 */
function clusterNetworkPolicyStandIn(o: Record<string, unknown>, source: string, options: ParseOptions): Policy | undefined {
  const spec = withoutUnknownSpecFields(o.spec, (subject) => readableSubject(o, subject, source, options));
  if (!isObject(spec)) return undefined;
  const rewrite = (list: unknown, peers: 'from' | 'to'): unknown =>
    Array.isArray(list) ? list.map((r: unknown) => unreadRule(o, spec, withUnknownPeers(r, peers), peers, source, options)) : list;
  const rewritten = { ...spec, ...(spec.ingress !== undefined ? { ingress: rewrite(spec.ingress, 'from') } : {}), ...(spec.egress !== undefined ? { egress: rewrite(spec.egress, 'to') } : {}) };
  try {
    return parseManifest({ ...o, spec: rewritten }, source, options);
  } catch {
    return undefined;
  }
}

const CNP_SPEC_FIELDS = ['tier', 'priority', 'subject', 'ingress', 'egress'];

/**
 * A spec field of a newer ClusterNetworkPolicy CRD, or a field of its subject distill does not know,
 * may narrow the subject or the rules: with it left out, only the Deny rules are kept (a wider Deny
 * denies more) and each Pass becomes a Deny (dropped, it would let a lower-priority Accept decide the
 * flow; a Deny is never more open than a Pass: review of 1915); Accept rules are dropped (attack
 * findings 712, 1915). A subject with no known field left has no stand-in.
 */
function withoutUnknownSpecFields(spec: unknown, readable: (subject: unknown) => unknown): unknown {
  if (!isObject(spec)) return spec;
  const subject = readable(pruned(spec.subject, SUBJECT));
  if (Object.keys(spec).every((k) => CNP_SPEC_FIELDS.includes(k)) && subject === spec.subject) return spec;
  const denies = (list: unknown): unknown => (Array.isArray(list) ? list.filter(isDenyOrPass).map((r) => (r.action === 'Pass' ? { ...r, action: 'Deny' } : r)) : list);
  const out: Record<string, unknown> = {};
  for (const k of CNP_SPEC_FIELDS) if (spec[k] !== undefined) out[k] = k === 'ingress' || k === 'egress' ? denies(spec[k]) : spec[k];
  return { ...out, subject };
}

/**
 * The subject with every selector entry Kubernetes' LabelSelectorAsSelector refuses left out (an operator `in`, `In`
 * without values, an invalid key or value: the CRD checks the selector's shape only, so the API server stores it;
 * clusternetworkpolicy.ts reads it as "not supported"). A LabelSelector ANDs its entries, so the rest selects every pod
 * the written subject could select; with it, withoutUnknownSpecFields keeps the Deny rules only (each Pass a Deny) and
 * the policy's denies stay enforced instead of the agent skipping it (attack finding 2230). The same object when the
 * subject reads, or when some entry is refused for another reason (the stand-in then fails as before).
 */
function readableSubject(o: Record<string, unknown>, subject: unknown, source: string, options: ParseOptions): unknown {
  const spec = isObject(o.spec) ? o.spec : {};
  const reads = (s: unknown): boolean => {
    try {
      parseManifest({ ...o, spec: { tier: spec.tier, priority: spec.priority, subject: s } }, source, options);
      return true;
    } catch (e) {
      return !unsupported(e);
    }
  };
  if (!isObject(subject) || reads(subject)) return subject;
  // Each entry is tried alone in its selector's place; the entries that read are kept.
  const kept = (sel: unknown, alone: (sel: Record<string, unknown>) => Record<string, unknown>): unknown => {
    if (!isObject(sel)) return sel;
    const labels = isObject(sel.matchLabels) ? Object.entries(sel.matchLabels).filter(([k, v]) => reads(alone({ matchLabels: { [k]: v } }))) : undefined;
    const exprs = Array.isArray(sel.matchExpressions) ? sel.matchExpressions.filter((e: unknown) => reads(alone({ matchExpressions: [e] }))) : undefined;
    return { ...(labels !== undefined ? { matchLabels: Object.fromEntries(labels) } : {}), ...(exprs !== undefined ? { matchExpressions: exprs } : {}) };
  };
  const out: Record<string, unknown> = { ...subject };
  if (subject.namespaces !== undefined) out.namespaces = kept(subject.namespaces, (sel) => ({ namespaces: sel }));
  const pods = subject.pods;
  if (isObject(pods)) {
    out.pods = {
      ...pods,
      ...(pods.podSelector !== undefined ? { podSelector: kept(pods.podSelector, (sel) => ({ pods: { podSelector: sel } })) } : {}),
      ...(pods.namespaceSelector !== undefined ? { namespaceSelector: kept(pods.namespaceSelector, (sel) => ({ pods: { podSelector: {}, namespaceSelector: sel } })) } : {}),
    };
  }
  return out;
}

const isDenyOrPass = (r: unknown): r is Record<string, unknown> => isObject(r) && (r.action === 'Deny' || r.action === 'Pass');

/** Fields distill reads, by object: a field maps to its own schema (null: read whole), a list to its items' schema. */
interface Schema {
  readonly fields: ReadonlyMap<string, Schema | null>;
  readonly list?: boolean;
}
const schemaOf = (entries: [string, Schema | null][], list = false): Schema => ({ fields: new Map(entries), list });
const SELECTOR = schemaOf([['matchLabels', null], ['matchExpressions', schemaOf([['key', null], ['operator', null], ['values', null]], true)]]);
/** A ClusterNetworkPolicy subject as src/policy/clusternetworkpolicy.ts reads it. */
const SUBJECT = schemaOf([['namespaces', SELECTOR], ['pods', schemaOf([['namespaceSelector', SELECTOR], ['podSelector', SELECTOR]])]]);

/** `v` without the fields `schema` does not know (the API server's pruning); the same object when it has none. */
function pruned(v: unknown, schema: Schema | null): unknown {
  if (schema === null) return v;
  if (schema.list === true) {
    if (!Array.isArray(v)) return v;
    const items = v.map((x: unknown) => pruned(x, { fields: schema.fields }));
    return items.every((x, i) => x === v[i]) ? v : items;
  }
  if (!isObject(v)) return v;
  let changed = false;
  const out: [string, unknown][] = [];
  for (const [k, x] of Object.entries(v)) {
    const sub = schema.fields.get(k);
    if (sub === undefined) changed = true;
    else {
      const p = pruned(x, sub);
      changed ||= p !== x;
      out.push([k, p]);
    }
  }
  return changed ? Object.fromEntries(out) : v;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A rule whose experimental peers become one peer distill does not know. */
function withUnknownPeers(r: unknown, peers: 'from' | 'to'): unknown {
  if (!isObject(r) || !Array.isArray(r[peers])) return r;
  return { ...r, [peers]: (r[peers] as unknown[]).map(unknownPeer) };
}

function unknownPeer(p: unknown): unknown {
  if (!isObject(p)) return p;
  const fields = Object.keys(p).filter((k) => EXPERIMENTAL_PEERS.includes(k));
  return fields.length === 0 ? p : { notReadByDistill: fields };
}

/** A rule distill cannot read otherwise ("not supported") keeps its name and action and gets one unknown peer. */
function unreadRule(o: Record<string, unknown>, spec: Record<string, unknown>, r: unknown, peers: 'from' | 'to', source: string, options: ParseOptions): unknown {
  const field = peers === 'from' ? 'ingress' : 'egress';
  try {
    parseManifest({ ...o, spec: { ...spec, ingress: undefined, egress: undefined, [field]: [r] } }, source, options);
    return r;
  } catch (e) {
    if (!unsupported(e) || !isObject(r)) return r;
    const { name, action } = r;
    return { ...(name !== undefined ? { name } : {}), action, [peers]: [{ notReadByDistill: ['rule'] }] };
  }
}

/**
 * The deny side of a policy (finding 2433): its subjects isolated as the policy isolates them, its deny rules, and
 * for a ClusterNetworkPolicy its Deny and Pass rules in their order; no allow rule and no Accept. What the agent holds
 * for a policy the engine refuses alone: it allows nothing the policy would not (an allow dropped is never wider; an
 * Accept dropped lets the flow meet the later rules, which at most allow it too), and keeps every deny the policy adds.
 * With `kept` (the version in force, not tiered): its deny rules and its isolation too, so that no deny and no
 * isolation is removed (finding 2523, and 2670 for the isolation: while an identity waits, either removed may admit its
 * number); more denies and more isolation never allow more.
 */
export function denySideOf(policy: Policy, kept?: Policy): Policy {
  if (kept?.tiered && policy.tiered) return markParsedPolicy({ ...policy, tiered: tieredDenySide(policy.tiered, kept.tiered) });
  const tiered = policy.tiered && { ...policy.tiered, rules: policy.tiered.rules.filter((r) => r.action !== 'Accept') };
  const denies = policy.rules.filter((r) => r.verdict === 'deny');
  if (!kept || policy.tiered || kept.tiered) return markParsedPolicy({ ...policy, rules: denies, ...(tiered ? { tiered } : {}) });
  denies.push(...kept.rules.filter((r) => r.verdict === 'deny').map(keptRule));
  const enforcements = [...policy.enforcements, ...kept.enforcements.map((e) => ({ ...e, origin: keptOrigin(e.origin) }))];
  return markParsedPolicy({ ...policy, rules: denies, enforcements });
}

/**
 * The deny side of a ClusterNetworkPolicy beside the version in force `kept` (finding 2671): every Deny and Pass rule of
 * both versions as a Deny, no Accept, for a subject covering both versions' (`coveringSelector`: one spec holds one
 * subject; with kept's alone the pods only the new version selects lost its Denies, finding 2800), placed where every
 * flow meeting either version meets it first (`formPlacement`). Never wider than either version, for any pod and
 * whatever the other policies are (they change while it is held, finding 3540): it allows nothing itself, so a flow
 * it lets through matched no Deny or Pass of either version (a Pass of another policy at its priority wins only then,
 * Deny winning over Pass), and the rest decide it as without the policy, which a version's Accept only opens more. A
 * flow a version denies or passes it denies, no later (a Pass kept as a Pass at a higher precedence would skip
 * policies that version let decide first). When `kept` is itself such a form, it places by the version that form
 * stands for (`standsFor`), never by an older one the cluster no longer has (finding 3300).
 */
function tieredDenySide(spec: TieredSpec, kept: TieredSpec): TieredSpec {
  const [own, keptOwn] = [placementOf(spec), placementOf(kept)];
  const { tier, priority } = formPlacement(own, keptOwn);
  const next = new Map<Direction, number>();
  const rules: TierRule[] = [];
  for (const r of [...spec.rules, ...kept.rules.map((k) => ({ ...k, path: k.path.startsWith('kept:') ? k.path : `kept:${k.path}` }))]) {
    if (r.action === 'Accept') continue;
    // Every rule denies, so their order decides nothing: indexes past the engine's limit share the last one.
    const index = Math.min(next.get(r.direction) ?? 0, RULES_PER_DIRECTION - 1);
    next.set(r.direction, index + 1);
    rules.push({ ...r, index, action: 'Deny' });
  }
  return { ...spec, subject: coveringSelector(spec.subject, kept.subject), tier, priority, rules, standsFor: own };
}

/**
 * Where a form for two versions sits: in their tier at the lower priority, so that every flow meeting either version
 * meets the form first (a Pass above the form skips both). Versions in different tiers: Admin priority 0, which no
 * other policy's Pass precedes (at priority 0 the form's Deny wins over it). At the Admin version's priority a later
 * Pass above it skipped the form but not the Baseline version, which denied after it (finding 3540).
 */
function formPlacement(a: TierPlacement, b: TierPlacement): TierPlacement {
  if (a.tier !== b.tier) return { tier: 'Admin', priority: MIN_PRIORITY };
  return { tier: a.tier, priority: Math.min(a.priority, b.priority) };
}

/** Where the version a spec stands for sits: a held deny side's `standsFor`, else the spec's own placement. */
function placementOf(s: TieredSpec): TierPlacement {
  return s.standsFor ?? { tier: s.tier, priority: s.priority };
}

/** A deny rule of the version in force, its path marked so it never shares a rule's identity with the new version's. */
function keptRule(r: PolicyRule): PolicyRule {
  return { ...r, origin: keptOrigin(r.origin) };
}

function keptOrigin(o: RuleOrigin): RuleOrigin {
  return o.path.startsWith('kept:') ? o : { ...o, path: `kept:${o.path}` };
}

/**
 * The deny-all side of a policy (finding 2542): what the agent holds for a policy whose deny side (`denySideOf`) the
 * engine refuses too (its denies alone overflow a map). Its subjects stay isolated as the policy isolates them, and
 * where the policy denies (a deny rule's subject and direction; a ClusterNetworkPolicy's direction with a Deny or Pass
 * rule) every peer on every port is denied: an endpoint so holds one deny entry per such direction, as a fail-closed
 * pod's empty map denies both ways. Never wider than the deny side: it allows nothing, and denies a superset of what
 * the deny side denies (a Pass becomes a Deny at the policy's priority, which lets no later tier allow more).
 */
export function denyAllSideOf(policy: Policy, kept?: Policy): Policy {
  const side = denySideOf(policy, kept);
  if (side.tiered) {
    const rules: TierRule[] = [];
    for (const direction of ['ingress', 'egress'] as const) {
      if (!side.tiered.rules.some((r) => r.direction === direction)) continue;
      rules.push({ direction, index: 0, name: 'deny-all (deny side refused)', action: 'Deny', peers: [{ kind: 'unknown', fields: ['denyAllSide'] }], protocols: [], path: `denyAll:spec.${direction}` });
    }
    return markParsedPolicy({ ...side, tiered: { ...side.tiered, rules } });
  }
  const seen = new Map<string, PolicyRule>();
  for (const r of side.rules) {
    const key = `${r.direction} ${r.subject.key}`;
    if (!seen.has(key)) seen.set(key, denyEverything(r));
  }
  return markParsedPolicy({ ...side, rules: [...seen.values()] });
}

/** A rule denying every peer on every port to `r`'s subject in its direction. */
function denyEverything(r: PolicyRule): PolicyRule {
  return { origin: { ...r.origin, path: `denyAll:${r.origin.path}` }, subject: r.subject, direction: r.direction, verdict: 'deny', peers: [{ kind: 'selector', selector: WILDCARD_SELECTOR, entity: 'all' }], ports: [{ l4: ALL_L4 }] };
}
