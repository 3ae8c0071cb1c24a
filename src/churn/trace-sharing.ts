import type { ContainerPort } from '../model/ports.js';
import { sealedLabels, sealedPorts } from '../model/sealed-pod.js';
import { ParsedPolicyBase, Peer, Policy, PolicyRule, policyRefKey, PortClause } from '../model/rules.js';
import type { Selector } from '../model/selector.js';

/**
 * How a parsed trace stays small in the heap: one copy of each distinct label map, port list,
 * selector and peer list, and policies that keep their manifest as text. Label maps and port lists
 * are sealed (src/model/sealed-pod.ts), as the trace's pods are: the engine keeps them uncopied.
 */

/**
 * A trace's policy keeps its manifest as JSON text, parsed again when read: the engine keeps every
 * policy it is given, and nothing in a replay reads the manifest, while a parsed one costs ~1 KB
 * of heap per policy (3× its text; 31 of the cilium-ci replay's MB).
 */
class TracePolicy extends ParsedPolicyBase implements Policy {
  // `declare`: an absent optional field stays absent, as in the parser's objects.
  declare readonly ref: Policy['ref'];
  declare readonly rules: Policy['rules'];
  declare readonly enforcements: Policy['enforcements'];
  declare readonly warnings?: Policy['warnings'];
  declare readonly tiered?: Policy['tiered'];
  /** Null when the trace was read with `manifests: false`. */
  readonly #manifestText: string | null;
  readonly #source: string;

  /** Fields assigned one by one (not Object.assign), so V8 lays them out in the object. */
  /** `source`: the trace's name (one string for all its policies). */
  constructor(policy: Policy, manifestText: string | null, source: string) {
    super();
    const { manifest: _, ref, rules, enforcements, warnings, tiered, ...rest } = policy;
    // A field added to Policy must be copied here: this stops compiling until it is.
    const uncopied: Record<string, never> = rest;
    if (Object.keys(uncopied).length > 0) throw new Error(`internal: TracePolicy does not copy ${Object.keys(uncopied).join(', ')}`);
    this.ref = ref;
    this.rules = rules;
    this.enforcements = enforcements;
    if (warnings !== undefined && warnings.length > 0) this.warnings = warnings;
    if (tiered !== undefined) this.tiered = tiered;
    this.#manifestText = manifestText;
    this.#source = source;
  }

  /** A fresh copy on every read, equal to the manifest as given (JSON round-trips exactly). */
  get manifest(): Readonly<Record<string, unknown>> {
    if (this.#manifestText === null) throw new Error(`the manifest of ${policyRefKey(this.ref)} was not kept (${this.#source} read with manifests: false)`);
    return JSON.parse(this.#manifestText) as Record<string, unknown>;
  }
}

export function compactPolicy(policy: Policy, manifestText: string | null, shared: SharedValues): Policy {
  const rules = sameOrMapped(policy.rules, (r) => shared.rule(r));
  const enforcements = sameOrMapped(policy.enforcements, (e) => {
    const subject = shared.selector(e.subject);
    return subject === e.subject ? e : { ...e, subject };
  });
  return new TracePolicy({ ...policy, rules, enforcements }, manifestText, shared.source);
}

/** The parser's own array when `f` changes none of its elements (kept, not left as garbage for a copy). */
function sameOrMapped<T>(list: readonly T[], f: (x: T) => T): readonly T[] {
  const mapped = list.map(f);
  return mapped.every((x, i) => x === list[i]) ? list : mapped;
}

/**
 * One frozen copy of each distinct pod label map and port list of a trace (the pods of an
 * identity repeat them; the engine keeps every pod it is given). Label maps are built with fast
 * properties and no prototype: a map made with Object.create(null) is a ~170-byte dictionary.
 */
export class SharedValues {
  constructor(readonly source: string) {}

  private readonly labelMaps = new Map<string, Readonly<Record<string, string>>>();
  private readonly portLists = new Map<string, readonly ContainerPort[]>();
  private readonly selectors = new Map<string, Selector>();
  private readonly peerLists = new Map<string, readonly Peer[]>();
  private readonly portClauses = new Map<string, readonly PortClause[]>();

  labels(labels: Readonly<Record<string, string>>): Readonly<Record<string, string>> {
    const key = JSON.stringify(Object.entries(labels));
    let hit = this.labelMaps.get(key);
    if (hit === undefined) this.labelMaps.set(key, (hit = sealedLabels(labels)));
    return hit;
  }

  /** Equal keys select alike (makeSelector's contract): one selector object per key, with its requirements. */
  selector(sel: Selector): Selector {
    const hit = this.selectors.get(sel.key);
    if (hit !== undefined) return hit;
    this.selectors.set(sel.key, sel);
    return sel;
  }

  /**
   * The rule with shared selectors, peer lists and port lists (a copy only if one changed: its
   * origin stays its own). Equal keys mean equal lists: a peer is its kind, selector key and entity,
   * or its CIDR and exceptions (canonical texts); a port list is its JSON.
   */
  rule(rule: PolicyRule): PolicyRule {
    const subject = this.selector(rule.subject);
    const peers = this.peerList(rule.peers);
    const ports = this.shared(this.portClauses, JSON.stringify(rule.ports), rule.ports);
    return subject === rule.subject && peers === rule.peers && ports === rule.ports ? rule : { ...rule, subject, peers, ports };
  }

  private peerList(peers: readonly Peer[]): readonly Peer[] {
    const key = JSON.stringify(peers.map((p) => (p.kind === 'selector' ? ['s', p.selector.key, p.entity ?? null] : p.kind === 'nodes' ? ['n', p.selector.key] : p.kind === 'cidrGroup' ? ['g', p.selector.key, p.mode, p.except.map((c) => c.text)] : ['c', p.cidr.text, p.except.map((c) => c.text)])));
    const hit = this.peerLists.get(key);
    if (hit !== undefined) return hit;
    // First of its key: kept, with its label selectors shared.
    const own = peers.map((p) => {
      if (p.kind !== 'selector') return p;
      const selector = this.selector(p.selector);
      return selector === p.selector ? p : { ...p, selector };
    });
    const list = own.every((p, i) => p === peers[i]) ? peers : own;
    this.peerLists.set(key, list);
    return list;
  }

  private shared<T>(m: Map<string, T>, key: string, value: T): T {
    const hit = m.get(key);
    if (hit !== undefined) return hit;
    m.set(key, value);
    return value;
  }

  ports(ports: readonly ContainerPort[]): readonly ContainerPort[] {
    const key = JSON.stringify(ports);
    let hit = this.portLists.get(key);
    if (hit === undefined) this.portLists.set(key, (hit = sealedPorts(ports)));
    return hit;
  }
}
