import { describe, expect, it } from 'vitest';
import { staleVeto } from '../../src/agent/agent.js';
import { Engine } from '../../src/engine/engine.js';
import { EngineEvent, TransactionVetoedError } from '../../src/engine/events.js';
import { endpointMaps } from '../../src/harness/cluster-sync.js';
import { parseIp } from '../../src/model/cidr.js';
import { parseManifest } from '../../src/policy/manifest.js';

/*
 * Review 28c (docs/attack-findings-28c.md): agent.ts `staleVeto` on the engine alone, with 303 (app=db) waiting to
 * narrow. Each part of the veto is pinned by a case that a transaction admitting 303 more than now is refused and
 * leaves the engine as it was: a peer entry (2370), an address moved to 303, a map of an endpoint at 303 (2450), an
 * L7 row (2451); and a transaction that admits 303 no more goes through.
 */
const labels = (app: string): Record<string, string> => ({
  'k8s:app': app,
  'k8s:io.kubernetes.pod.namespace': 'ns',
  'k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name': 'ns',
  'k8s:io.cilium.k8s.policy.cluster': 'default',
  'k8s:io.cilium.k8s.policy.serviceaccount': 'default',
});
const pod = (name: string, app: string, ip: string, local: boolean): EngineEvent => ({
  type: 'upsertPod',
  pod: { namespace: 'ns', name, labels: { app }, ip: parseIp(ip), serviceAccount: 'default', ports: [] },
  local,
});
const cnp = (name: string, spec: Record<string, unknown>): EngineEvent => ({
  type: 'upsertPolicy',
  policy: parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'ns' }, spec }, `${name}.yaml`),
});
const from = (name: string, app: string, peer: string, paths?: string[]): EngineEvent =>
  cnp(name, {
    endpointSelector: { matchLabels: { app } },
    ingress: [{ fromEndpoints: [{ matchLabels: { app: peer } }], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }], ...(paths ? { rules: { http: paths.map((path) => ({ method: 'GET', path })) } } : {}) }] }],
  });
const view = (e: Engine): unknown => ({ maps: [...endpointMaps(e)].map(([ep, m]) => [ep, [...m.entries()].sort()]), ipcache: e.ipcache(), l7: e.endpoints().map((ep) => e.l7Table(ep)) });

/** web (300) and client (301) local, db (303) local or remote; `first` on top. */
function engine(dbLocal: boolean, first: EngineEvent[]): Engine {
  const e = new Engine({ identitySource: 'external' });
  e.apply([
    { type: 'upsertNamespace', name: 'ns', labels: {} },
    { type: 'upsertIdentity', id: 300, labels: labels('web') },
    { type: 'upsertIdentity', id: 301, labels: labels('client') },
    { type: 'upsertIdentity', id: 303, labels: labels('db') },
    pod('web', 'web', '10.0.0.2', true),
    pod('client', 'client', '10.0.0.3', true),
    pod('db', 'db', dbLocal ? '10.0.0.4' : '10.0.1.4', dbLocal),
    ...first,
  ]);
  return e;
}

/** Applies `events` under the veto of 303: whether it was refused, and then that nothing changed. */
function vetoed(e: Engine, events: EngineEvent[]): boolean {
  const before = view(e);
  try {
    e.apply(events, staleVeto(new Set([303])));
    return false;
  } catch (err) {
    if (!(err instanceof TransactionVetoedError)) throw err;
    expect(view(e)).toEqual(before);
    return true;
  }
}

describe('28c: staleVeto, part by part', () => {
  it('a peer entry: a policy letting client reach db (303) is refused; one letting it reach web goes', () => {
    const e = engine(false, [cnp('client-out', { endpointSelector: { matchLabels: { app: 'client' } }, egress: [{ toEndpoints: [{ matchLabels: { app: 'web' } }] }] })]);
    expect(vetoed(e, [cnp('client-db', { endpointSelector: { matchLabels: { app: 'client' } }, egress: [{ toEndpoints: [{ matchLabels: { app: 'db' } }] }] })])).toBe(true);
    expect(vetoed(e, [from('web-from-client', 'web', 'client')])).toBe(false);
  });

  it('an address moved to 303: a second db pod (its address world before, 303 a stand-in after) is refused', () => {
    const e = engine(false, [cnp('client-out', { endpointSelector: { matchLabels: { app: 'client' } }, egress: [{ toEndpoints: [{ matchLabels: { app: 'db' } }] }] })]);
    expect(e.lookup('ns/client', 303, 'egress', 6, 80)?.entry.deny).toBe(false);
    expect(vetoed(e, [pod('db2', 'db', '10.0.1.5', false)])).toBe(true);
    expect(e.identityOfIp(parseIp('10.0.1.5'))).toBe(2);
    expect(vetoed(e, [pod('web2', 'web', '10.0.1.6', false)])).toBe(false);
  });

  it('2450: the map of a local endpoint at 303 widened on another peer is refused; a deny there goes', () => {
    const e = engine(true, [from('db-from-web', 'db', 'web')]);
    expect(vetoed(e, [from('db-from-client', 'db', 'client')])).toBe(true);
    expect(e.lookup('ns/db', 301, 'ingress', 6, 80)?.entry.deny ?? true).toBe(true);
    const deny = cnp('db-deny', { endpointSelector: { matchLabels: { app: 'db' } }, ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }] }] });
    expect(vetoed(e, [deny])).toBe(false);
  });

  it('2451: a new HTTP rule for 303 on a port it reaches through the proxy (no map delta) is refused', () => {
    const e = engine(false, [from('web-a', 'web', 'db', ['/a'])]);
    const probe = (path: string): boolean => {
      const entry = e.lookup('ns/web', 303, 'ingress', 6, 80)?.entry;
      return entry !== undefined && !entry.deny && (e.l7Verdict('ns/web', entry.proxyPort, 303, { http: { method: 'GET', path } }, 80)?.allowed ?? false);
    };
    expect(probe('/a')).toBe(true);
    const cs = e.apply([from('web-b', 'web', 'db', ['/b'])], () => null);
    expect(cs.deltas.filter((d) => d.key.identity === 303)).toEqual([]);
    expect(cs.l7Deltas.length).toBeGreaterThan(0);
    e.apply([{ type: 'deletePolicy', ref: { kind: 'CiliumNetworkPolicy', namespace: 'ns', name: 'web-b' } }]);
    expect(probe('/b')).toBe(false);
    expect(vetoed(e, [from('web-b', 'web', 'db', ['/b'])])).toBe(true);
    expect(probe('/b')).toBe(false);
    // The same rule for client (301, not waiting) goes.
    expect(vetoed(e, [from('web-c', 'web', 'client', ['/b'])])).toBe(false);
  });
});
