import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { EngineError, type EngineEvent } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import { RESERVED_IDENTITIES, UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';
import { parseManifest } from '../../src/policy/manifest.js';

/*
 * 32a (finding 3265): API server addresses held fail-closed (`setApiServer.held`, an EndpointSlice change the agent's
 * engine refused). Outside the cluster and on a remote node they read the unallocated number, which every local map
 * denies both ways; the agent's own node's stays `host`, labelled kube-apiserver as `addresses` label it; a pod's stays
 * the pod's. Random histories against the oracle: test/engine/api-server.property.test.ts.
 */
const policy = (name: string, spec: Record<string, unknown>) => parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'x' }, spec: { endpointSelector: {}, ...spec } }, 't.yaml');
const HOST = '192.168.1.7';
const REMOTE = '192.168.1.8';
const OUTSIDE = '8.8.8.8';
const base: EngineEvent[] = [
  { type: 'upsertNamespace', name: 'x', labels: {} },
  { type: 'upsertPod', pod: { namespace: 'x', name: 'server', labels: { app: 'server' }, ip: parseIp('10.0.0.1'), serviceAccount: 'default', ports: [] }, local: true },
  { type: 'upsertPod', pod: { namespace: 'x', name: 'peer', labels: { app: 'peer' }, ip: parseIp('10.0.0.2'), serviceAccount: 'default', ports: [] }, local: false },
  { type: 'upsertNode', name: 'n1', ips: [parseIp(HOST)], local: true },
  { type: 'upsertNode', name: 'n2', ips: [parseIp(REMOTE)] },
  { type: 'upsertPolicy', policy: policy('all', { egress: [{ toEntities: ['all'] }], ingress: [{ fromEntities: ['all'] }] }) },
  { type: 'upsertPolicy', policy: policy('deny-api', { egressDeny: [{ toEntities: ['kube-apiserver'] }] }) },
];
const egress = (e: Engine, ip: string): string => {
  const hit = e.lookup('x/server', e.identityOfIp(parseIp(ip)), 'egress', 6, 80);
  return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
};
const api = (addresses: string[], held: string[] = []): EngineEvent => ({ type: 'setApiServer', addresses: addresses.map(parseIp), ...(held.length > 0 ? { held: held.map(parseIp) } : {}) });
const PEERS = [HOST, REMOTE, OUTSIDE, '10.0.0.2'];

describe('32a: API server addresses held fail-closed', () => {
  it('read the unallocated number outside the cluster and on a remote node, host as the addresses label it, a pod its own', () => {
    const e = new Engine();
    e.apply([...base, api([OUTSIDE])]);
    expect(PEERS.map((ip) => egress(e, ip))).toEqual(['allow', 'allow', 'deny', 'allow']);
    // Every peer held; the host among the addresses: `host` labelled, so denied; the pod's address is the pod's.
    const held = e.apply([api([HOST], PEERS)]);
    expect(held.ipcache.map((d) => [d.prefix, d.identity]).sort()).toEqual([[`${REMOTE}/32`, UNALLOCATED_POD_IDENTITY], [`${OUTSIDE}/32`, UNALLOCATED_POD_IDENTITY]]);
    expect(e.identityOfIp(parseIp(HOST))).toBe(RESERVED_IDENTITIES.host);
    expect(e.identityOfIp(parseIp('10.0.0.2'))).toBe(e.identityOfPod('x/peer'));
    expect(PEERS.map((ip) => egress(e, ip))).toEqual(['deny', 'deny', 'deny', 'allow']);
    expect(e.lookup('x/server', UNALLOCATED_POD_IDENTITY, 'ingress', 6, 80)?.entry.deny).toBe(true);
    // The host held but no longer among the addresses: unlabelled.
    e.apply([api([], [HOST, REMOTE])]);
    expect(PEERS.map((ip) => egress(e, ip))).toEqual(['allow', 'deny', 'allow', 'allow']);
    // Read as written: the deny of 255 goes, the remote node's address is the API server's (7).
    e.apply([api([REMOTE])]);
    expect(e.identityOfIp(parseIp(REMOTE))).toBe(RESERVED_IDENTITIES['kube-apiserver']);
    expect(PEERS.map((ip) => egress(e, ip))).toEqual(['allow', 'deny', 'allow', 'allow']);
    expect(e.lookup('x/server', UNALLOCATED_POD_IDENTITY, 'ingress', 6, 80)?.entry.deny).not.toBe(true);
  });

  it('a refused transaction holding them changes nothing; validation refuses unparsed addresses', () => {
    const e = new Engine({ mapCapacity: 64 });
    e.apply([...base, api([OUTSIDE])]);
    const before = e.ipcache();
    expect(() => e.apply([api([OUTSIDE], [REMOTE]), { type: 'deletePolicy', ref: { kind: 'CiliumNetworkPolicy', namespace: 'x', name: 'nope' } } as EngineEvent])).toThrow();
    expect(e.ipcache()).toEqual(before);
    expect(() => e.apply([{ type: 'setApiServer', addresses: [], held: ['8.8.8.8'] } as unknown as EngineEvent])).toThrow(EngineError);
  });
});
