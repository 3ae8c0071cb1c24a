import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import { namespaceWithDefaults, type Pod } from '../../src/model/cluster.js';
import { podIdentityLabels, securityLabels } from '../../src/model/identity.js';
import { parseManifestFile } from '../../src/policy/manifest.js';

/*
 * Attack finding 3180 (review 31s of 2981's fix): with identities from outside, a pod whose labels have no identity
 * holds `pending` (reserved init) and brings its named ports there, so an egress named port resolves at init only
 * when every such pod has it. A pod the agent holds fail-closed also holds `pending` but brings no named port and was
 * not counted as a pod of it; its removal (and every upsert, a removal and an addition) still took one pod off
 * init's count, so a name resolved at init where some pending pod lacks it, and the maps and DNS filter counts kept
 * entries a fresh engine does not have.
 */
const client: Pod = { namespace: 'x', name: 'a', labels: { app: 'a' }, ip: parseIp('10.244.0.5'), serviceAccount: 'default', ports: [] };
const ks = (name: string, ip: string, ports: Pod['ports'], held = false): EngineEvent => ({
  type: 'upsertPod',
  pod: { namespace: 'kube-system', name, labels: { app: name }, ip: parseIp(ip), serviceAccount: 'default', ports, ...(held ? { failClosed: true as const } : {}) },
});
function cnp(rule: string): EngineEvent {
  const [p] = parseManifestFile(`apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  endpointSelector: {matchLabels: {app: a}}\n  egress:\n  - ${rule}\n`, 'test.yaml');
  return { type: 'upsertPolicy', policy: p! };
}
const dnsToInit = cnp('{toEntities: [init], toPorts: [{ports: [{port: dns, protocol: UDP}], rules: {dns: [{matchName: good.example}]}}]}');
/** Two pods without an identity (pending): one names 53/UDP dns, the other has no port, so dns resolves nowhere at init. */
const base: EngineEvent[] = [
  { type: 'upsertNamespace', name: 'x', labels: {} },
  { type: 'upsertNamespace', name: 'kube-system', labels: {} },
  { type: 'upsertPod', pod: client, local: true },
  { type: 'upsertIdentity', id: 40000, labels: securityLabels(podIdentityLabels(client, namespaceWithDefaults('x', {}).labels)) },
  ks('pa', '10.96.0.10', [{ name: 'dns', port: 53, protocol: 'UDP' }]),
  ks('pb', '10.96.0.11', []),
];
const egressKeys = (e: Engine): string[] => [...e.mapState('x/a').keys()].filter((k) => k.includes('/egress/')).sort();
const deleteHeld: EngineEvent = { type: 'deletePod', namespace: 'kube-system', name: 'held' };

describe('3180. a pod held fail-closed leaves init\'s named-port count as it came: untouched', () => {
  it('held pod added, upserted and deleted: the maps equal a fresh engine\'s', () => {
    const fresh = new Engine({ identitySource: 'external' });
    fresh.apply([...base, dnsToInit]);
    expect(egressKeys(fresh)).toEqual([]);
    const e = new Engine({ identitySource: 'external' });
    e.apply([...base, dnsToInit]);
    for (const events of [[ks('held', '10.96.0.12', [], true)], [ks('held', '10.96.0.12', [{ name: 'dns', port: 53, protocol: 'UDP' }], true)], [deleteHeld]]) {
      e.apply(events);
      expect(egressKeys(e), JSON.stringify(events.map((x) => x.type))).toEqual(egressKeys(fresh));
    }
    // The last pending pod without the name leaves: dns is every pending pod's 53/UDP, in both.
    const pbGone: EngineEvent = { type: 'deletePod', namespace: 'kube-system', name: 'pb' };
    e.apply([pbGone]);
    fresh.apply([pbGone]);
    expect(egressKeys(fresh)).toEqual(['5/egress/17/53/16']);
    expect(egressKeys(e)).toEqual(egressKeys(fresh));
    expect(e.l7Table('x/a').map((r) => [r.peer, r.policy])).toEqual(fresh.l7Table('x/a').map((r) => [r.peer, r.policy]));
  });
});
