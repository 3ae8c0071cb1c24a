import { describe, expect, it } from 'vitest';
import { parseIp } from '../../src/model/cidr.js';
import { UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';
import { rollingMirrorAgent } from './mirror-agent.js';

/**
 * Finding 2600 (review 29r of 28t's 2431/2432): a CiliumCIDRGroup delete the engine refused alone kept the group at its
 * last labels (only an upsert had a fail-closed form), and a policy change committed beside it read them. Here the
 * delete is refused because the group's labels carried a deny that shadowed a 40-port allow on its prefix (24-entry
 * maps); the next step drops both policies and allows `env=a` on port 80, which no group carries in either input.
 * Every committed batch is checked (the agent writes each to the kernel).
 *
 * Finding 2601: a relabel refused alone for the same reason was sent again fail-closed without labels, which lifted the
 * same deny, overflowed the same map and was refused too; the group waited at its last labels. The fail-closed form now
 * carries the labels the engine holds (no address reads them: every one inside reads the unallocated number).
 */
type Obj = Record<string, unknown>;
const line = (type: string, object: Obj): string => JSON.stringify({ type, object });
const md = (name: string, rv: number, extra: Obj = {}): Obj => ({ name, resourceVersion: String(rv), ...extra });
const namespace: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: md('x', 2) };
const server: Obj = { apiVersion: 'v1', kind: 'Pod', metadata: md('server', 3, { namespace: 'x', labels: { app: 'server' } }), spec: { nodeName: 'n1', containers: [] }, status: { phase: 'Running', podIP: '10.0.0.1' } };
const group = (rv: number, env = 'a'): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumCIDRGroup', metadata: md('g', rv, { labels: { env } }), spec: { externalCIDRs: ['198.51.100.0/24'] } });
const cnp = (name: string, rv: number, spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: md(name, rv, { namespace: 'x' }), spec: { endpointSelector: { matchLabels: { app: 'server' } }, ...spec } });
const ports = Array.from({ length: 40 }, (_, i) => ({ port: String(1000 + i), protocol: 'TCP' }));
const allowMany = cnp('allow-many', 10, { ingress: [{ fromCIDR: ['198.51.100.0/24'], toPorts: [{ ports }] }] });
const onGroup = (rv: number, deny: boolean): Obj =>
  cnp('on-group', rv, deny ? { ingressDeny: [{ fromCIDRSet: [{ cidrGroupSelector: { matchLabels: { env: 'a' } } }] }] } : { ingress: [{ fromCIDRSet: [{ cidrGroupSelector: { matchLabels: { env: 'a' } } }], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }] });

/** An agent of 24-entry maps; `seen`: 198.51.100.7 → x/server:80 after each commit once `watch()` was called. */
function agent() {
  const seen: string[] = [];
  let check = false;
  const a = rollingMirrorAgent({ mapCapacity: 24 }, {}, () => {
    if (!check) return;
    const hit = a.engine.lookup('x/server', a.engine.identityOfIp(parseIp('198.51.100.7')), 'ingress', 6, 80);
    seen.push(hit === undefined || hit.entry.deny ? 'deny' : 'allow');
  });
  a.feed(line('ADDED', namespace), line('ADDED', server), line('ADDED', group(20)), line('ADDED', allowMany), line('ADDED', onGroup(11, true)));
  return { ...a, seen, watch: () => void (check = true) };
}

describe('2600, 2601: a CiliumCIDRGroup delete or relabel the engine refuses alone', () => {
  // 2600: deleted (both inputs: no group). 2601: relabelled env=b, whose label-less form lifted the same deny and was
  // refused too (both inputs: g is env=b, which neither the deny nor the allow on env=a selects).
  it.each([
    ['2600 delete', line('DELETED', group(21))],
    ['2601 relabel', line('MODIFIED', group(21, 'b'))],
  ])('%s: held fail-closed, 198.51.100.7 → x/server:80 is never allowed, both inputs denying it', (_, change) => {
    const { feed, engine, mirror, seen, watch } = agent();
    watch();
    feed(change);
    expect(mirror.refusedObjects()).toEqual(['CiliumCIDRGroup//g']);
    // While it waits, the group's addresses read the unallocated number (denied both ways).
    expect(engine.identityOfIp(parseIp('198.51.100.7'))).toBe(UNALLOCATED_POD_IDENTITY);
    feed(line('DELETED', allowMany), line('MODIFIED', onGroup(12, false)));
    expect(seen).not.toContain('allow');
    // The conflict went: the change commits, the address reads as the input does (port 80 not allowed).
    expect(mirror.refusedObjects()).toEqual([]);
    expect(engine.identityOfIp(parseIp('198.51.100.7'))).not.toBe(UNALLOCATED_POD_IDENTITY);
    expect(seen.at(-1)).toBe('deny');
  });
});

describe('2602: a remote Node delete the engine refuses alone', () => {
  // n3 (outside accept-net's CIDR) gone, every remote-node address lies inside it: the Accept's 20 protocols would
  // admit remote-node exactly (tiers.ts `nodePeers`), over x/server's 28 entries. Isolated on egress by `iso`.
  const nodeObj = (name: string, rv: number, ip: string): Obj => ({ apiVersion: 'v1', kind: 'Node', metadata: md(name, rv, { labels: { role: 'a' } }), status: { addresses: [{ type: 'InternalIP', address: ip }] } });
  const protocols = Array.from({ length: 20 }, (_, i) => ({ tcp: { destinationPort: { number: 1000 + i } } }));
  const cnp = (name: string, rv: number, priority: number, egress: Obj): Obj => ({ apiVersion: 'policy.networking.k8s.io/v1beta1', kind: 'ClusterNetworkPolicy', metadata: md(name, rv), spec: { tier: 'Admin', priority, subject: { namespaces: {} }, egress: [egress] } });
  const acceptNet = cnp('accept-net', 10, 5, { action: 'Accept', to: [{ networks: ['172.16.1.0/24'] }], protocols });
  const allowNodes = cnp('allow-nodes', 30, 6, { action: 'Accept', to: [{ nodes: { matchLabels: { role: 'a' } } }], protocols: [{ tcp: { destinationPort: { number: 80 } } }] });
  const iso: Obj = { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: md('iso', 12, { namespace: 'x' }), spec: { endpointSelector: {}, egress: [{ toEntities: ['kube-apiserver'] }] } };
  it('is held fail-closed: x/server → n3:80 is never allowed once n3 is gone from both inputs', () => {
    const seen: string[] = [];
    let check = false;
    const { feed, engine, mirror } = rollingMirrorAgent({ mapCapacity: 28 }, {}, () => {
      if (!check) return;
      const hit = engine.lookup('x/server', engine.identityOfIp(parseIp('172.16.0.3')), 'egress', 6, 80);
      seen.push(hit === undefined || hit.entry.deny ? 'deny' : 'allow');
    });
    const verdict = (ip: string): string => {
      const hit = engine.lookup('x/server', engine.identityOfIp(parseIp(ip)), 'egress', 6, 80);
      return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
    };
    feed(line('ADDED', namespace), line('ADDED', server), line('ADDED', nodeObj('n2', 20, '172.16.1.2')), line('ADDED', nodeObj('n3', 21, '172.16.0.3')), line('ADDED', iso), line('ADDED', acceptNet));
    expect(mirror.refusedObjects()).toEqual([]);
    check = true;
    feed(line('DELETED', nodeObj('n3', 22, '172.16.0.3')));
    expect(mirror.refusedObjects()).toEqual(['Node//n3']);
    expect(engine.identityOfIp(parseIp('172.16.0.3'))).toBe(UNALLOCATED_POD_IDENTITY);
    // Before and after: 172.16.0.3 is no node's (the world), x/server's egress allows only the API server there.
    feed(line('ADDED', allowNodes));
    expect(seen).not.toContain('allow');
    expect(verdict('172.16.1.2')).toBe('allow');
    // The conflict goes: the delete commits, 172.16.0.3 reads as the world.
    feed(line('DELETED', acceptNet));
    expect(mirror.refusedObjects()).toEqual([]);
    expect(engine.identityOfIp(parseIp('172.16.0.3'))).not.toBe(UNALLOCATED_POD_IDENTITY);
    expect(verdict('172.16.0.3')).toBe('deny');
  });
});
