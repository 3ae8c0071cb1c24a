/**
 * Compound operations for mixed histories (attack round 18e): each names existing objects by index
 * into the model before the transaction, so that deletes, address reuse and relabels hit live pods
 * and policies instead of being refused. They add to gen-all.ts what it keeps apart: a pod's address
 * taken by another pod (or the same pod re-created with other labels) in one transaction, two pods
 * exchanging addresses, a namespace and one of its pods relabelled together, container ports changed
 * alone (named ports under deny rules), a DNS answer with a clock step, and any live policy deleted.
 */
import fc from 'fast-check';
import type { EngineEvent } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import type { ClusterState, Pod } from '../../src/model/cluster.js';
import { AllOp, allOp, toEvents } from './gen-all.js';
import { toEvent, tierHeavyOp } from './gen.js';

const NAMESPACES = ['n0', 'n1', 'n2'];
const POD_NAMES = ['p0', 'p1', 'p2', 'p3'];
const DNS_NAMES = ['a.example.com', 'b.example.com', 'x.cilium.io'];
const LEARNT_IPS = ['198.51.100.1', '198.51.100.2', '203.0.113.7', '192.168.1.5', '10.244.0.3'];

const podLabels = fc.record({ app: fc.constantFrom('web', 'db', 'api'), tier: fc.constantFrom('front', 'back') }, { requiredKeys: [] });
const nsLabels = fc.record({ team: fc.constantFrom('a', 'b') }, { requiredKeys: [] });
const ports = fc.nat({ max: 4 });
const pick = fc.nat({ max: 15 });

export type MixOp =
  | { readonly k: 'all'; readonly op: AllOp }
  | { readonly k: 'reuse'; readonly victim: number; readonly ns: string; readonly name: string; readonly labels: Record<string, string>; readonly ports: number; readonly local: boolean }
  | { readonly k: 'exchange'; readonly a: number; readonly b: number; readonly labels?: Record<string, string> }
  | { readonly k: 'relabel'; readonly a: number; readonly nsLabels: Record<string, string>; readonly labels: Record<string, string> }
  | { readonly k: 'ports'; readonly a: number; readonly ports: number }
  | { readonly k: 'dropPolicy'; readonly a: number }
  | { readonly k: 'family'; readonly a: number; readonly shape: number }
  | { readonly k: 'answer'; readonly a: number; readonly name: string; readonly ips: string[]; readonly ttl: number; readonly seconds: number };

export const mixOp: fc.Arbitrary<MixOp> = fc.oneof(
  { weight: 8, arbitrary: allOp.map((op): MixOp => ({ k: 'all', op })) },
  { weight: 3, arbitrary: tierHeavyOp.map((op): MixOp => ({ k: 'all', op: { k: 'base', op, ip: 0 } })) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('reuse' as const), victim: pick, ns: fc.constantFrom(...NAMESPACES), name: fc.constantFrom(...POD_NAMES), labels: podLabels, ports, local: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('exchange' as const), a: pick, b: pick, labels: podLabels }, { requiredKeys: ['k', 'a', 'b'] }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('relabel' as const), a: pick, nsLabels, labels: podLabels }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('ports' as const), a: pick, ports }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('dropPolicy' as const), a: pick }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('family' as const), a: pick, shape: fc.nat({ max: 4 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('answer' as const), a: pick, name: fc.constantFrom(...DNS_NAMES), ips: fc.subarray(LEARNT_IPS, { minLength: 1, maxLength: 2 }), ttl: fc.integer({ min: 0, max: 4 }), seconds: fc.integer({ min: 0, max: 3 }) }) },
);

const nth = <T>(xs: readonly T[], i: number): T | undefined => (xs.length === 0 ? undefined : xs[i % xs.length]);
const podOf = (s: ClusterState, i: number): Pod | undefined => nth([...s.pods.values()].sort((x, y) => (`${x.namespace}/${x.name}` < `${y.namespace}/${y.name}` ? -1 : 1)), i);
const keyOf = (p: Pod): string => `${p.namespace}/${p.name}`;
const upsert = (p: Pod, local: ReadonlyMap<string, boolean>): EngineEvent => ({ type: 'upsertPod', pod: p, local: local.get(keyOf(p)) ?? false });

/**
 * A pod's addresses in another shape (IPv4 only, dual-stack either way round, IPv6 only), its IPv6
 * address inside the generated CIDRs (2001:db8::/32) or outside them (fd00::/8), one per pod name
 * and namespace: what the address-family split (`/0` networks peers) and IPv6 networks depend on.
 */
function withFamily(p: Pod, shape: number): Pod {
  const v4 = p.ips?.find((ip) => ip.family === 'ipv4') ?? (p.ip.family === 'ipv4' ? p.ip : parseIp(`10.244.${NAMESPACES.indexOf(p.namespace)}.${POD_NAMES.indexOf(p.name) + 2}`));
  const suffix = `${NAMESPACES.indexOf(p.namespace) + 1}${POD_NAMES.indexOf(p.name) + 1}`;
  const v6 = parseIp(shape % 2 === 0 ? `2001:db8::a:${suffix}` : `fd00::a:${suffix}`);
  const { ips: _, ...rest } = p;
  switch (shape) {
    case 0:
    case 1:
      return { ...rest, ip: v4, ips: [v4, v6] };
    case 2:
      return { ...rest, ip: v6, ips: [v6, v4] };
    case 3:
      return { ...rest, ip: v6 };
    default:
      return { ...rest, ip: v4 };
  }
}

/** `p` with the addresses of `from` (dual-stack ones included). */
function addressesOf(p: Pod, from: Pod): Pod {
  const { ips: _, ...rest } = p;
  return { ...rest, ip: from.ip, ...(from.ips ? { ips: from.ips } : {}) };
}

/** The events of `o` against the model before the transaction and the pods' locality (none when it names nothing live). */
export function mixEvents(s: ClusterState, local: ReadonlyMap<string, boolean>, o: MixOp): EngineEvent[] {
  switch (o.k) {
    case 'all':
      return toEvents(o.op);
    case 'reuse': {
      const victim = podOf(s, o.victim);
      if (!victim) return [];
      const fresh = toEvent({ k: 'pod', ns: o.ns, name: o.name, labels: o.labels, ports: o.ports, local: o.local });
      if (fresh.type !== 'upsertPod') throw new Error('unreachable');
      return [{ type: 'deletePod', namespace: victim.namespace, name: victim.name }, { ...fresh, pod: { ...fresh.pod, ip: victim.ip } }];
    }
    case 'exchange': {
      const a = podOf(s, o.a);
      const b = podOf(s, o.b);
      if (!a || !b || a === b) return [];
      return [upsert({ ...addressesOf(a, b), ...(o.labels ? { labels: o.labels } : {}) }, local), upsert(addressesOf(b, a), local)];
    }
    case 'relabel': {
      const a = podOf(s, o.a);
      if (!a) return [];
      return [{ type: 'upsertNamespace', name: a.namespace, labels: o.nsLabels }, upsert({ ...a, labels: o.labels }, local)];
    }
    case 'ports': {
      const a = podOf(s, o.a);
      const shaped = toEvent({ k: 'pod', ns: 'n0', name: 'p0', labels: {}, ports: o.ports, local: false });
      if (!a || shaped.type !== 'upsertPod') return [];
      return [upsert({ ...a, ports: shaped.pod.ports }, local)];
    }
    case 'family': {
      const a = podOf(s, o.a);
      return a ? [upsert(withFamily(a, o.shape), local)] : [];
    }
    case 'dropPolicy': {
      const p = nth([...s.policies.values()], o.a);
      return p ? [{ type: 'deletePolicy', ref: p.ref }] : [];
    }
    case 'answer': {
      const a = nth([...s.pods.values()].filter((p) => local.get(keyOf(p))), o.a);
      if (!a) return [{ type: 'advanceTime', seconds: o.seconds }];
      return [{ type: 'dnsResponse', endpoint: keyOf(a), name: o.name, ips: o.ips.map(parseIp), ttl: o.ttl }, { type: 'advanceTime', seconds: o.seconds }];
    }
  }
}
