import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { applyEventToCluster } from '../../src/harness/cluster-sync.js';
import { engineDecision } from '../../src/harness/engine-decider.js';
import { parseCidr, parseIp } from '../../src/model/cidr.js';
import { cidrGroupNameKey } from '../../src/model/cidr-group.js';
import { EMPTY_CLUSTER, upsertExternal, type ClusterState } from '../../src/model/cluster.js';
import { UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';
import { decideFlow } from '../../src/naive/evaluator.js';
import { parseManifest } from '../../src/policy/manifest.js';

/*
 * 32v (finding 3623): an address held by the API server slice that is also a learnt toFQDNs address or inside a CIDR
 * group reads the unallocated number (the held API server entry is read before `fqdnHost`/`cidrHost`), as the oracle
 * reads it; once the hold ends it is the API server's again, with its learnt and group labels.
 */
const policy = (name: string, spec: Record<string, unknown>) => parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'x' }, spec: { endpointSelector: {}, ...spec } }, 't.yaml', { cidrGroups: true });
const LEARNT = '203.0.113.7';
const GROUPED = '198.51.100.9';
const events: EngineEvent[] = [
  { type: 'upsertNamespace', name: 'x', labels: {} },
  { type: 'upsertPod', pod: { namespace: 'x', name: 'server', labels: { app: 'server' }, ip: parseIp('10.0.0.1'), serviceAccount: 'default', ports: [] }, local: true },
  { type: 'upsertCidrGroup', group: { name: 'g', labels: new Map([[cidrGroupNameKey('g'), '']]), cidrs: [parseCidr('198.51.100.0/24')] } },
  { type: 'upsertPolicy', policy: policy('dns', { egress: [{ toEndpoints: [{}], toPorts: [{ ports: [{ port: '53', protocol: 'ANY' }], rules: { dns: [{ matchPattern: '*' }] } }] }] }) },
  { type: 'upsertPolicy', policy: policy('fqdn', { egress: [{ toFQDNs: [{ matchName: 'a.example.com' }] }, { toCIDRSet: [{ cidrGroupRef: 'g' }] }, { toEntities: ['kube-apiserver'] }] }) },
  { type: 'dnsResponse', endpoint: 'x/server', name: 'a.example.com', ips: [parseIp(LEARNT)], ttl: 3600 },
];
const api = (addresses: string[], held: string[] = []): EngineEvent => ({ type: 'setApiServer', addresses: addresses.map(parseIp), ...(held.length > 0 ? { held: held.map(parseIp) } : {}) });

describe('32v: held API server addresses over learnt and group addresses', () => {
  it('read 255 while held, as the oracle; the API server after', () => {
    const e = new Engine();
    let state: ClusterState = [LEARNT, GROUPED].reduce((s, ip) => upsertExternal(s, { name: `at-${ip}`, ip: parseIp(ip) }), EMPTY_CLUSTER);
    const step = (batch: EngineEvent[]): string[] => {
      e.apply(batch);
      state = batch.reduce(applyEventToCluster, state);
      return [LEARNT, GROUPED].map((ip) => {
        const flow = { from: 'x/server', to: `at-${ip}`, port: 80, protocol: 'TCP' as const };
        const want = decideFlow(state, flow).allowed;
        expect(engineDecision(e, state, flow).allowed, ip).toBe(want);
        return want ? 'allow' : 'deny';
      });
    };
    expect(step([...events, api([])])).toEqual(['allow', 'allow']);
    // Both join the API server, refused alone and held: 255, denied, though both versions allow them.
    expect(step([api([LEARNT, GROUPED], [LEARNT, GROUPED])])).toEqual(['deny', 'deny']);
    expect([LEARNT, GROUPED].map((ip) => e.identityOfIp(parseIp(ip)))).toEqual([UNALLOCATED_POD_IDENTITY, UNALLOCATED_POD_IDENTITY]);
    expect(e.ipcache().filter((c) => c.identity === UNALLOCATED_POD_IDENTITY).map((c) => c.prefix).sort()).toEqual([`${GROUPED}/32`, `${LEARNT}/32`]);
    // Read as written: no 255 left, no deny of it.
    expect(step([api([LEARNT, GROUPED])])).toEqual(['allow', 'allow']);
    expect(e.ipcache().some((c) => c.identity === UNALLOCATED_POD_IDENTITY)).toBe(false);
    expect(e.lookup('x/server', UNALLOCATED_POD_IDENTITY, 'egress', 6, 80)?.entry.deny).not.toBe(true);
  });
});
