import { describe, expect, it } from 'vitest';
import { parseIp } from '../../src/model/cidr.js';
import type { Pod } from '../../src/model/cluster.js';
import { labelSetKey } from '../../src/model/labels.js';
import type { ContainerPort } from '../../src/model/ports.js';
import { Engine } from '../../src/engine/engine.js';
import { PRECEDENCE_ALLOW } from '../../src/model/policy-map.js';
import { EngineError, EngineEvent, MapCapacityError } from '../../src/engine/events.js';
import { parseManifestFile } from '../../src/policy/manifest.js';

let ipCounter = 2;
function pod(namespace: string, name: string, labels: Record<string, string>, ports: ContainerPort[] = []): Pod {
  ipCounter++;
  return { namespace, name, labels, ip: parseIp(`10.244.${ipCounter >> 8}.${ipCounter & 255}`), serviceAccount: 'default', ports };
}
const local = (p: Pod): EngineEvent => ({ type: 'upsertPod', pod: p, local: true });
const remote = (p: Pod): EngineEvent => ({ type: 'upsertPod', pod: p, local: false });
function policy(yaml: string): EngineEvent {
  const [p] = parseManifestFile(yaml, 'test.yaml');
  return { type: 'upsertPolicy', policy: p! };
}
const allowFrom = (name: string, app: string, from: string, port = 80) =>
  policy(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ${name}, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: ${app}}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: ${from}}}]
    toPorts: [{ports: [{port: "${port}", protocol: TCP}]}]
`);

describe('engine', () => {
  it('gives an endpoint no policy selects the allow-all entries, and shares map states per identity', () => {
    const e = new Engine();
    const cs = e.apply([local(pod('prod', 'a', { app: 'web' })), local(pod('prod', 'b', { app: 'web' }))]);
    expect(cs.endpointsAdded).toEqual(['prod/a', 'prod/b']);
    // allow-localhost (default always): Cilium's localHostKey, ingress from the host (1) on every port.
    expect([...e.mapState('prod/a').keys()].sort()).toEqual(['0/egress/0/0/0', '0/ingress/0/0/0', '1/ingress/0/0/0']);
    expect(e.sizes()).toMatchObject({ endpoints: 2, mapStates: 1, localIdentities: 1 });
    expect(cs.deltas).toHaveLength(6);
  });

  it('an identity no selector can match costs no selector evaluation, whatever the number of policies', () => {
    const e = new Engine();
    e.apply([local(pod('prod', 'web', { app: 'web' }))]);
    e.apply(Array.from({ length: 300 }, (_, i) => allowFrom(`p${i}`, 'web', `client-${i}`)));
    const cs = e.apply([remote(pod('other', 'x', { unrelated: 'yes' }))]);
    expect(cs.work.selectorEvaluations).toBe(0);
    expect(cs.deltas).toEqual([]);
    const hit = e.apply([remote(pod('prod', 'c7', { app: 'client-7' }))]);
    expect(hit.work.selectorEvaluations).toBeLessThanOrEqual(2);
    expect(hit.deltas.map((d) => [d.op, d.key.port])).toEqual([['upsert', 80]]);
  });

  it('a pod with an existing identity triggers no policy resolution and no selector evaluation', () => {
    const e = new Engine();
    e.apply([local(pod('prod', 'web-1', { app: 'web' })), allowFrom('p', 'web', 'client')]);
    const cs = e.apply([local(pod('prod', 'web-2', { app: 'web' }))]);
    expect(cs.work.policyResolutions).toBe(0);
    expect(cs.work.selectorEvaluations).toBe(0);
    expect(cs.work.mapStateUpdates).toBe(0);
    expect(cs.endpointsAdded).toEqual(['prod/web-2']);
    // Its new map gets every entry of the shared state.
    expect(cs.deltas).toHaveLength(e.mapState('prod/web-1').size);
  });

  it('a policy that selects no local identity recomputes no endpoint', () => {
    const e = new Engine();
    e.apply([local(pod('prod', 'web', { app: 'web' }))]);
    const cs = e.apply([allowFrom('elsewhere', 'db', 'client')]);
    expect(cs.work.policyResolutions).toBe(0);
    expect(cs.work.mapStateUpdates).toBe(0);
    expect(cs.deltas).toEqual([]);
    expect(e.sizes().selectors).toBe(0);
  });

  it('no-op events yield zero deltas; an add and a delete in one transaction cancel', () => {
    const e = new Engine();
    const p = pod('prod', 'web', { app: 'web' });
    e.apply([{ type: 'upsertNamespace', name: 'prod', labels: { env: 'prod' } }, local(p), allowFrom('p', 'web', 'client')]);
    expect(e.apply([allowFrom('p', 'web', 'client')]).deltas).toEqual([]);
    expect(e.apply([local(p)]).deltas).toEqual([]);
    expect(e.apply([{ type: 'upsertNamespace', name: 'prod', labels: { env: 'prod' } }]).deltas).toEqual([]);
    const c = pod('prod', 'client', { app: 'client' });
    expect(e.apply([remote(c), { type: 'deletePod', namespace: 'prod', name: 'client' }]).deltas).toEqual([]);
    expect(e.apply([allowFrom('q', 'web', 'other', 443), { type: 'deletePolicy', ref: { kind: 'CiliumNetworkPolicy', namespace: 'prod', name: 'q' } }]).deltas).toEqual([]);
    // Deleted and re-created in one batch: same identity, no deltas.
    const ids = e.identities();
    expect(e.apply([{ type: 'deletePod', namespace: 'prod', name: 'web' }, local(p)]).deltas).toEqual([]);
    expect(e.identities()).toEqual(ids);
  });

  it('a batch with a bad event is refused as a whole and changes nothing', () => {
    const e = new Engine();
    e.apply([local(pod('prod', 'web', { app: 'web' }))]);
    const before = JSON.stringify({ eps: e.endpoints(), ids: e.identities(), sizes: e.sizes(), map: [...e.mapState('prod/web')] });
    const statsBefore = e.stats();
    let err: unknown;
    try {
      e.apply([local(pod('prod', 'new', { app: 'new' })), allowFrom('p', 'web', 'new'), { type: 'deletePod', namespace: 'prod', name: 'ghost' }]);
    } catch (x) {
      err = x;
    }
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).message).toBe('event #2 (deletePod): pod "prod/ghost" does not exist');
    expect(JSON.stringify({ eps: e.endpoints(), ids: e.identities(), sizes: e.sizes(), map: [...e.mapState('prod/web')] })).toBe(before);
    expect(e.stats()).toEqual(statsBefore);
    expect(() => e.apply([local({ ...pod('prod', 'bad', {}), ports: [{ port: 70000, protocol: 'TCP' }] })])).toThrow('event #0 (upsertPod): pod.ports[0].port: 70000 is not in 1..65535');
    expect(() => e.apply([{ type: 'deleteNamespace', name: 'nope' }])).toThrow(EngineError);
  });

  it('allocates identities for the CIDRs policies mention, and resolves external IPs by longest prefix', () => {
    const e = new Engine();
    e.apply([
      local(pod('prod', 'web', { app: 'web' })),
      policy(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: out, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toCIDRSet: [{cidr: 10.0.0.0/8, except: [10.96.0.0/12]}]
`),
    ]);
    const labelsOf = (ip: string): string => labelSetKey(e.identityLabels(e.identityOfIp(parseIp(ip))) ?? []);
    expect(labelsOf('10.1.2.3')).toContain('cidr:10.0.0.0/8');
    expect(labelsOf('10.96.0.1')).toContain('cidr:10.96.0.0/12');
    expect(e.identityOfIp(parseIp('8.8.8.8'))).toBe(2); // world, single-stack (the default stack mode, finding 2050)
    expect(e.lookup('prod/web', e.identityOfIp(parseIp('10.1.2.3')), 'egress', 6, 443)?.entry.deny).toBe(false);
    expect(e.lookup('prod/web', e.identityOfIp(parseIp('10.96.0.1')), 'egress', 6, 443)).toBeUndefined();
    const cs = e.apply([{ type: 'deletePolicy', ref: { kind: 'CiliumNetworkPolicy', namespace: 'prod', name: 'out' } }]);
    expect(cs.work.identitiesReleased).toBe(2);
    expect(e.identityOfIp(parseIp('10.1.2.3'))).toBe(2);
  });

  it('deny beats allow and a redirect beats a plain allow, in the map itself', () => {
    const e = new Engine();
    e.apply([
      local(pod('prod', 'web', { app: 'web' })),
      remote(pod('prod', 'client', { app: 'client' })),
      policy(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: mixed, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
  - fromEntities: [all]
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET}]}}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "22", protocol: TCP}]}]
`),
    ]);
    const client = e.identityOfPod('prod/client')!;
    expect(e.lookup('prod/web', client, 'ingress', 6, 22)?.entry.deny).toBe(true);
    expect(e.lookup('prod/web', client, 'ingress', 6, 80)?.entry.proxyPort).toBeGreaterThan(0);
    expect(e.lookup('prod/web', client, 'ingress', 6, 443)?.entry).toEqual({ deny: false, proxyPort: 0, precedence: PRECEDENCE_ALLOW });
    expect(e.lookup('prod/web', 9, 'ingress', 6, 443)).toBeUndefined();
    const why = e.contributors('prod/web', { identity: client, direction: 'ingress', protocol: 6, port: 22, portPrefixLen: 16 });
    expect(why.map((c) => c.origin?.path)).toEqual(['spec.ingressDeny[0]']);
  });

  it('a pod listing one named port twice still has it (fuzz: engine denied, oracle allowed)', () => {
    const e = new Engine();
    const twice = [{ name: 'api', port: 7000, protocol: 'TCP' as const }, { name: 'api', port: 7000, protocol: 'TCP' as const }];
    e.apply([
      local(pod('prod', 'client', { app: 'client' })),
      remote(pod('prod', 'd', { app: 'd' }, twice)),
      policy(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: out, namespace: prod}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress:
  - ports: [{port: api}]
`),
    ]);
    expect(e.lookup('prod/client', e.identityOfPod('prod/d')!, 'egress', 6, 7000)?.entry.deny).toBe(false);
  });

  it('egress named ports resolve only where every pod of the identity agrees and the name is unambiguous in the cluster, and follow pods', () => {
    const e = new Engine();
    e.apply([
      local(pod('prod', 'client', { app: 'client' })),
      remote(pod('prod', 'srv-1', { app: 'srv' }, [{ name: 'http', port: 8080, protocol: 'TCP' }])),
      policy(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: out, namespace: prod}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress:
  - ports: [{port: http}]
`),
    ]);
    const srv = e.identityOfPod('prod/srv-1')!;
    expect(e.lookup('prod/client', srv, 'egress', 6, 8080)?.entry.deny).toBe(false);
    expect(e.lookup('prod/client', srv, 'egress', 6, 80)).toBeUndefined();
    // A second pod of the identity names another port: "http" is now ambiguous (Cilium resolves it
    // to nothing) and srv-2 would not have 8080 (Kubernetes): nothing stays allowed.
    const cs = e.apply([remote(pod('prod', 'srv-2', { app: 'srv' }, [{ name: 'http', port: 80, protocol: 'TCP' }]))]);
    expect(cs.work.policyResolutions).toBe(0);
    expect(cs.deltas.map((d) => [d.op, d.key.identity, d.key.port])).toEqual([['delete', srv, 8080]]);
    const gone = e.apply([{ type: 'deletePod', namespace: 'prod', name: 'srv-1' }]);
    expect(gone.deltas.map((d) => [d.op, d.key.identity, d.key.port])).toEqual([['upsert', srv, 80]]);
    // A pod of the identity without the name: not every pod has it.
    const bare = e.apply([remote(pod('prod', 'srv-3', { app: 'srv' }))]);
    expect(bare.deltas.map((d) => [d.op, d.key.identity, d.key.port])).toEqual([['delete', srv, 80]]);
    e.apply([{ type: 'deletePod', namespace: 'prod', name: 'srv-3' }]);
    // A pod of another identity giving the name another port makes it ambiguous for everyone.
    const other = e.apply([remote(pod('prod', 'db', { app: 'db' }, [{ name: 'http', port: 81, protocol: 'TCP' }]))]);
    expect(other.deltas.map((d) => [d.op, d.key.identity, d.key.port])).toEqual([['delete', srv, 80]]);
    const back = e.apply([{ type: 'deletePod', namespace: 'prod', name: 'db' }]);
    expect(back.deltas.map((d) => [d.op, d.key.identity, d.key.port])).toEqual([['upsert', srv, 80]]);
  });

  it('namespace label changes re-identify its pods', () => {
    const e = new Engine();
    e.apply([
      { type: 'upsertNamespace', name: 'dev', labels: { team: 'a' } },
      remote(pod('dev', 'c', { app: 'client' })),
      local(pod('prod', 'web', { app: 'web' })),
      policy(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-team-b, namespace: prod}
spec:
  podSelector: {}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: b}}}]
`),
    ]);
    const before = e.identityOfPod('dev/c')!;
    expect(e.lookup('prod/web', before, 'ingress', 6, 80)).toBeUndefined();
    const cs = e.apply([{ type: 'upsertNamespace', name: 'dev', labels: { team: 'b' } }]);
    const after = e.identityOfPod('dev/c')!;
    expect(after).not.toBe(before);
    expect(cs.work.identitiesReleased).toBe(1);
    expect(e.lookup('prod/web', after, 'ingress', 6, 80)?.entry.deny).toBe(false);
  });

  it('refuses a transaction that would overflow a map, naming the endpoint, the count and the biggest rules', () => {
    const e = new Engine({ mapCapacity: 20 });
    e.apply([local(pod('prod', 'web', { app: 'web' })), allowFrom('small', 'web', 'client')]);
    const clients = Array.from({ length: 30 }, (_, i) => remote(pod('prod', `c${i}`, { app: 'client', n: String(i) })));
    const before = JSON.stringify({ ids: e.identities(), map: [...e.mapState('prod/web')], stats: e.stats() });
    const lastCluster = Math.max(...e.identities().filter((id) => id < 1 << 24));
    let err: unknown;
    try {
      e.apply(clients);
    } catch (x) {
      err = x;
    }
    expect(err).toBeInstanceOf(MapCapacityError);
    const m = err as MapCapacityError;
    expect(m.endpoint).toBe('prod/web');
    expect(m.needed).toBe(32); // 30 clients on port 80 + egress allow-all + the localhost allow
    expect(m.topContributors[0]).toEqual({ rule: 'CiliumNetworkPolicy/prod/small spec.ingress[0]', entries: 30 });
    expect(m.message).toContain('endpoint prod/web would need 32 policy-map entries, over its capacity of 20');
    expect(JSON.stringify({ ids: e.identities(), map: [...e.mapState('prod/web')], stats: e.stats() })).toBe(before);
    expect(e.mapPressure()).toEqual([{ endpoint: 'prod/web', entries: 2, capacity: 20, pressure: 0.1 }]);
    // Smaller batches still fit, and get the same identity numbers a refusal would have burnt.
    const next = e.apply(clients.slice(0, 10));
    expect(next.deltas).toHaveLength(10);
    expect(e.mapPressure()[0]).toMatchObject({ endpoint: 'prod/web', entries: 12, pressure: 0.6 });
    expect(e.identityOfPod('prod/c0')).toBe(lastCluster + 1);
  });

  it('a rule with nested CIDR peers contributes each CIDR identity once (regression: found by the property test)', () => {
    const e = new Engine();
    const nested = (peers: string) =>
      policy(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: out, namespace: prod}
spec:
  podSelector: {}
  egress:
  - to: ${peers}
`);
    e.apply([local(pod('prod', 'web', { app: 'web' })), nested('[{ipBlock: {cidr: 0.0.0.0/0}}, {ipBlock: {cidr: 192.168.0.0/16, except: [192.168.1.0/24]}}]')]);
    // 0.0.0.0/0 selects all three CIDR identities; ingress is isolated (NetworkPolicy's default policyTypes) but for the localhost allow.
    expect(e.mapState('prod/web').size).toBe(4);
    const cs = e.apply([nested('[{podSelector: {}}]')]);
    expect(cs.work.identitiesReleased).toBe(3);
    expect([...e.mapState('prod/web').values()].map((r) => r.key.identity).filter((id) => id >= 1 << 24)).toEqual([]);
  });
});
