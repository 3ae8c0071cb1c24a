import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cidrContainsIp, parseCidr, parseIp } from '../../src/model/cidr.js';
import { rollingMirrorAgent } from './mirror-agent.js';

/**
 * Attack findings 2172 and 2210 (docs/attack-findings-27b.md): a CiliumCIDRGroup labelled
 * `io.kubernetes.pod.namespace: x`. Cilium 1.19 reads `{io.kubernetes.pod.namespace: x}` in a peer
 * selector as `any:io.kubernetes.pod.namespace=x` with no namespace requirement added
 * (pkg/k8s/apis/cilium.io/utils/utils.go getEndpointSelector, HasKey(podAnyPrefixLbl)); `any:` matches a
 * label of every source (pkg/labels/array.go LabelArray.Has), and applyCIDRGroup
 * (pkg/policy/k8s/cilium_cidr_group.go) gives the group's prefixes its labels under `cidrgroup:`
 * (`io.cilium.k8s*` keys dropped), inherited by longer prefixes, the longest prefix with the key
 * winning (pkg/ipcache/metadata.go mergeParentLabels).
 *
 * x/server: `allow-world` (ingress from world) and `deny-ns` (ingressDeny fromEndpoints {ns: x});
 * x/client: egress only toEndpoints {ns: x}. The expectation is computed here from the groups alone.
 */
type Obj = Record<string, unknown>;
const NS = 'io.kubernetes.pod.namespace';
const line = (type: string, object: Obj): string => JSON.stringify({ type, object });
const md = (name: string, rv: number, extra: Obj = {}): Obj => ({ name, resourceVersion: String(rv), ...extra });
const group = (name: string, rv: number, cidrs: readonly string[], labels: Readonly<Record<string, string>>, spec: Obj = {}): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumCIDRGroup', metadata: md(name, rv, { labels }), spec: { externalCIDRs: cidrs, ...spec } });
const namespace: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: md('x', 2) };
const pod = (name: string, ip: string, app: string): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: md(name, 3, { namespace: 'x', labels: { app } }),
  spec: { nodeName: 'n1', containers: [{ name: 'c', image: 'nginx', ports: [{ containerPort: 80, protocol: 'TCP' }] }] },
  status: { phase: 'Running', podIP: ip },
});
const cnp = (name: string, rv: number, spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: md(name, rv, { namespace: 'x' }), spec });
const server = { endpointSelector: { matchLabels: { app: 'server' } } };
const POLICIES = [
  cnp('allow-world', 10, { ...server, ingress: [{ fromEntities: ['world'] }] }),
  cnp('deny-ns', 11, { ...server, ingressDeny: [{ fromEndpoints: [{ matchLabels: { [NS]: 'x' } }] }] }),
  cnp('client', 12, { endpointSelector: { matchLabels: { app: 'client' } }, egress: [{ toEndpoints: [{ matchLabels: { [NS]: 'x' } }] }] }),
];

function node(watched = true) {
  const { feed, engine } = rollingMirrorAgent({}, watched ? { cidrGroups: true } : {});
  const verdict = (podName: string, ip: string, dir: 'ingress' | 'egress'): string => {
    const hit = engine.lookup(podName, engine.identityOfIp(parseIp(ip)), dir, 6, 80);
    return hit === undefined ? 'none' : hit.entry.deny ? 'deny' : 'allow';
  };
  feed(line('ADDED', namespace), line('ADDED', pod('server', '10.0.0.1', 'server')), line('ADDED', pod('client', '10.0.0.2', 'client')), ...POLICIES.map((p) => line('ADDED', p)));
  return { feed, verdict };
}

const PREFIXES = ['198.51.100.0/24', '198.51.100.128/25', '198.51.100.200/32', '192.0.2.0/24', '0.0.0.0/0'];
const IPS = ['198.51.100.200', '198.51.100.5', '192.0.2.10', '203.0.113.9'];
const LABELS: Record<string, string>[] = [{}, { [NS]: 'x' }, { [NS]: 'y' }, { [NS]: 'x', team: 'a' }, { team: 'a' }];

/** The values of the namespace key an address's identity may carry: those of the longest group prefixes holding it that have the key. */
function namespaceValues(groups: ReadonlyMap<string, { cidrs: readonly string[]; labels: Record<string, string> }>, ip: string): Set<string> {
  let best = -1;
  let values = new Set<string>();
  for (const g of groups.values()) {
    const v = g.labels[NS];
    if (v === undefined) continue;
    for (const c of g.cidrs) {
      const p = parseCidr(c);
      if (!cidrContainsIp(p, parseIp(ip))) continue;
      if (p.prefixLength > best) [best, values] = [p.prefixLength, new Set([v])];
      else if (p.prefixLength === best) values.add(v);
    }
  }
  return values;
}

describe('2172. a CIDR group labelled io.kubernetes.pod.namespace, read by `any:` namespace selectors', () => {
  it('the ingressDeny on that key denies the group\'s prefixes; an egress allow on it admits them', () => {
    const n = node();
    n.feed(line('ADDED', group('lookalike', 20, ['198.51.100.128/25'], { [NS]: 'x' })));
    expect([n.verdict('x/server', '198.51.100.200', 'ingress'), n.verdict('x/server', '198.51.100.5', 'ingress')]).toEqual(['deny', 'allow']);
    expect([n.verdict('x/client', '198.51.100.200', 'egress'), n.verdict('x/client', '198.51.100.5', 'egress')]).toEqual(['allow', 'none']);
  });

  it('property: groups created, relabelled and deleted; every committed state as computed from the groups', () => {
    type Op = { kind: 'set'; name: string; cidrs: string[]; labels: Record<string, string> } | { kind: 'delete'; name: string };
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 4, arbitrary: fc.record({ kind: fc.constant('set' as const), name: fc.constantFrom('g1', 'g2', 'g3'), cidrs: fc.subarray(PREFIXES, { minLength: 1, maxLength: 3 }), labels: fc.constantFrom(...LABELS) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete' as const), name: fc.constantFrom('g1', 'g2', 'g3') }) },
    );
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 10 }), (ops) => {
        const n = node();
        const groups = new Map<string, { cidrs: readonly string[]; labels: Record<string, string> }>();
        let rv = 100;
        for (const o of ops) {
          if (o.kind === 'set') {
            n.feed(line(groups.has(o.name) ? 'MODIFIED' : 'ADDED', group(o.name, ++rv, o.cidrs, o.labels)));
            groups.set(o.name, { cidrs: o.cidrs, labels: o.labels });
          } else if (groups.has(o.name)) {
            n.feed(line('DELETED', group(o.name, ++rv, [], {})));
            groups.delete(o.name);
          }
          for (const ip of IPS) {
            const values = namespaceValues(groups, ip);
            // A deny selects the address when some value Cilium may hold is x; an allow only when every one is.
            expect(n.verdict('x/server', ip, 'ingress'), `x/server <- ${ip}`).toBe(values.has('x') ? 'deny' : 'allow');
            const allowed = values.size > 0 && [...values].every((v) => v === 'x');
            expect(n.verdict('x/client', ip, 'egress') === 'allow', `x/client -> ${ip}`).toBe(allowed);
          }
        }
      }),
      { numRuns: 150 },
    );
  });

  it('2212. while a watched group cannot be read, the deny on the namespace key denies every peer (its labels are unknown)', () => {
    const n = node();
    n.feed(line('ADDED', group('other', 20, ['192.0.2.0/24'], {})));
    expect(n.verdict('x/server', '203.0.113.9', 'ingress')).toBe('allow');
    n.feed(line('ADDED', group('lookalike', 21, ['198.51.100.128/25'], { [NS]: 'x' }, { futureField: true })));
    expect([n.verdict('x/server', '198.51.100.200', 'ingress'), n.verdict('x/server', '203.0.113.9', 'ingress')]).toEqual(['deny', 'deny']);
    n.feed(line('MODIFIED', group('lookalike', 22, ['198.51.100.128/25'], { [NS]: 'x' })));
    expect([n.verdict('x/server', '198.51.100.200', 'ingress'), n.verdict('x/server', '203.0.113.9', 'ingress')]).toEqual(['deny', 'allow']);
  });

  it('2212. control: an agent that does not watch the groups reads the deny as before (no group labels known)', () => {
    const n = node(false);
    expect([n.verdict('x/server', '198.51.100.200', 'ingress'), n.verdict('x/server', '10.0.0.2', 'ingress')]).toEqual(['allow', 'deny']);
  });
});
