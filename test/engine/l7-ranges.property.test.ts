import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { ChangeSet, L7Delta } from '../../src/engine/events.js';
import { l7RowKey } from '../../src/harness/cluster-sync.js';
import { ANY_IDENTITY } from '../../src/model/identity.js';
import type { ClusterState } from '../../src/model/cluster.js';
import { endpointAddress, resolveEndpoint } from '../../src/model/flow.js';
import { l7PolicyAllows, L7Request, proxyReads } from '../../src/model/l7.js';
import { PROTOCOL_NUMBER } from '../../src/model/ports.js';
import { decideDirection } from '../../src/naive/evaluator.js';
import { INITIAL_CLUSTER, Op, toEvent, modelAfter } from './gen.js';
import { fcReplay, fcRuns } from '../fc-knobs.js';

/**
 * L7 rules on overlapping port ranges, added and removed in any order, against the oracle: a
 * range is redirected by its LPM prefixes, and the proxy must judge each request by every rule
 * whose range covers its port, also those of narrower ranges and plain allows the datapath hides
 * behind a wider redirect (Envoy's PortNetworkPolicy, cilium/proxy cilium/network_policy.cc).
 */
const PORTS = [4095, 4096, 4099, 4100, 4101, 5000, 5001, 8000, 8063, 8064, 8080, 8100, 8101, 8127, 8128, 8191, 8192, 8200, 9000, 9001];
const REQUESTS: readonly (L7Request | undefined)[] = [
  undefined,
  { http: { method: 'GET', path: '/public' } },
  { http: { method: 'POST', path: '/api/v1' } },
  { http: { method: 'DELETE', path: '/x' } },
  { kafka: { apiKey: 'produce', topic: 'orders' } },
];
const PORT_RULES: Record<string, Record<string, unknown>> = {
  wide: { ports: [{ port: '4096', endPort: 8191, protocol: 'TCP' }], rules: { http: [{ method: 'POST', path: '/api/.*' }] } },
  overlap: { ports: [{ port: '8000', endPort: 9000, protocol: 'TCP' }], rules: { http: [{ method: 'GET', path: '/public' }] } },
  narrow: { ports: [{ port: '8064', endPort: 8127, protocol: 'TCP' }], rules: { http: [{ method: 'DELETE' }] } },
  plain: { ports: [{ port: '5000', protocol: 'TCP' }, { port: '8080', endPort: 8100, protocol: 'TCP' }] },
  kafka: { ports: [{ port: '4100', endPort: 8200, protocol: 'TCP' }], rules: { kafka: [{ topic: 'orders' }] } },
  narrowkafka: { ports: [{ port: '8080', protocol: 'TCP' }], rules: { kafka: [{ topic: 'orders' }] } },
  // Deny rules (names starting with "deny") inside and across the redirected prefixes (review 11r).
  denyport: { ports: [{ port: '5000', protocol: 'TCP' }] },
  denynarrow: { ports: [{ port: '8064', endPort: 8127, protocol: 'TCP' }] },
  denyacross: { ports: [{ port: '8100', endPort: 8200, protocol: 'TCP' }] },
};
const NAMES = Object.keys(PORT_RULES);

/** Ingress of n0/web from n0/client (or from every peer), or egress of n0/client to n0/web. */
function policy(name: string, direction: 'ingress' | 'egress', anyPeer: boolean): Op {
  const peer = anyPeer ? {} : { matchLabels: { app: direction === 'ingress' ? 'client' : 'web' } };
  const rule = { [direction === 'ingress' ? 'fromEndpoints' : 'toEndpoints']: [peer], toPorts: [PORT_RULES[name]] };
  const subject = { matchLabels: { app: direction === 'ingress' ? 'web' : 'client' } };
  const field = name.startsWith('deny') ? `${direction}Deny` : direction;
  return { k: 'policy', manifest: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: `${name}-${direction}-${anyPeer ? 'any' : 'one'}`, namespace: 'n0' }, spec: { endpointSelector: subject, [field]: [rule] } } };
}

const PODS: Op[] = [
  { k: 'pod', ns: 'n0', name: 'web', labels: { app: 'web' }, ports: 0, local: true },
  { k: 'pod', ns: 'n0', name: 'client', labels: { app: 'client' }, ports: 0, local: true },
];
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ name: fc.constantFrom(...NAMES), direction: fc.constantFrom('ingress' as const, 'egress' as const), anyPeer: fc.boolean() }).map((p) => policy(p.name, p.direction, p.anyPeer)),
  fc.record({ name: fc.constantFrom(...NAMES), direction: fc.constantFrom('ingress', 'egress'), anyPeer: fc.boolean() }).map(
    (p): Op => ({ k: 'delPolicy', kind: 'CiliumNetworkPolicy', ns: 'n0', name: `${p.name}-${p.direction}-${p.anyPeer ? 'any' : 'one'}` }),
  ),
);

/**
 * A proxy an embedder runs, fed ONLY from the change sets' L7 deltas: per endpoint, rows keyed by
 * (redirect, peer, port range). It allows a request on `port` from `peer` through `proxyPort` when a
 * row of that redirect, for the peer or any peer (0), whose range (the whole redirect when absent)
 * holds the port allows it.
 */
class DeltaProxy {
  private readonly tables = new Map<string, Map<string, L7Delta>>();

  fold(cs: ChangeSet): void {
    for (const ep of cs.endpointsRemoved) this.tables.delete(ep);
    for (const d of cs.l7Deltas) {
      let t = this.tables.get(d.endpoint);
      if (!t) this.tables.set(d.endpoint, (t = new Map()));
      const k = l7RowKey(d.redirect, d.peer, d.portRange);
      if (d.op === 'upsert') t.set(k, d);
      else {
        expect(t.has(k), `L7 delete of an absent row ${k}`).toBe(true);
        t.delete(k);
      }
    }
  }

  allows(endpoint: string, proxyPort: number, peer: number, request: L7Request, port: number): boolean {
    for (const row of this.tables.get(endpoint)?.values() ?? []) {
      if (row.redirect.proxyPort !== proxyPort || !proxyReads(row.redirect.parser, request)) continue;
      if (row.peer !== peer && row.peer !== ANY_IDENTITY) continue;
      if (row.portRange && (port < row.portRange.port || port > row.portRange.endPort)) continue;
      if (l7PolicyAllows(row.policy, request)) return true;
    }
    return false;
  }
}

function checkFlows(engine: Engine, state: ClusterState, proxy: DeltaProxy): { proxied: number } {
  let proxied = 0;
  for (const [ep, peerName] of [['n0/web', 'n0/client'], ['n0/client', 'n0/web']] as const) {
    const subject = resolveEndpoint(state, ep);
    const peer = resolveEndpoint(state, peerName);
    if (subject.kind !== 'pod') throw new Error(`${ep} is not a pod`);
    const peerId = peer.kind === 'pod' ? (engine.identityOfPod(peer.name) as number) : engine.identityOfIp(endpointAddress(peer));
    for (const direction of ['ingress', 'egress'] as const) {
      for (const port of PORTS) {
        for (const request of REQUESTS) {
          const naive = decideDirection(state, subject, direction, peer, 'TCP', port, request);
          const hit = engine.lookup(ep, peerId, direction, PROTOCOL_NUMBER.TCP, port);
          const l4Allowed = hit !== undefined && !hit.entry.deny;
          const isProxied = l4Allowed && hit.entry.proxyPort !== 0;
          const verdict = isProxied && request ? engine.l7Verdict(ep, hit.entry.proxyPort, peerId, request, port) : undefined;
          if (verdict) proxied++;
          if (verdict && request) {
            const fromDeltas = proxy.allows(ep, hit!.entry.proxyPort, peerId, request, port);
            expect({ ep, direction, port, request, proxy: fromDeltas }, 'the proxy fed from l7Deltas vs l7Verdict').toEqual({ ep, direction, port, request, proxy: verdict.allowed });
          }
          const allowed = verdict ? verdict.allowed : l4Allowed;
          expect({ ep, direction, port, request, allowed, proxied: isProxied }).toEqual({ ep, direction, port, request, allowed: naive.allowed, proxied: naive.proxied });
        }
      }
    }
  }
  return { proxied };
}

describe('L7 rules on overlapping port ranges: engine vs oracle under churn', () => {
  it('every port and request after every transaction', () => {
    let proxied = 0;
    fc.assert(
      fc.property(fc.array(fc.array(op, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 8 }), (txns) => {
        const engine = new Engine();
        const proxy = new DeltaProxy();
        let state = modelAfter(INITIAL_CLUSTER, PODS.map(toEvent)) as ClusterState;
        proxy.fold(engine.apply(PODS.map(toEvent)));
        for (const ops of txns) {
          const events = ops.map(toEvent);
          const next = modelAfter(state, events);
          if (next === null) continue;
          proxy.fold(engine.apply(events));
          state = next;
          proxied += checkFlows(engine, state, proxy).proxied;
        }
      }),
      { numRuns: fcRuns(60), ...fcReplay() },
    );
    expect(proxied).toBeGreaterThan(100);
  });
});
