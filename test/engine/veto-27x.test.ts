import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { EngineEvent, TransactionVetoedError } from '../../src/engine/events.js';
import { endpointMaps } from '../../src/harness/cluster-sync.js';
import { parseIp } from '../../src/model/cidr.js';
import { parseManifest } from '../../src/policy/manifest.js';

/*
 * Finding 2370 (docs/attack-findings-27x.md): `Engine.apply`'s veto sees the change set before the commit; a refusal
 * is undone like a capacity refusal (the maps, the ipcache and the next transaction's deltas as if it never happened).
 */
const pod = (name: string, app: string, ip: string, local: boolean): EngineEvent => ({
  type: 'upsertPod',
  pod: { namespace: 'ns', name, labels: { app }, ip: parseIp(ip), serviceAccount: 'default', ports: [] },
  local,
});
const policy: EngineEvent = {
  type: 'upsertPolicy',
  policy: parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'a', namespace: 'ns' }, spec: { endpointSelector: { matchLabels: { app: 'a' } }, ingress: [{ fromEntities: ['all'], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }] } }, 'a.yaml'),
};
const view = (e: Engine): unknown => ({ maps: [...endpointMaps(e)].map(([ep, m]) => [ep, [...m.keys()].sort()]), ipcache: e.ipcache() });

describe('27x: a vetoed transaction changes nothing', () => {
  it('the veto sees the deltas; refused, the engine is as before and the same batch later gives the deltas a twin gets', () => {
    const e = new Engine();
    const twin = new Engine();
    const first: EngineEvent[] = [{ type: 'upsertNamespace', name: 'ns', labels: {} }, pod('a', 'a', '10.0.0.1', true), pod('b', 'b', '10.0.0.2', false)];
    e.apply(first);
    twin.apply(first);
    const before = view(e);
    let seen = 0;
    expect(() =>
      e.apply([policy, pod('c', 'c', '10.0.0.3', false)], (cs) => {
        seen = cs.deltas.length + cs.ipcache.length;
        return cs.deltas.some((d) => d.key.identity === 0 && !d.entry.deny) ? new TransactionVetoedError('identity-0 allow') : null;
      }),
    ).toThrow(TransactionVetoedError);
    expect(seen).toBeGreaterThan(0);
    expect(view(e)).toEqual(before);
    const cs = e.apply([policy, pod('c', 'c', '10.0.0.3', false)], () => null);
    const csTwin = twin.apply([policy, pod('c', 'c', '10.0.0.3', false)]);
    expect(cs.deltas).toEqual(csTwin.deltas);
    expect(cs.ipcache).toEqual(csTwin.ipcache);
    expect(view(e)).toEqual(view(twin));
  });
});
