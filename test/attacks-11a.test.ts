import { describe, expect, it } from 'vitest';
import { Engine, EngineError, parseIp, parseManifest } from '../src/index.js';
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
