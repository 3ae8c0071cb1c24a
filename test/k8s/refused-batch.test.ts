import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../../src/engine/events.js';
import { Engine, type EngineOptions } from '../../src/engine/engine.js';
import { ClusterMirror } from '../../src/k8s/mirror.js';
import { WatchStreamParser } from '../../src/k8s/watch.js';

/**
 * One object the engine refuses (two valid policies whose L7 parsers conflict on a port, which
 * Cilium refuses per endpoint: pkg/policy/rule.go mergePortProto "cannot merge conflicting L7
 * parsers") must not make the agent drop the other changes of its batch for good. Before, a
 * refused batch was forgotten: an ingressDeny that arrived with the conflicting policy was never
 * applied, even after the conflict was deleted (fail-open), and a conflict in the first relist
 * left the node with no endpoint at all.
 */
type Obj = Record<string, unknown>;
const ev = (type: string, object: Obj): string => JSON.stringify({ type, object });
const ns = (rv: number): Obj => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x', resourceVersion: String(rv) } });
const pod = (name: string, rv: number, node: string, ip: string): Obj => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'x', resourceVersion: String(rv), labels: { app: name } }, spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip } });
const cnp = (name: string, rv: number, spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'x', resourceVersion: String(rv) }, spec: { endpointSelector: { matchLabels: { app: 'server' } }, ...spec } });
const l7 = (rules: Obj): Obj => ({ ingress: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }], rules }] }] });
const kafka = (rv: number) => cnp('kafka', rv, l7({ kafka: [{ topic: 'foo' }] }));
const http = (rv: number) => cnp('http', rv, l7({ http: [{ method: 'GET' }] }));
const deny = (rv: number) => cnp('deny', rv, { ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }] }] });

function agent(options: EngineOptions = {}) {
  const mirror = new ClusterMirror({ nodeName: 'n1' });
  const engine = new Engine(options);
  const parser = new WatchStreamParser('w');
  /** Feeds lines, then flushes as the agent does (again while work waits); returns what each flush did. */
  const step = (...lines: string[]): string[] => {
    for (const item of parser.push(lines.join('\n'))) mirror.observe(item, 'w');
    const out: string[] = [];
    for (let i = 0; i < 50; i++) {
      const b = mirror.flush();
      try {
        engine.apply(b.events as EngineEvent[]);
        b.commit();
        out.push(b.events.map((e) => e.type).join('+'));
      } catch {
        b.rollback();
        out.push('refused');
      }
      if (mirror.idle) return out;
    }
    throw new Error('the mirror never settles');
  };
  const verdict = (): string => {
    const id = engine.identityOfPod('x/client');
    const hit = id === undefined ? undefined : engine.lookup('x/server', id, 'ingress', 6, 80);
    return hit === undefined ? 'none' : hit.entry.deny ? 'deny' : 'allow';
  };
  return { step, verdict, engine };
}

describe('agent: a refused batch', () => {
  it('applies the rest of the batch (halving it); the refused object waits', () => {
    const a = agent();
    a.step(ev('ADDED', ns(1)), ev('ADDED', pod('server', 2, 'n1', '10.0.0.1')), ev('ADDED', pod('client', 3, 'n2', '10.0.0.2')), ev('ADDED', kafka(4)));
    expect(a.verdict()).toBe('allow');
    // The batch refused, both are held at their deny sides until both have committed so (finding 2916, 31b); then
    // their own versions, refused together, in halves: deny commits, http, refused alone, stays at its deny side
    // (finding 2433: server's ingress isolated, none of its allows).
    expect(a.step(ev('ADDED', deny(5)), ev('ADDED', http(6)))).toEqual(['refused', 'upsertPolicy+upsertPolicy', 'refused', 'upsertPolicy', 'refused', '']);
    expect(a.verdict()).toBe('deny');
    // The conflicting policy goes: its deny side with it, nothing waits any more.
    expect(a.step(ev('DELETED', http(7)))).toEqual(['deletePolicy']);
    expect(a.verdict()).toBe('deny');
  });
  it('retries a refused object after the next committed change (what it conflicted with may be gone)', () => {
    const a = agent();
    a.step(ev('ADDED', ns(1)), ev('ADDED', pod('server', 2, 'n1', '10.0.0.1')), ev('ADDED', pod('client', 3, 'n2', '10.0.0.2')), ev('ADDED', kafka(4)));
    expect(a.step(ev('ADDED', http(5)))).toEqual(['refused', 'upsertPolicy']);
    // http's deny side is in force (finding 2433), so the delete commits alone (finding 743's wait is for a refused policy
    // none of whose denies is in force); http is read again after it.
    expect(a.step(ev('DELETED', kafka(6)))).toEqual(['deletePolicy', 'upsertPolicy']);
    expect(a.engine.l7Table('x/server').length).toBeGreaterThan(0);
  });
  it('retries in the batch order: upserts before deletes', () => {
    const a = agent();
    a.step(ev('ADDED', ns(1)), ev('ADDED', pod('server', 2, 'n1', '10.0.0.1')), ev('ADDED', pod('client', 3, 'n2', '10.0.0.2')), ev('ADDED', kafka(4)), ev('ADDED', deny(5)));
    // The deny's replacement arrives with its delete and with a refused object: the replacement lands first.
    const replacement = cnp('deny2', 7, { ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }] }] });
    // http, refused alone, is held at its deny side (finding 2433); the old deny's delete then commits after its
    // replacement (finding 743 holds a delete back only with a refused policy none of whose denies is in force).
    // All three first at their deny sides (finding 2916, 31b: the old deny's delete at its deny side), then their own
    // versions in halves, upserts first.
    expect(a.step(ev('DELETED', deny(6)), ev('ADDED', replacement), ev('ADDED', http(8)))).toEqual(['refused', 'upsertPolicy+upsertPolicy+upsertPolicy', 'refused', 'refused', 'upsertPolicy', 'refused', 'refused', 'deletePolicy', 'refused', '']);
    expect(a.verdict()).toBe('deny');
    expect([...new Set(a.engine.policyOf('x/server').map((r) => r.origin.policy.name))].sort()).toEqual(['deny2', 'kafka']);
    // The conflict goes: the refused policy is read again and commits.
    expect(a.step(ev('DELETED', kafka(9)))).toEqual(['deletePolicy', 'upsertPolicy']);
    expect([...new Set(a.engine.policyOf('x/server').map((r) => r.origin.policy.name))].sort()).toEqual(['deny2', 'http']);
  });
  it('finding 743: a policy delete never commits apart from its refused replacement (a relist swapping deny-a for a deny-b the map cannot hold)', () => {
    const a = agent({ mapCapacity: 16 });
    const denyNamed = (name: string, rv: number, ports: number[]): Obj => cnp(name, rv, { ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }], ...(ports.length ? { toPorts: [{ ports: ports.map((p) => ({ port: String(p), protocol: 'TCP' })) }] } : {}) }] });
    a.step(ev('ADDED', ns(1)), ev('ADDED', pod('server', 2, 'n1', '10.0.0.1')), ev('ADDED', pod('client', 3, 'n2', '10.0.0.2')), ev('ADDED', denyNamed('deny-a', 4, [])));
    expect(a.verdict()).toBe('deny');
    // deny-b (40 ports, 70-109) overflows server's map of 16: the listed state cannot be enforced whole.
    const manyPorts = Array.from({ length: 40 }, (_, i) => 70 + i);
    // deny-b's deny side (with deny-a's, finding 2916), then alone, is refused; its deny-all side (finding 2542, 29b)
    // commits first, deny-a's deny side after it; then their own forms: deny-b and its deny side refused again, its
    // deny-all side in force, the delete after it.
    const flushes = a.step(ev('DELETED', denyNamed('deny-a', 5, [])), ev('ADDED', denyNamed('deny-b', 6, manyPorts)));
    expect(flushes.slice(0, 9)).toEqual(['refused', 'refused', 'refused', 'upsertPolicy', 'upsertPolicy', 'refused', 'refused', 'refused', 'deletePolicy']);
    expect(a.verdict()).toBe('deny');
  });
  it('a big refused batch is retried in halves: a few refusals, not one transaction per object', () => {
    const a = agent();
    a.step(ev('ADDED', ns(1)), ev('ADDED', pod('server', 2, 'n1', '10.0.0.1')), ev('ADDED', pod('client', 3, 'n2', '10.0.0.2')), ev('ADDED', kafka(4)));
    const pods = Array.from({ length: 60 }, (_, i) => ev('ADDED', pod(`p${i}`, 100 + i, 'n2', `10.1.0.${i}`)));
    const flushes = a.step(ev('ADDED', deny(5)), ev('ADDED', http(6)), ...pods);
    expect(flushes.filter((f) => f === 'refused').length).toBeLessThanOrEqual(12); // log2(62) halvings and the refused object's own tries
    expect(flushes.length).toBeLessThanOrEqual(20);
    expect(a.verdict()).toBe('deny');
    expect(a.engine.identityOfPod('x/p59')).toBeDefined();
  });
  it('distill agent: a conflict in the first relist still leaves the other endpoints enforced', () => {
    const webDeny = { ...deny(6), spec: { endpointSelector: { matchLabels: { app: 'web' } }, ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }] }] } };
    const lines = [ev('ADDED', ns(1)), ev('ADDED', pod('server', 2, 'n1', '10.0.0.1')), ev('ADDED', pod('web', 3, 'n1', '10.0.0.3')), ev('ADDED', pod('client', 4, 'n2', '10.0.0.2')), ev('ADDED', kafka(5)), ev('ADDED', http(6)), ev('ADDED', webDeny)];
    const r = spawnSync('node', ['dist/cli/main.js', 'agent', '--node', 'n1', '--watch', '-', '--exit-at-eof', '--json'], { encoding: 'utf8', input: lines.join('\n') });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { refusals: number; maps: { endpoint: string; entries: { verdict: string; labels: string[] }[] }[] };
    expect(out.refusals).toBeGreaterThan(0);
    // x/server's policy cannot be computed: the engine refuses the pod alone, which is held fail-closed (finding 2352,
    // round 27q): an endpoint whose map is empty (default deny both ways), its address the unallocated number, which
    // x/web's map denies where it admits every peer. x/web's deny is in force.
    expect(out.maps.map((m) => m.endpoint)).toEqual(['x/server', 'x/web']);
    expect(out.maps[0]!.entries).toEqual([]);
    const web = out.maps[1]!.entries.filter((e) => e.verdict === 'deny');
    expect(web.map((e) => e.labels.includes('k8s:app=client'))).toEqual([true, false]);
    expect(web[1]!.labels).toEqual(['reserved:unallocated-identity']);
  });
});
