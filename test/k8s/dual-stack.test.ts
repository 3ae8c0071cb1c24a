import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { EngineError, EngineEvent } from '../../src/engine/events.js';
import { ClusterMirror } from '../../src/k8s/mirror.js';
import { WatchStreamParser } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';
import { RESERVED_IDENTITIES } from '../../src/model/identity.js';
import { decideFlow } from '../../src/naive/evaluator.js';
import { parseScenario } from '../../src/scenario/format.js';
import { runScenario } from '../../src/scenario/run.js';

/**
 * A dual-stack pod (`status.podIPs`: one IPv4, one IPv6 address) read from a watch stream: the
 * engine's ipcache maps both addresses to the pod's identity, follows the pod when its identity
 * changes, and drops the address the pod loses.
 */
type Obj = Record<string, unknown>;
const pod = (rv: number, podIPs: string[], labels: Record<string, string> = { app: 'web' }): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'web', namespace: 'shop', resourceVersion: String(rv), labels },
  spec: { nodeName: 'node-a', containers: [{ name: 'c', image: 'i' }] },
  status: { phase: 'Running', podIP: podIPs[0], podIPs: podIPs.map((ip) => ({ ip })), hostIP: '192.0.2.1', hostIPs: [{ ip: '192.0.2.1' }, { ip: '2001:db8::1' }] },
});

function harness() {
  const mirror = new ClusterMirror({ nodeName: 'node-a' });
  // Pods with addresses of both families: IPv4 and IPv6 are both enabled (finding 2050).
  const engine = new Engine({ stack: 'dual' });
  const parser = new WatchStreamParser('pods');
  const step = (...objects: Obj[]) => {
    for (const item of parser.push(objects.map((object) => JSON.stringify({ type: 'MODIFIED', object })).join('\n'))) mirror.observe(item, 'pods');
    const batch = mirror.flush();
    const cs = engine.apply(batch.events as EngineEvent[]);
    batch.commit();
    return cs.ipcache.map((d) => `${d.op} ${d.prefix} ${d.identity}`).sort();
  };
  return { engine, step };
}

describe('dual-stack pods through the k8s adapter', () => {
  it('maps both addresses to the pod identity, moves both with it, and drops a lost one', () => {
    const h = harness();
    expect(h.step({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } })).toEqual([]);
    const added = h.step(pod(2, ['10.0.0.7', 'fd00::7']));
    const id = h.engine.identityOfPod('shop/web')!;
    expect(added).toEqual([`upsert 10.0.0.7/32 ${id}`, `upsert fd00::7/128 ${id}`]);
    expect(h.engine.identityOfIp(parseIp('10.0.0.7'))).toBe(id);
    expect(h.engine.identityOfIp(parseIp('fd00::7'))).toBe(id);

    const relabelled = h.step(pod(3, ['10.0.0.7', 'fd00::7'], { app: 'web', v: '2' }));
    const moved = h.engine.identityOfPod('shop/web')!;
    expect(moved).not.toBe(id);
    expect(relabelled).toEqual([`upsert 10.0.0.7/32 ${moved}`, `upsert fd00::7/128 ${moved}`]);

    expect(h.step(pod(4, ['10.0.0.7'], { app: 'web', v: '2' }))).toEqual([`delete fd00::7/128 ${moved}`]);
    expect(h.engine.identityOfIp(parseIp('fd00::7'))).toBe(RESERVED_IDENTITIES['world-ipv6']);
    expect(h.engine.identityOfIp(parseIp('10.0.0.7'))).toBe(moved);
  });
  it('takes an IPv6-first pod, and its IPv4 address when it gets one', () => {
    const h = harness();
    h.step({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } });
    const id = (): number => h.engine.identityOfPod('shop/web')!;
    expect(h.step(pod(2, ['fd00::7']))).toEqual([`upsert fd00::7/128 ${id()}`]);
    expect(h.step(pod(3, ['fd00::7', '10.0.0.7']))).toEqual([`upsert 10.0.0.7/32 ${id()}`]);
  });
});

describe('the engine refuses a pod with addresses no API server gives', () => {
  const base = { namespace: 'shop', name: 'web', labels: {}, serviceAccount: 'default', ports: [] };
  it('two of one family, or a primary address that is not the first', () => {
    const engine = new Engine();
    expect(() => engine.apply([{ type: 'upsertPod', pod: { ...base, ip: parseIp('10.0.0.1'), ips: [parseIp('10.0.0.1'), parseIp('10.0.0.2')] } }])).toThrow(/pod\.ips: two ipv4 addresses/);
    expect(() => engine.apply([{ type: 'upsertPod', pod: { ...base, ip: parseIp('10.0.0.1'), ips: [parseIp('fd00::1'), parseIp('10.0.0.1')] } }])).toThrow(/pod\.ips\[0\] \(fd00::1\) must be pod\.ip \(10\.0\.0\.1\)/);
    expect(() => engine.apply([{ type: 'upsertPod', pod: { ...base, ip: parseIp('10.0.0.1'), ips: [] } }])).toThrow(EngineError);
    expect(engine.endpoints()).toEqual([]);
  });
});

describe('dual-stack pods in scenarios', () => {
  const scenario = (pods: string, probes = '[{to: {ip: "fd00::5"}, port: 80}]'): string => `pods:\n${pods}\nsteps:\n  - probes: ${probes}\n    expect: [{probe: 0, deny: []}]\n`;
  it('reads ips (the first is the primary address) and refuses what a pod cannot have', () => {
    const s = parseScenario(scenario('  - {name: a/x, ips: [10.0.0.5, "fd00::5"]}\n  - {name: a/y}'), 'd.yaml');
    const run = runScenario(s, decideFlow);
    const x = run.finalState.pods.get('a/x')!;
    expect([x.ip.text, x.ips?.map((i) => i.text)]).toEqual(['10.0.0.5', ['10.0.0.5', 'fd00::5']]);
    // a/x at its own address is itself: only a/y -> fd00::5 is probed
    expect(run.steps[0]!.results.map((r) => `${r.from}->${r.to}`)).toEqual(['a/y->fd00::5']);
    expect(run.finalState.externals.size).toBe(0);
    expect(() => parseScenario(scenario('  - {name: a/x, ip: 10.0.0.5, ips: [10.0.0.5]}'), 'd.yaml')).toThrow(/d\.yaml pods\[0\]\.ips: give ip or ips, not both/);
    expect(() => parseScenario(scenario('  - {name: a/x, ips: [10.0.0.5, 10.0.0.6]}'), 'd.yaml')).toThrow(/d\.yaml pods\[0\]\.ips\[1\]: a second ipv4 address/);
    expect(() => parseScenario(scenario('  - {name: a/x, ips: []}'), 'd.yaml')).toThrow(/pods\[0\]\.ips: a pod has 1 or 2 addresses/);
  });
});
