import { describe, expect, it } from 'vitest';
import { refusingAgent, type Refuse } from './refusing-agent.js';
import { parseIp } from '../../src/model/cidr.js';
import { rollingMirrorAgent } from './mirror-agent.js';
import { cnp, line, md, namespace, server, type Obj } from './refused-objects.js';

const several: Refuse = (events) => events.length > 1;
const nsY = line('ADDED', { apiVersion: 'v1', kind: 'Namespace', metadata: md('y', 4) });
const T0 = Date.parse('2026-01-01T00:00:00Z');
const pod = (rv: number, ip: string): Obj => ({ apiVersion: 'v1', kind: 'Pod', metadata: md('p', rv, { namespace: 'y', labels: { app: 'p' } }), spec: { nodeName: 'n2', containers: [] }, status: { phase: 'Running', podIP: ip } });
const slice = (rv: number, addresses: string[]): Obj => ({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4', metadata: md('kubernetes', rv, { namespace: 'default', labels: { 'kubernetes.io/service-name': 'kubernetes' } }), endpoints: addresses.map((a) => ({ addresses: [a] })), ports: [{ name: 'https', port: 6443, protocol: 'TCP' }] });

describe('31z: a split step never commits a part allowing what the inputs before and after it deny', () => {
  it('3260: a pod readdressed in a split step holds its old address too', () => {
    const A = '10.0.1.1';
    const { feed, step, verdict } = refusingAgent(several, { ip: A });
    feed(line('ADDED', namespace), line('ADDED', server), nsY, line('ADDED', pod(5, A)), line('ADDED', slice(6, ['192.0.2.1'])));
    feed(line('ADDED', cnp('to-net', 7, { egress: [{ toCIDR: ['10.0.0.0/8'] }] })), line('ADDED', cnp('deny-api', 8, { egressDeny: [{ toEntities: ['kube-apiserver'] }] })));
    // Before: A is the pod, which no rule allows. After: A is the API server, denied.
    expect(verdict()).toBe('deny');
    step(line('MODIFIED', pod(9, '10.0.1.2')), line('MODIFIED', slice(10, ['192.0.2.1', A])));
    expect(verdict()).toBe('deny');
  });

  it('3261: a ClusterNetworkPolicy deleted in a split step keeps no Pass past the policies it skipped', () => {
    // Before: x/server -> y/p passes the Admin Pass (priority 10), and the CiliumNetworkPolicy tier isolates x/server's
    // egress (198.51.100.0/24 only): denied. One step deletes the Pass and adds a CiliumNetworkPolicy allowing app=p;
    // after it the Admin Deny (priority 20) denies. Held at a deny side that kept the Pass while the allow committed, the
    // Deny was skipped and the allow admitted it.
    const P = '10.0.1.1';
    const { feed, step, verdict } = refusingAgent(several, { ip: P });
    const tiered = (name: string, rv: number, priority: number, action: string): Obj => ({ apiVersion: 'policy.networking.k8s.io/v1beta1', kind: 'ClusterNetworkPolicy', metadata: md(name, rv), spec: { tier: 'Admin', priority, subject: { namespaces: {} }, egress: [{ action, to: [{ pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: 'p' } } } }] }] } });
    const passP = tiered('pass-p', 7, 10, 'Pass');
    feed(line('ADDED', namespace), line('ADDED', server), nsY, line('ADDED', pod(5, P)));
    feed(line('ADDED', cnp('only-ext', 6, { egress: [{ toCIDR: ['198.51.100.0/24'] }] })), line('ADDED', passP), line('ADDED', tiered('deny-p', 8, 20, 'Deny')));
    expect(verdict()).toBe('deny');
    step(line('DELETED', passP), line('ADDED', cnp('allow-p', 9, { egress: [{ toEndpoints: [{ matchLabels: { app: 'p', 'k8s:io.kubernetes.pod.namespace': 'y' } }] }] })));
    expect(verdict()).toBe('deny');
  });

  it('3262: an expired pod takes back the address its claimant leaves in the same part', () => {
    // x/evil at 10.0.0.9 past its deadline, held fail-closed; y/other took 10.0.0.9 (denied by its label). One step
    // moves other to 10.0.0.8 and changes a policy: retried in parts, other's move committed before evil took 10.0.0.9
    // back, which was world for that part (the 10.0.0.0/8 allow), though other before and evil after are denied.
    let t = T0;
    const { feed, step, verdict, engine, mirror } = refusingAgent(several, { ip: '10.0.0.9', dir: 'ingress' }, { now: () => t, elapsed: () => t });
    const at = (name: string, ns: string, rv: number, ip: string, deleteAt?: number): Obj => ({ apiVersion: 'v1', kind: 'Pod', metadata: md(name, rv, { namespace: ns, labels: { app: name }, ...(deleteAt === undefined ? {} : { deletionTimestamp: new Date(deleteAt).toISOString(), deletionGracePeriodSeconds: 30 }) }), spec: { nodeName: 'n2', containers: [] }, status: { phase: 'Running', podIP: ip } });
    const policy = cnp('p', 7, { ingressDeny: [{ fromEndpoints: [{ matchExpressions: [{ key: 'app', operator: 'In', values: ['evil', 'other'] }] }] }], ingress: [{ fromCIDR: ['10.0.0.0/8'] }] });
    feed(line('ADDED', namespace), line('ADDED', server), nsY, line('ADDED', at('evil', 'x', 5, '10.0.0.9', T0 + 30_000)), line('ADDED', policy));
    t += 31_000;
    mirror.expire();
    feed(line('ADDED', at('other', 'y', 6, '10.0.0.9')));
    expect(verdict()).toBe('deny');
    step(line('MODIFIED', at('other', 'y', 8, '10.0.0.8')), line('ADDED', cnp('q', 9, { ingress: [{ fromCIDR: ['192.0.2.0/24'] }] })));
    expect(engine.ipcache().find((e) => e.prefix === '10.0.0.9/32')?.identity).toBe(255);
  });

  it('3263: a CIDR group whose prefixes change in a split step holds its old prefixes too', () => {
    // Group g (env=a) holds 10.0.1.0/24, which deny-g denies; to-net allows 10.0.0.0/8. One step moves g to
    // 10.0.2.0/24 and makes 10.0.1.1 an API server address, which deny-api denies. Held at its new prefixes only, g
    // left 10.0.1.1 world while the API server's change had not committed.
    const { feed, step, verdict } = refusingAgent(several, { ip: '10.0.1.1' }, { cidrGroups: true });
    const g = (rv: number, cidr: string): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumCIDRGroup', metadata: md('g', rv, { labels: { env: 'a' } }), spec: { externalCIDRs: [cidr] } });
    feed(line('ADDED', namespace), line('ADDED', server), line('ADDED', g(4, '10.0.1.0/24')), line('ADDED', slice(5, ['192.0.2.1'])));
    feed(line('ADDED', cnp('to-net', 7, { egress: [{ toCIDR: ['10.0.0.0/8'] }] })), line('ADDED', cnp('deny-api', 8, { egressDeny: [{ toEntities: ['kube-apiserver'] }] })), line('ADDED', cnp('deny-g', 9, { egressDeny: [{ toCIDRSet: [{ cidrGroupRef: 'g' }] }] })));
    expect(verdict()).toBe('deny');
    step(line('MODIFIED', g(10, '10.0.2.0/24')), line('MODIFIED', slice(11, ['192.0.2.1', '10.0.1.1'])));
    expect(verdict()).toBe('deny');
  });

  /**
   * 3264: egressDeny of port name `http` to world, which y/p alone names (8080); x/server may reach every address. Held
   * fail-closed (no named port), p took 8080 out of the deny while it was held, though before and after the step p
   * names 8080 `http`. `refuse`: the batches the engine refuses; `step`: the lines of the step.
   */
  function namedPortHeld(refuse: Refuse, lines: (named: (rv: number, app: string) => Obj) => string[]): void {
    const { feed, step, verdict } = refusingAgent(refuse, { ip: '203.0.113.1', port: 8080 });
    const named = (rv: number, app: string): Obj => ({ apiVersion: 'v1', kind: 'Pod', metadata: md('p', rv, { namespace: 'y', labels: { app } }), spec: { nodeName: 'n2', containers: [{ name: 'c', image: 'i', ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] }] }, status: { phase: 'Running', podIP: '10.0.1.1' } });
    feed(line('ADDED', namespace), line('ADDED', server), nsY, line('ADDED', named(5, 'p')));
    feed(line('ADDED', cnp('to-all', 7, { egress: [{ toCIDR: ['0.0.0.0/0'] }] })), line('ADDED', cnp('deny-http', 8, { egressDeny: [{ toEntities: ['world'], toPorts: [{ ports: [{ port: 'http', protocol: 'TCP' }] }] }] })));
    expect(verdict()).toBe('deny');
    step(...lines(named));
    expect(verdict()).toBe('deny');
  }

  it('3264: a pod held fail-closed in a split step keeps the ports its port names give a deny', () => {
    namedPortHeld(several, (named) => [line('MODIFIED', named(9, 'p2')), line('ADDED', cnp('q', 10, { egress: [{ toCIDR: ['192.0.2.0/24'] }] }))]);
  });

  it('3264: so does a pod refused alone (2352)', () => {
    const refusesP2: Refuse = (events) => events.some((e) => e.type === 'upsertPod' && e.pod.labels.app === 'p2' && e.pod.failClosed !== true);
    namedPortHeld(refusesP2, (named) => [line('MODIFIED', named(9, 'p2'))]);
  });

  // Not fixed: the API server's addresses have no fail-closed form. `it.fails` until they have one.
  it('3265: an API server address the engine refuses alone stays world, which a kube-apiserver deny was to deny', () => {
    // With 12-entry maps the slice adding 10.0.1.3 (inside group g) overflows x/server's map: the new identity meets
    // to-world's rules.
    const A = '10.0.1.3';
    const { feed, engine, mirror } = rollingMirrorAgent({ mapCapacity: 12 }, { cidrGroups: true });
    const verdict = (ip: string): string => {
      const hit = engine.lookup('x/server', engine.identityOfIp(parseIp(ip)), 'egress', 6, 80);
      return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
    };
    const g = { apiVersion: 'cilium.io/v2', kind: 'CiliumCIDRGroup', metadata: md('g', 4, { labels: { env: 'a' } }), spec: { externalCIDRs: ['10.0.1.0/30'] } };
    const inY = (name: string, ip: string): Obj => ({ apiVersion: 'v1', kind: 'Pod', metadata: md(name, 3, { namespace: 'y', labels: { role: name } }), spec: { nodeName: 'n2', containers: [] }, status: { phase: 'Running', podIP: ip } });
    feed(line('ADDED', { apiVersion: 'v1', kind: 'Namespace', metadata: md('y', 2) }), line('ADDED', inY('a', '10.0.1.1')), line('ADDED', inY('b', '10.0.1.2')), line('ADDED', cnp('only-ext', 3, { egress: [{ toCIDR: ['198.51.100.0/24'] }] })));
    feed(line('ADDED', namespace), line('ADDED', server), line('ADDED', g), line('ADDED', slice(5, [])), line('ADDED', cnp('to-world', 6, { egress: [{ toEntities: ['world'] }], ingress: [{ fromEntities: ['world'] }] })), line('ADDED', cnp('deny-api', 7, { egressDeny: [{ toEntities: ['kube-apiserver'] }] })));
    expect(verdict(A)).toBe('allow');
    feed(line('MODIFIED', slice(8, [A])));
    expect(mirror.refusedObjects()).toEqual(['EndpointSlice/default/kubernetes']);
    // The input after denies A (the API server); the engine keeps the slice without it: world, allowed.
    expect(verdict(A)).toBe('deny');
  });
});
