/**
 * Tier and toFQDNs churn (attack round 20e) on top of gen-mix.ts's mixed histories: what the other
 * generators keep apart, each in one transaction:
 * - `swap`: two live ClusterNetworkPolicies exchange their priorities (maybe their tiers too), so
 *   an equal-priority group forms or dissolves and an order flips in place (gen.ts gives each name
 *   its own priorities);
 * - `move`: one live ClusterNetworkPolicy's priority or tier changed in place, rules unchanged;
 * - `stack`: an Admin Pass, an Admin Deny of the same priority, a Baseline Deny and a NetworkPolicy
 *   allow under them, each put in or taken out (a Pass appearing while the allow and the Baseline
 *   deny exist);
 * - `pair`: two ClusterNetworkPolicies of priorities 5 or 6 (equal or not, either tier) upserted
 *   together;
 * - `readd`: a toFQDNs policy deleted, the clock stepped (answers expire), the policy re-added with
 *   other selectors and ports and an answer learnt, all in one transaction;
 * - `shared`: one address answered for two names that policies allow on different ports, with
 *   different TTLs, and a clock step.
 */
import fc from 'fast-check';
import type { EngineEvent } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import type { ClusterState } from '../../src/model/cluster.js';
import { type Policy, policyRefKey } from '../../src/model/rules.js';
import { parseManifest } from '../../src/policy/manifest.js';
import { ACTIONS, tierRule, tierSubject } from './gen.js';
import { mixEvents, MixOp, mixOp } from './gen-mix.js';

const NAMESPACES = ['n0', 'n1', 'n2'];
const pick = fc.nat({ max: 15 });
const tierName = fc.constantFrom('Admin', 'Baseline');

export type ChurnOp =
  | { readonly k: 'mix'; readonly op: MixOp }
  | { readonly k: 'swap'; readonly a: number; readonly b: number; readonly tiers: boolean }
  | { readonly k: 'move'; readonly a: number; readonly priority: number; readonly flip: boolean }
  | { readonly k: 'stack'; readonly which: number; readonly present: boolean }
  | { readonly k: 'pair'; readonly manifests: readonly Record<string, unknown>[] }
  | { readonly k: 'readd'; readonly ns: string; readonly fqdns: number; readonly seconds: number; readonly answer: number; readonly ttl: number; readonly early: boolean }
  | { readonly k: 'shared'; readonly a: number; readonly ip: string; readonly ttls: readonly [number, number]; readonly seconds: number };

const cnp = (name: string, tier: string, priority: number, spec: Record<string, unknown>): Record<string, unknown> => ({
  apiVersion: 'policy.networking.k8s.io/v1alpha2',
  kind: 'ClusterNetworkPolicy',
  metadata: { name },
  spec: { tier, priority, ...spec },
});
const everyNs = { namespaces: {} };

/** The stack: Admin Pass and Admin Deny at one priority, a Baseline Deny, a NetworkPolicy allow in each namespace. */
const STACK: readonly Record<string, unknown>[] = [
  cnp('cnp-pass', 'Admin', 5, { subject: everyNs, ingress: [{ name: 'pass', action: 'Pass', from: [everyNs] }], egress: [{ name: 'pass', action: 'Pass', to: [everyNs] }] }),
  cnp('cnp-pass-web', 'Admin', 5, { subject: { pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: 'web' } } } }, ingress: [{ name: 'deny', action: 'Deny', from: [{ namespaces: { matchLabels: { team: 'a' } } }], protocols: [{ tcp: { destinationPort: { number: 80 } } }] }] }),
  cnp('cnp-bdeny', 'Baseline', 5, { subject: everyNs, ingress: [{ name: 'deny', action: 'Deny', from: [everyNs] }], egress: [{ name: 'deny', action: 'Deny', to: [everyNs] }] }),
  ...NAMESPACES.map((ns) => ({
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name: 'np-stack', namespace: ns },
    spec: { podSelector: {}, policyTypes: ['Ingress', 'Egress'], ingress: [{ from: [{ namespaceSelector: {} }], ports: [{ port: 80 }, { port: 'http' }] }], egress: [{ to: [{ podSelector: { matchLabels: { app: 'db' } }, namespaceSelector: {} }] }] },
  })),
];
const STACK_POLICIES = STACK.map((m) => parseManifest(m, 'gen-churn#stack'));

const pairBody = fc.record({ tier: tierName, priority: fc.constantFrom(5, 6), subject: tierSubject, ingress: fc.array(tierRule('ingress', ACTIONS), { maxLength: 2 }), egress: fc.array(tierRule('egress', ACTIONS), { maxLength: 2 }) });

/** toFQDNs rules: two names on different ports, a pattern with L7, a name with no port. */
const FQDN_RULES: readonly Record<string, unknown>[] = [
  { toFQDNs: [{ matchName: 'a.example.com' }], toPorts: [{ ports: [{ port: '443', protocol: 'TCP' }] }] },
  { toFQDNs: [{ matchName: 'b.example.com' }], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] },
  { toFQDNs: [{ matchPattern: '*.example.com' }], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }], rules: { http: [{ method: 'GET' }] } }] },
  { toFQDNs: [{ matchName: 'x.cilium.io' }] },
];
const DNS_ALLOW = { toEndpoints: [{}], toPorts: [{ ports: [{ port: '53', protocol: 'ANY' }], rules: { dns: [{ matchPattern: '*' }] } }] };
const fqdnPolicy = (ns: string, mask: number): Record<string, unknown> => ({
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumNetworkPolicy',
  metadata: { name: 'fq-a', namespace: ns },
  spec: { endpointSelector: {}, egress: [DNS_ALLOW, ...FQDN_RULES.filter((_, i) => (mask >> i) & 1)] },
});
const ANSWER_NAMES = ['a.example.com', 'b.example.com', 'x.cilium.io'];
const SHARED_IPS = ['198.51.100.1', '203.0.113.7', '192.168.1.5'];

export const churnOp: fc.Arbitrary<ChurnOp> = fc.oneof(
  { weight: 8, arbitrary: mixOp.map((op): ChurnOp => ({ k: 'mix', op })) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('swap' as const), a: pick, b: pick, tiers: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('move' as const), a: pick, priority: fc.constantFrom(1, 5, 6, 20), flip: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('stack' as const), which: fc.nat({ max: STACK.length - 1 }), present: fc.boolean() }) },
  { weight: 2, arbitrary: fc.tuple(pairBody, pairBody).map(([a, b]): ChurnOp => ({ k: 'pair', manifests: [cnp('cnp-w0', a.tier, a.priority, a), cnp('cnp-w1', b.tier, b.priority, b)] })) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('readd' as const), ns: fc.constantFrom(...NAMESPACES), fqdns: fc.integer({ min: 1, max: 15 }), seconds: fc.integer({ min: 0, max: 4 }), answer: fc.nat({ max: 15 }), ttl: fc.integer({ min: 1, max: 4 }), early: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('shared' as const), a: pick, ip: fc.constantFrom(...SHARED_IPS), ttls: fc.tuple(fc.integer({ min: 0, max: 4 }), fc.integer({ min: 0, max: 4 })), seconds: fc.integer({ min: 0, max: 3 }) }) },
);

const nth = <T>(xs: readonly T[], i: number): T | undefined => (xs.length === 0 ? undefined : xs[i % xs.length]);
const tiered = (s: ClusterState): Policy[] => [...s.policies.values()].filter((p) => p.tiered !== undefined);
const localPods = (s: ClusterState, local: ReadonlyMap<string, boolean>): string[] => [...s.pods.values()].map((p) => `${p.namespace}/${p.name}`).filter((k) => local.get(k));

/** `p`'s manifest with another tier and priority (the rules as they were). */
function moved(p: Policy, tier: string, priority: number): EngineEvent {
  const m = p.manifest as { spec: Record<string, unknown> };
  return { type: 'upsertPolicy', policy: parseManifest({ ...p.manifest, spec: { ...m.spec, tier, priority } }, 'gen-churn#move') };
}

/** The events of `o` against the model before the transaction (none when it names nothing live). */
export function churnEvents(s: ClusterState, local: ReadonlyMap<string, boolean>, o: ChurnOp): EngineEvent[] {
  switch (o.k) {
    case 'mix':
      return mixEvents(s, local, o.op);
    case 'swap': {
      const a = nth(tiered(s), o.a);
      const b = nth(tiered(s), o.b);
      if (!a?.tiered || !b?.tiered || a === b) return [];
      return [moved(a, o.tiers ? b.tiered.tier : a.tiered.tier, b.tiered.priority), moved(b, o.tiers ? a.tiered.tier : b.tiered.tier, a.tiered.priority)];
    }
    case 'move': {
      const a = nth(tiered(s), o.a);
      if (!a?.tiered) return [];
      return [moved(a, o.flip === (a.tiered.tier === 'Admin') ? 'Baseline' : 'Admin', o.priority)];
    }
    case 'stack': {
      const p = STACK_POLICIES[o.which] as Policy;
      if (o.present) return [{ type: 'upsertPolicy', policy: p }];
      return s.policies.has(policyRefKey(p.ref)) ? [{ type: 'deletePolicy', ref: p.ref }] : [];
    }
    case 'pair':
      return o.manifests.map((m) => ({ type: 'upsertPolicy', policy: parseManifest(m, 'gen-churn#pair') }));
    case 'readd': {
      const ref = { kind: 'CiliumNetworkPolicy' as const, namespace: o.ns, name: 'fq-a' };
      const ep = nth(localPods(s, local).filter((k) => k.startsWith(`${o.ns}/`)), o.answer);
      const answer: EngineEvent[] = ep ? [{ type: 'dnsResponse', endpoint: ep, name: ANSWER_NAMES[o.answer % ANSWER_NAMES.length] as string, ips: [parseIp(SHARED_IPS[o.answer % SHARED_IPS.length] as string)], ttl: o.ttl }] : [];
      const readd: EngineEvent = { type: 'upsertPolicy', policy: parseManifest(fqdnPolicy(o.ns, o.fqdns), 'gen-churn#fq') };
      // `early`: the answer arrives while the policy (and its DNS rule) is gone.
      return [...(s.policies.has(policyRefKey(ref)) ? [{ type: 'deletePolicy', ref } as const] : []), { type: 'advanceTime', seconds: o.seconds }, ...(o.early ? [...answer, readd] : [readd, ...answer])];
    }
    case 'shared': {
      const ep = nth(localPods(s, local), o.a);
      if (!ep) return [];
      const [t0, t1] = o.ttls;
      return [
        { type: 'dnsResponse', endpoint: ep, name: 'a.example.com', ips: [parseIp(o.ip)], ttl: t0 },
        { type: 'dnsResponse', endpoint: ep, name: 'b.example.com', ips: [parseIp(o.ip)], ttl: t1 },
        { type: 'advanceTime', seconds: o.seconds },
      ];
    }
  }
}
