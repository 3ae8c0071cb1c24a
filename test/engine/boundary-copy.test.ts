import { describe, expect, it } from 'vitest';
import { BoundaryCopier } from '../../src/engine/boundary-copy.js';
import { Engine, parseIp, parseManifest } from '../../src/index.js';
import type { EngineEvent, Pod } from '../../src/index.js';

type Labels = Record<string, string>;
type Port = { port: number; protocol: string; name?: string };

const pod = (name: string, labels: Labels, ip: string, ports: Port[] = []): Pod =>
  ({ namespace: 'default', name, labels, ip: parseIp(ip), serviceAccount: 'default', ports } as Pod);
const upsert = (p: Pod): EngineEvent => ({ type: 'upsertPod', pod: p });

/** The pods of the copied events, as the engine keeps them. */
function copiedPods(c: BoundaryCopier, events: EngineEvent[]): Pod[] {
  return c.events(events).map((e) => (e as { pod: Pod }).pod);
}

describe('boundary copies: one frozen copy per label map and port list given', () => {
  it('pods given one labels object share one frozen copy, with other pods between them and across batches', () => {
    const c = new BoundaryCopier();
    const web: Labels = { app: 'web' };
    const [a, m, b] = copiedPods(c, [upsert(pod('a', web, '10.0.0.2')), upsert(pod('m', { app: 'm' }, '10.0.0.3')), upsert(pod('b', web, '10.0.0.4'))]);
    const [d] = copiedPods(c, [upsert(pod('d', web, '10.0.0.5'))]);
    expect(a?.labels).not.toBe(web);
    expect(Object.isFrozen(a?.labels)).toBe(true);
    expect(b?.labels).toBe(a?.labels);
    expect(d?.labels).toBe(a?.labels);
    expect(m?.labels).toEqual({ app: 'm' });
  });

  it('a labels object changed after its copy gets a new copy; the pods copied before keep theirs', () => {
    const c = new BoundaryCopier();
    const web: Labels = { app: 'web' };
    const [a] = copiedPods(c, [upsert(pod('a', web, '10.0.0.2')), upsert(pod('m', { x: 'y' }, '10.0.0.3'))]);
    web.app = 'evil';
    const [b] = copiedPods(c, [upsert(pod('b', web, '10.0.0.4'))]);
    web.tier = 'x';
    const [d] = copiedPods(c, [upsert(pod('d', web, '10.0.0.5'))]);
    delete web.tier;
    delete web.app;
    web.other = 'evil';
    const [f] = copiedPods(c, [upsert(pod('f', web, '10.0.0.6'))]);
    expect(a?.labels).toEqual({ app: 'web' });
    expect(b?.labels).toEqual({ app: 'evil' });
    expect(d?.labels).toEqual({ app: 'evil', tier: 'x' });
    expect(f?.labels).toEqual({ other: 'evil' });
  });

  it('a `__proto__` label stays an own label of the shared copy', () => {
    const c = new BoundaryCopier();
    const given = JSON.parse('{"__proto__": "x", "app": "web"}') as Labels;
    const [a, b] = copiedPods(c, [upsert(pod('a', given, '10.0.0.2')), upsert(pod('b', given, '10.0.0.3'))]);
    expect(b?.labels).toBe(a?.labels);
    expect(Object.hasOwn(a?.labels ?? {}, '__proto__')).toBe(true);
    expect(Object.getPrototypeOf(a?.labels)).toBe(Object.prototype);
  });

  it('a Proxy answering differently on each read never changes a copy made before', () => {
    const c = new BoundaryCopier();
    let n = 0;
    const target: Labels = { app: 'web' };
    const given = new Proxy(target, { get: (t, k) => (k === 'app' ? `v${n++}` : Reflect.get(t, k)) });
    const [a] = copiedPods(c, [upsert(pod('a', given, '10.0.0.2'))]);
    const first = { ...a?.labels };
    const [b] = copiedPods(c, [upsert(pod('b', given, '10.0.0.3'))]);
    expect(a?.labels).toEqual(first);
    expect(b?.labels).not.toBe(a?.labels);
    expect(Object.isFrozen(b?.labels)).toBe(true);
  });

  it('port lists: shared while unchanged; an element changed in place, added or removed gives a new copy', () => {
    const c = new BoundaryCopier();
    const ports: Port[] = [{ port: 80, protocol: 'TCP', name: 'http' }];
    const [a, , b] = copiedPods(c, [upsert(pod('a', {}, '10.0.0.2', ports)), upsert(pod('m', {}, '10.0.0.3', [{ port: 1, protocol: 'UDP' }])), upsert(pod('b', {}, '10.0.0.4', ports))]);
    expect(b?.ports).toBe(a?.ports);
    expect(Object.isFrozen(a?.ports)).toBe(true);
    expect(Object.isFrozen(a?.ports[0])).toBe(true);
    (ports[0] as Port).port = 8080;
    const [d] = copiedPods(c, [upsert(pod('d', {}, '10.0.0.5', ports))]);
    delete (ports[0] as Port).name;
    const [f] = copiedPods(c, [upsert(pod('f', {}, '10.0.0.6', ports))]);
    ports.push({ port: 53, protocol: 'UDP' });
    const [g] = copiedPods(c, [upsert(pod('g', {}, '10.0.0.7', ports))]);
    expect(a?.ports).toEqual([{ port: 80, protocol: 'TCP', name: 'http' }]);
    expect(d?.ports).toEqual([{ port: 8080, protocol: 'TCP', name: 'http' }]);
    expect(f?.ports).toEqual([{ port: 8080, protocol: 'TCP' }]);
    expect(g?.ports).toEqual([{ port: 8080, protocol: 'TCP' }, { port: 53, protocol: 'UDP' }]);
  });
});

describe('engine: a shared labels copy never carries a later change of the caller', () => {
  const onlyWeb = () =>
    parseManifest({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'p', namespace: 'default' },
      spec: { podSelector: { matchLabels: { role: 'db' } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: 'web' } } }] }] } }, 't');
  const base = (): EngineEvent[] => [{ type: 'upsertNamespace', name: 'default', labels: {} }, { type: 'upsertPolicy', policy: onlyWeb() }, { type: 'upsertPod', pod: pod('db', { role: 'db' }, '10.0.0.1'), local: true }];
  const admits = (e: Engine, peer: string): boolean => {
    const id = e.identityOfPod(`default/${peer}`);
    const r = id === undefined ? undefined : e.lookup('default/db', id, 'ingress', 6, 5432);
    return r !== undefined && !r.entry.deny;
  };
  const maps = (e: Engine): unknown => e.endpoints().map((ep) => [ep, e.mapState(ep)]);

  it('labels reused (another pod between) after the caller changed them: the later pod gets its own labels', () => {
    const e = new Engine();
    const labels: Labels = { app: 'web' };
    e.apply([...base(), upsert(pod('a', labels, '10.0.0.2')), upsert(pod('m', { app: 'm' }, '10.0.0.3'))]);
    labels.app = 'evil';
    e.apply([upsert(pod('b', labels, '10.0.0.4'))]);
    expect(admits(e, 'a')).toBe(true);
    expect(admits(e, 'b')).toBe(false);
    const fresh = new Engine();
    fresh.apply([...base(), upsert(pod('a', { app: 'web' }, '10.0.0.2')), upsert(pod('m', { app: 'm' }, '10.0.0.3')), upsert(pod('b', { app: 'evil' }, '10.0.0.4'))]);
    expect(maps(e)).toEqual(maps(fresh));
  });
});
