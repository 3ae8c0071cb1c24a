import { describe, expect, it } from 'vitest';
import { applyChangeSet, Engine, EngineError, MemoryBackend, parseIp, parseManifest, reconcile } from '../src/index.js';
import type { EngineEvent, Pod } from '../src/index.js';

const ns = (name: string, labels: Record<string, string> = {}): EngineEvent => ({ type: 'upsertNamespace', name, labels });
const pod = (name: string, labels: Record<string, string>, ip: string): Pod => ({ namespace: 'default', name, labels, ip: parseIp(ip), serviceAccount: 'default', ports: [] });
/** db pods accept ingress from app=web only. */
const onlyWeb = () =>
  parseManifest({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'p', namespace: 'default' },
    spec: { podSelector: { matchLabels: { role: 'db' } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: 'web' } } }] }] } }, 't');
const base = (): EngineEvent[] => [ns('default'), { type: 'upsertPolicy', policy: onlyWeb() }, { type: 'upsertPod', pod: pod('db', { role: 'db' }, '10.0.0.1'), local: true }];

function maps(e: Engine): unknown {
  return e.endpoints().map((ep) => [ep, e.mapState(ep)]);
}

/** Does db's map let `peer` in on TCP 5432? */
function dbAdmits(e: Engine, peer: string): boolean {
  const id = e.identityOfPod(`default/${peer}`);
  if (id === undefined) return false;
  const r = e.lookup('default/db', id, 'ingress', 6, 5432);
  return r !== undefined && !r.entry.deny;
}

describe('finding 300: the engine keeps no object the caller may change later', () => {
  it('a labels object reused for a second pod after the caller changed it gives that pod its own labels', () => {
    const e = new Engine();
    const labels: Record<string, string> = { app: 'web' };
    e.apply([...base(), { type: 'upsertPod', pod: pod('a', labels, '10.0.0.2') }]);
    labels.app = 'evil';
    e.apply([{ type: 'upsertPod', pod: pod('b', labels, '10.0.0.3') }]);
    expect(dbAdmits(e, 'a')).toBe(true);
    expect(dbAdmits(e, 'b')).toBe(false);
    const fresh = new Engine();
    fresh.apply([...base(), { type: 'upsertPod', pod: pod('a', { app: 'web' }, '10.0.0.2') }, { type: 'upsertPod', pod: pod('b', { app: 'evil' }, '10.0.0.3') }]);
    expect(maps(e)).toEqual(maps(fresh));
  });

  it('labels changed in place after apply change nothing, even through a rebuild after an internal error', () => {
    let fault = false;
    const e = new Engine({ faultHook: () => { if (fault) { fault = false; throw new Error('injected'); } } });
    const p = pod('a', { app: 'other' }, '10.0.0.2');
    e.apply([...base(), { type: 'upsertPod', pod: p }]);
    const before = maps(e);
    (p.labels as Record<string, string>).app = 'web';
    fault = true;
    expect(() => e.apply([ns('x')])).toThrow('injected');
    expect(dbAdmits(e, 'a')).toBe(false);
    expect(maps(e)).toEqual(before);
  });

  it("a pod's address changed in place after apply does not move the pod", () => {
    let fault = false;
    const e = new Engine({ faultHook: () => { if (fault) { fault = false; throw new Error('injected'); } } });
    const p = pod('a', { app: 'web' }, '10.0.0.2');
    e.apply([...base(), { type: 'upsertPod', pod: p }]);
    const ipcache = e.ipcache();
    Object.assign(p.ip, parseIp('10.0.0.9'));
    fault = true;
    expect(() => e.apply([ns('x')])).toThrow('injected');
    expect(e.ipcache()).toEqual(ipcache);
    expect(e.identityOfIp(parseIp('10.0.0.9'))).not.toBe(e.identityOfPod('default/a'));
  });
});

describe('finding 301: labels given as a Map (or class instance) are refused, not read as no labels', () => {
  /** db accepts everyone but the namespaces labelled team=red. */
  const denyRed = () =>
    parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name: 'deny-red' },
      spec: { endpointSelector: { matchLabels: { role: 'db' } }, ingress: [{ fromEntities: ['all'] }],
        ingressDeny: [{ fromEndpoints: [{ matchLabels: { 'io.cilium.k8s.namespace.labels.team': 'red' } }] }] } }, 't');

  it('a namespace whose labels are a Map: refused, nothing changes (it used to be a namespace without team=red, let in)', () => {
    const e = new Engine();
    e.apply([ns('default'), { type: 'upsertPolicy', policy: denyRed() }, { type: 'upsertPod', pod: pod('db', { role: 'db' }, '10.0.0.1'), local: true }]);
    const before = maps(e);
    const red = new Map([['team', 'red']]) as unknown as Record<string, string>;
    const intruder: Pod = { ...pod('x', {}, '10.0.0.7'), namespace: 'red' };
    expect(() => e.apply([ns('red', red), { type: 'upsertPod', pod: intruder }])).toThrow(/event #0 \(upsertNamespace\): labels must be a plain object/);
    expect(maps(e)).toEqual(before);
    expect(e.identityOfPod('red/x')).toBeUndefined();
  });

  it('pod labels and identity labels likewise; Object.create(null) records are accepted', () => {
    const e = new Engine();
    e.apply([ns('default')]);
    class Labels { app = 'web'; }
    expect(() => e.apply([{ type: 'upsertPod', pod: pod('a', new Labels() as unknown as Record<string, string>, '10.0.0.2') }])).toThrow(/pod\.labels must be a plain object/);
    const bare = Object.assign(Object.create(null) as Record<string, string>, { app: 'web' });
    e.apply([{ type: 'upsertPod', pod: pod('a', bare, '10.0.0.2') }]);
    expect(e.identityLabels(e.identityOfPod('default/a')!)?.some((l) => l.key === 'app' && l.value === 'web')).toBe(true);
    const x = new Engine({ identitySource: 'external' });
    expect(() => x.apply([{ type: 'upsertIdentity', id: 300, labels: new Map([['k8s:app', 'web']]) as unknown as Record<string, string> }])).toThrow(EngineError);
  });
});

describe('finding 302: a parsed policy cannot be changed after parseManifest', () => {
  const denyAll = () =>
    parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'deny', namespace: 'default' },
      spec: { endpointSelector: { matchLabels: { role: 'db' } }, ingress: [{ fromEntities: ['all'] }], ingressDeny: [{ fromEntities: ['all'] }] } }, 't');

  it('its rules, peers and ports are frozen: the engine never sees a shape the reader did not make', () => {
    const p = denyAll();
    const rule = p.rules.find((r) => r.verdict === 'deny')!;
    expect(() => { (rule as { verdict: string }).verdict = 'allow'; }).toThrow(TypeError);
    expect(() => { (p.rules as unknown[]).pop(); }).toThrow(TypeError);
    expect(() => { (rule.peers as unknown[]).length = 0; }).toThrow(TypeError);
    expect(p.rules.filter((r) => r.verdict === 'deny')).toHaveLength(1);
  });

  it('a policy changed in place after upsert cannot reach the maps through a rebuild', () => {
    let fault = false;
    const e = new Engine({ faultHook: () => { if (fault) { fault = false; throw new Error('injected'); } } });
    const p = denyAll();
    e.apply([ns('default'), { type: 'upsertPolicy', policy: p }, { type: 'upsertPod', pod: pod('db', { role: 'db' }, '10.0.0.1'), local: true }, { type: 'upsertPod', pod: pod('a', { app: 'web' }, '10.0.0.2') }]);
    expect(dbAdmits(e, 'a')).toBe(false);
    try { (p.rules as unknown[]).splice(0, p.rules.length, ...p.rules.filter((r) => r.verdict === 'allow')); } catch { /* frozen */ }
    fault = true;
    expect(() => e.apply([ns('x')])).toThrow('injected');
    expect(dbAdmits(e, 'a')).toBe(false);
  });

  it("the manifest document stays the caller's (not frozen)", () => {
    const doc = { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'p', namespace: 'default' }, spec: { podSelector: {} } };
    parseManifest(doc, 't');
    expect(Object.isFrozen(doc) || Object.isFrozen(doc.spec)).toBe(false);
  });
});

describe('finding 303: what the engine returns cannot change what it holds', () => {
  const events = (): EngineEvent[] => [...base(), { type: 'upsertPod', pod: pod('a', { app: 'web' }, '10.0.0.2') }];
  const written = (b: MemoryBackend) => b.endpoints().map((ep) => [ep, b.dump(ep)]);

  it("a delta's key changed in place by the caller does not move the engine's later delete", () => {
    const e = new Engine();
    const b = new MemoryBackend();
    const cs = e.apply(events());
    applyChangeSet(b, cs);
    const d = cs.deltas.find((x) => x.key.identity === e.identityOfPod('default/a'))!;
    try { (d.key as { port: number }).port = 8080; } catch { /* frozen */ }
    applyChangeSet(b, e.apply([{ type: 'deletePolicy', ref: { kind: 'NetworkPolicy', namespace: 'default', name: 'p' } }]));
    const fresh = new Engine();
    const want = new MemoryBackend();
    fresh.apply(events());
    fresh.apply([{ type: 'deletePolicy', ref: { kind: 'NetworkPolicy', namespace: 'default', name: 'p' } }]);
    reconcile(fresh, want);
    expect(written(b)).toEqual(written(want));
  });

  it('the map snapshot is a copy: deleting from it or changing a record leaves the engine (and reconcile) alone', () => {
    const e = new Engine();
    e.apply(events());
    const before = [...e.mapState('default/db')].map(([k, r]) => [k, { ...r.entry }]);
    const snap = e.mapState('default/db') as unknown as Map<string, { entry: { deny: boolean; precedence: number } }>;
    const [k0, r0] = [...snap][0]!;
    try { r0.entry.precedence = 0; } catch { /* frozen */ }
    snap.delete(k0);
    expect([...e.mapState('default/db')].map(([k, r]) => [k, { ...r.entry }])).toEqual(before);
    const b = new MemoryBackend();
    reconcile(e, b);
    expect(b.dump('default/db')).toHaveLength(before.length);
  });

  it("an identity's labels as returned cannot be edited", () => {
    const e = new Engine();
    e.apply(events());
    const id = e.identityOfPod('default/a')!;
    const labels = e.identityLabels(id)!;
    try { (labels[0] as { value: string }).value = 'x'; (labels as unknown[]).length = 0; } catch { /* frozen */ }
    expect(e.identityLabels(id)!.some((l) => l.key === 'app' && l.value === 'web')).toBe(true);
  });
});

describe('finding 304: what validation checks is what the engine keeps (each field read once)', () => {
  it('a getter answering a valid pod to validation and another one later is refused or held to its first answer', () => {
    const e = new Engine();
    e.apply(base());
    const before = maps(e);
    let reads = 0;
    const sneaky = { type: 'upsertPod', get pod() { reads++; return reads === 1 ? pod('a', { app: 'other' }, '10.0.0.2') : pod('a', { app: 'web' }, '10.0.0.2'); } } as unknown as EngineEvent;
    e.apply([sneaky]);
    expect(dbAdmits(e, 'a')).toBe(false);
    expect(maps(e)).toEqual(before);
  });

  it('a labels getter is read once: the engine keeps (and validated) its first answer', () => {
    const e = new Engine();
    e.apply(base());
    const before = maps(e);
    let reads = 0;
    const labels = Object.defineProperty({}, 'app', { enumerable: true, get: () => (++reads === 1 ? 'web' : 42) }) as Record<string, string>;
    // One read: 'web', kept as read.
    e.apply([{ type: 'upsertPod', pod: pod('a', labels, '10.0.0.2') }]);
    expect(reads).toBe(1);
    expect(e.identityLabels(e.identityOfPod('default/a')!)?.find((l) => l.key === 'app')?.value).toBe('web');
    expect(dbAdmits(e, 'a')).toBe(true);
    expect(maps(e)).not.toEqual(before);
  });

  it('a sparse batch is refused with the hole named, before anything runs', () => {
    const e = new Engine();
    e.apply(base());
    const before = maps(e);
    const sparse = [{ type: 'upsertPod', pod: pod('a', { app: 'web' }, '10.0.0.2') }] as EngineEvent[];
    sparse[2] = { type: 'upsertPod', pod: pod('b', { app: 'web' }, '10.0.0.3') };
    expect(() => e.apply(sparse)).toThrow(/event #1 \(unknown\): is not an event object/);
    expect(maps(e)).toEqual(before);
    expect(e.stats().transactions).toBe(1);
  });

  it('a getter that throws is a malformed event (EngineError), not an internal error', () => {
    const e = new Engine();
    e.apply(base());
    const bad = { type: 'upsertPod', get pod(): Pod { throw new Error('boom'); } } as unknown as EngineEvent;
    expect(() => e.apply([bad])).toThrow(EngineError);
    expect(() => e.apply([bad])).toThrow(/event #0 \(upsertPod\): malformed event: boom/);
  });
});
