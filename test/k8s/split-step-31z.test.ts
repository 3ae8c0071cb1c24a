import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../../src/engine/events.js';
import { Engine } from '../../src/engine/engine.js';
import { ClusterMirror } from '../../src/k8s/mirror.js';
import { WatchStreamParser } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';
import { cnp, line, md, namespace, server, type Obj } from './refused-objects.js';

/** A mirror feeding an engine that refuses every batch `refuse` names (as a full map would); `onCommit` after each commit. */
function refusingAgent(refuse: (events: readonly EngineEvent[]) => boolean, onCommit: () => void) {
  const mirror = new ClusterMirror({ nodeName: 'n1' });
  const engine = new Engine();
  const parser = new WatchStreamParser('w');
  const feed = (...lines: string[]): void => {
    for (const item of parser.push(lines.join('\n') + '\n')) mirror.observe(item, 'w');
    for (let i = 0; i < 40 && !mirror.idle; i++) {
      const b = mirror.flush();
      const events = b.events as EngineEvent[];
      if (refuse(events)) {
        b.rollback();
        continue;
      }
      engine.apply(events);
      b.commit();
      onCommit();
    }
  };
  return { feed, engine, mirror };
}

const pod = (rv: number, ip: string): Obj => ({ apiVersion: 'v1', kind: 'Pod', metadata: md('p', rv, { namespace: 'y', labels: { app: 'p' } }), spec: { nodeName: 'n2', containers: [] }, status: { phase: 'Running', podIP: ip } });
const slice = (rv: number, addresses: string[]): Obj => ({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4', metadata: md('kubernetes', rv, { namespace: 'default', labels: { 'kubernetes.io/service-name': 'kubernetes' } }), endpoints: addresses.map((a) => ({ addresses: [a] })), ports: [{ name: 'https', port: 6443, protocol: 'TCP' }] });

describe('31z: a split step never commits a part allowing what the inputs before and after it deny', () => {
  it('3260: a pod readdressed in a split step holds its old address too', () => {
    const A = '10.0.1.1';
    const verdicts: string[] = [];
    const verdict = (ip: string): string => {
      const hit = engine.lookup('x/server', engine.identityOfIp(parseIp(ip)), 'egress', 6, 80);
      return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
    };
    const several = (events: readonly EngineEvent[]): boolean => new Set(events.map((e) => e.type)).size > 1;
    let refusing = false;
    const { feed, engine } = refusingAgent((events) => refusing && several(events), () => verdicts.push(verdict(A)));
    feed(line('ADDED', namespace), line('ADDED', server), line('ADDED', { apiVersion: 'v1', kind: 'Namespace', metadata: md('y', 4) }), line('ADDED', pod(5, A)), line('ADDED', slice(6, ['192.0.2.1'])));
    feed(line('ADDED', cnp('to-net', 7, { egress: [{ toCIDR: ['10.0.0.0/8'] }] })), line('ADDED', cnp('deny-api', 8, { egressDeny: [{ toEntities: ['kube-apiserver'] }] })));
    // Before: A is the pod, which no rule allows. After: A is the API server, denied.
    expect(verdict(A)).toBe('deny');
    verdicts.length = 0;
    refusing = true;
    feed(line('MODIFIED', pod(9, '10.0.1.2')), line('MODIFIED', slice(10, ['192.0.2.1', A])));
    expect(verdicts.length).toBeGreaterThan(0);
    expect(verdicts.filter((v) => v !== 'deny')).toEqual([]);
    expect(verdict(A)).toBe('deny');
  });

  it('3261: a ClusterNetworkPolicy deleted in a split step keeps no Pass past the policies it skipped', () => {
    // Before: x/server -> y/p passes the Admin Pass (priority 10), and the CiliumNetworkPolicy tier isolates x/server's
    // egress (198.51.100.0/24 only): denied. One step deletes the Pass and adds a CiliumNetworkPolicy allowing app=p;
    // after it the Admin Deny (priority 20) denies. Held at a deny side that kept the Pass while the allow committed, the
    // Deny was skipped and the allow admitted it.
    const P = '10.0.1.1';
    const verdicts: string[] = [];
    const verdict = (ip: string): string => {
      const hit = engine.lookup('x/server', engine.identityOfIp(parseIp(ip)), 'egress', 6, 80);
      return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
    };
    let refusing = false;
    const { feed, engine } = refusingAgent((events) => refusing && events.length > 1, () => verdicts.push(verdict(P)));
    const tiered = (name: string, rv: number, priority: number, action: string): Obj => ({ apiVersion: 'policy.networking.k8s.io/v1beta1', kind: 'ClusterNetworkPolicy', metadata: md(name, rv), spec: { tier: 'Admin', priority, subject: { namespaces: {} }, egress: [{ action, to: [{ pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: 'p' } } } }] }] } });
    const passP = tiered('pass-p', 7, 10, 'Pass');
    feed(line('ADDED', namespace), line('ADDED', server), line('ADDED', { apiVersion: 'v1', kind: 'Namespace', metadata: md('y', 4) }), line('ADDED', pod(5, P)));
    feed(line('ADDED', cnp('only-ext', 6, { egress: [{ toCIDR: ['198.51.100.0/24'] }] })), line('ADDED', passP), line('ADDED', tiered('deny-p', 8, 20, 'Deny')));
    expect(verdict(P)).toBe('deny');
    verdicts.length = 0;
    refusing = true;
    feed(line('DELETED', passP), line('ADDED', cnp('allow-p', 9, { egress: [{ toEndpoints: [{ matchLabels: { app: 'p', 'k8s:io.kubernetes.pod.namespace': 'y' } }] }] })));
    expect(verdicts.length).toBeGreaterThan(0);
    expect(verdicts.filter((v) => v !== 'deny')).toEqual([]);
    expect(verdict(P)).toBe('deny');
  });
});
