import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import { Pod } from '../../src/model/cluster.js';
import { podIdentityLabels, securityLabels } from '../../src/model/identity.js';
import { NAMESPACE_NAME_LABEL } from '../../src/model/labels.js';
import { parseManifestFile } from '../../src/policy/manifest.js';

/*
 * Finding 2132 (docs/attack-findings-26r.md, fixed in 27a): the deny of a number no selector names (an unreadable
 * stand-in, 255) is needed only where an entry admits every number: an identity-0 key that is no deny. The datapath
 * looks a packet up twice, with the peer's number and with 0, and takes the higher precedence (Cilium's
 * bpf/lib/policy.h `__policy_can_access`; distill's model/policy-map.ts `datapathLookup`); a number with no key of its
 * own meets identity 0's entries or nothing. The base put the deny in every local map, so a map with room for one more
 * entry refused the stand-in even when nothing in it could admit the number.
 */
const ns: EngineEvent = { type: 'upsertNamespace', name: 'prod', labels: {} };
const mkPod = (name: string, ip: string): Pod => ({ namespace: 'prod', name, labels: { app: name }, ip: parseIp(ip), serviceAccount: 'default', ports: [] });
const web = mkPod('web', '10.244.0.10');
const client = mkPod('client', '10.244.0.11');
const db = mkPod('db', '10.244.0.12');
const labelsOf = (p: Pod): Record<string, string> => securityLabels(podIdentityLabels(p, { [NAMESPACE_NAME_LABEL]: p.namespace }));
const policy = (egress: string): EngineEvent => {
  const [p] = parseManifestFile(
    `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}, {port: "81", protocol: TCP}, {port: "82", protocol: TCP}]}]
  egress:
  - ${egress}
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
`,
    'web.yaml',
  );
  return { type: 'upsertPolicy', policy: p! };
};
const toClient = policy('toEndpoints: [{matchLabels: {app: client}}]');
const toAll = policy('toEntities: [all]');
const keys = (e: Engine): string[] => [...e.mapState('prod/web').keys()].sort();

describe('2132: a stand-in deny only where an identity-0 allow could admit the number', () => {
  it('a full map without identity-0 allows takes a stand-in; one with them holds its deny, as they come and go', () => {
    // web: 3 ingress keys for client, 1 egress key for client, the local host's ingress allow: 5 of 6 entries.
    const e = new Engine({ identitySource: 'external', mapCapacity: 6 });
    e.apply([ns, { type: 'upsertPod', pod: web, local: true }, { type: 'upsertPod', pod: client }, { type: 'upsertPod', pod: db }, toClient]);
    e.apply([40000, 40001, 40002].map((id, i): EngineEvent => ({ type: 'upsertIdentity', id, labels: labelsOf([web, client, db][i] as Pod) })));
    expect(keys(e)).toHaveLength(5);
    // db's number turns unreadable: nothing in web's map admits a number it does not name, so no entry is needed
    // (the base added two and refused the transaction: MapCapacityError).
    e.apply([{ type: 'upsertIdentity', id: 40002, labels: labelsOf(db), unreadable: true }]);
    expect(keys(e)).toHaveLength(5);
    for (const d of ['ingress', 'egress'] as const) expect(e.lookup('prod/web', 40002, d, 6, 443)).toBeUndefined();
    // web's egress becomes `toEntities: [all]` on 443, an identity-0 allow: the stand-in's egress deny comes with it.
    e.apply([toAll]);
    expect(keys(e)).toEqual(['0/egress/6/443/16', '1/ingress/0/0/0', '40001/ingress/6/80/16', '40001/ingress/6/81/16', '40001/ingress/6/82/16', '40002/egress/0/0/0']);
    expect(e.lookup('prod/web', 40002, 'egress', 6, 443)?.entry.deny).toBe(true);
    expect(e.lookup('prod/web', 40001, 'egress', 6, 443)?.entry.deny).toBe(false);
    // And goes with it.
    e.apply([toClient]);
    expect(keys(e)).toHaveLength(5);
    expect(e.lookup('prod/web', 40002, 'egress', 6, 443)).toBeUndefined();
  });
});
