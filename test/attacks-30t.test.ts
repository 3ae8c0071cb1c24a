import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../src/engine/events.js';
import { mirrorAgent } from './k8s/mirror-agent.js';

/** Review 30t of 30i's fail-closed mirror changes (docs/attack-findings-30t.md). */
type Obj = Record<string, unknown>;
const T0 = Date.parse('2026-01-01T00:00:00Z');
const ev = (type: string, object: Obj): string => JSON.stringify({ type, object });
const pod = (name: string, rv: number, node: string, app: string, ips: string[], deleteAt?: number): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'x', resourceVersion: String(rv), labels: { app }, ...(deleteAt === undefined ? {} : { deletionTimestamp: new Date(deleteAt).toISOString(), deletionGracePeriodSeconds: 30 }) },
  spec: { nodeName: node, containers: [{ name: 'c', image: 'i' }] },
  status: { phase: 'Running', podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) },
});
const nsX = ev('ADDED', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x', resourceVersion: '1' } });
const denyEvilAllowCidr = ev('ADDED', {
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumClusterwideNetworkPolicy',
  metadata: { name: 'p', resourceVersion: '3' },
  spec: { endpointSelector: { matchLabels: { app: 'server' } }, ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'evil' } }] }], ingress: [{ fromCIDR: ['10.0.0.0/8', 'fd00::/8'] }] },
});
const idAt = (a: ReturnType<typeof mirrorAgent>, ip: string): number | undefined => a.engine.ipcache().find((e) => e.prefix === `${ip}/${ip.includes(':') ? 128 : 32}`)?.identity;

describe('2920. a pod claiming one address of a dual-stack pod past its deadline leaves the other held fail-closed', () => {
  const evil = pod('evil', 2, 'n2', 'evil', ['10.0.0.9', 'fd00::9'], T0 + 30_000);
  const other = pod('other', 4, 'n2', 'other', ['10.0.0.9']);
  it('incrementally: the deadline passes after the other pod took the IPv4 address', () => {
    let t = T0;
    const a = mirrorAgent('n1', { now: () => t, elapsed: () => t });
    a.step('w', nsX, ev('ADDED', pod('server', 1, 'n1', 'server', ['10.0.0.1'])), ev('ADDED', evil), denyEvilAllowCidr);
    a.step('w', ev('ADDED', other));
    t += 31_000;
    const b = a.mirror.flush();
    a.engine.apply(b.events as EngineEvent[]);
    b.commit();
    expect(idAt(a, '10.0.0.9')).not.toBe(255);
    // Before: evil was dropped whole, fd00::9 left no /128 entry (world, which the fd00::/8 allow admits).
    expect(idAt(a, 'fd00::9')).toBe(255);
  });
  it('a fresh agent reading both past the deadline agrees', () => {
    const t = T0 + 31_000;
    const a = mirrorAgent('n1', { now: () => t, elapsed: () => t });
    a.step('w', nsX, ev('ADDED', pod('server', 1, 'n1', 'server', ['10.0.0.1'])), ev('ADDED', evil), ev('ADDED', other), denyEvilAllowCidr);
    expect(idAt(a, '10.0.0.9')).not.toBe(255);
    expect(idAt(a, 'fd00::9')).toBe(255);
    // Its DELETED ends the hold.
    a.step('w', ev('DELETED', { ...evil, metadata: { name: 'evil', namespace: 'x', resourceVersion: '9' } }));
    expect(idAt(a, 'fd00::9')).toBeUndefined();
  });
});

describe('2921. an expired pod that gave an address to another pod gets it back, fail-closed, when that pod leaves it', () => {
  const tick = (a: ReturnType<typeof mirrorAgent>): void => {
    const b = a.mirror.flush();
    a.engine.apply(b.events as EngineEvent[]);
    b.commit();
  };
  const gone = (name: string, rv: number): string => ev('DELETED', { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'x', resourceVersion: String(rv) } });
  it('the other pod took the address before the deadline, then is deleted while the expired one is still there', () => {
    let t = T0;
    const a = mirrorAgent('n1', { now: () => t, elapsed: () => t });
    a.step('w', nsX, ev('ADDED', pod('server', 1, 'n1', 'server', ['10.0.0.1'])), ev('ADDED', pod('evil', 2, 'n2', 'evil', ['10.0.0.9'], T0 + 30_000)), denyEvilAllowCidr);
    a.step('w', ev('ADDED', pod('other', 4, 'n2', 'other', ['10.0.0.9'])));
    t += 31_000;
    tick(a);
    expect(idAt(a, '10.0.0.9')).not.toBe(255);
    a.step('w', gone('other', 5));
    // Before: no /32 entry (world, which the 10.0.0.0/8 allow admits) while the cluster still holds evil there.
    expect(idAt(a, '10.0.0.9')).toBe(255);
  });
  it('the other pod took the address after the deadline (evil held at 255 meanwhile), then is deleted', () => {
    let t = T0;
    const a = mirrorAgent('n1', { now: () => t, elapsed: () => t });
    a.step('w', nsX, ev('ADDED', pod('server', 1, 'n1', 'server', ['10.0.0.1'])), ev('ADDED', pod('evil', 2, 'n2', 'evil', ['10.0.0.9', 'fd00::9'], T0 + 30_000)), denyEvilAllowCidr);
    t += 31_000;
    tick(a);
    expect([idAt(a, '10.0.0.9'), idAt(a, 'fd00::9')]).toEqual([255, 255]);
    a.step('w', ev('ADDED', pod('other', 4, 'n2', 'other', ['10.0.0.9'])));
    expect(idAt(a, '10.0.0.9')).not.toBe(255);
    expect(idAt(a, 'fd00::9')).toBe(255);
    a.step('w', gone('other', 5));
    expect([idAt(a, '10.0.0.9'), idAt(a, 'fd00::9')]).toEqual([255, 255]);
    a.step('w', gone('evil', 6));
    expect([idAt(a, '10.0.0.9'), idAt(a, 'fd00::9')]).toEqual([undefined, undefined]);
  });
});

describe('2923. a pod waiting for its namespace takes no address from an expired pod', () => {
  const otherInY = ev('ADDED', { ...pod('other', 4, 'n2', 'other', ['10.0.0.9']), metadata: { name: 'other', namespace: 'y', resourceVersion: '4', labels: { app: 'other' } } });
  const nsY = ev('ADDED', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'y', resourceVersion: '5' } });
  const otherOwns = (a: ReturnType<typeof mirrorAgent>): boolean => {
    const id = idAt(a, '10.0.0.9');
    return id !== undefined && id !== 255 && a.engine.identityLabels(id)?.some((l) => l.key === 'app' && l.value === 'other') === true;
  };
  it('claimed while it waits, before the deadline: the expired pod is held at 255 until the claimant is sent', () => {
    let t = T0;
    const a = mirrorAgent('n1', { now: () => t, elapsed: () => t });
    a.step('w', nsX, ev('ADDED', pod('server', 1, 'n1', 'server', ['10.0.0.1'])), ev('ADDED', pod('evil', 2, 'n2', 'evil', ['10.0.0.9'], T0 + 30_000)), denyEvilAllowCidr);
    // A pod of namespace y, whose Namespace the agent has not read yet (streams lag each other), claims 10.0.0.9.
    a.step('w', otherInY);
    t += 31_000;
    const b = a.mirror.flush();
    a.engine.apply(b.events as EngineEvent[]);
    b.commit();
    // Before: evil was dropped for it while it waited: no /32 entry (world, which the 10.0.0.0/8 allow admits).
    expect(idAt(a, '10.0.0.9')).toBe(255);
    a.step('w', nsY);
    expect(otherOwns(a)).toBe(true);
  });
  it('claimed while it waits, after the deadline: the same', () => {
    const t = T0 + 31_000;
    const a = mirrorAgent('n1', { now: () => t, elapsed: () => t });
    a.step('w', nsX, ev('ADDED', pod('server', 1, 'n1', 'server', ['10.0.0.1'])), ev('ADDED', pod('evil', 2, 'n2', 'evil', ['10.0.0.9'], T0 + 30_000)), denyEvilAllowCidr);
    expect(idAt(a, '10.0.0.9')).toBe(255);
    a.step('w', otherInY);
    expect(idAt(a, '10.0.0.9')).toBe(255);
    a.step('w', nsY);
    expect(otherOwns(a)).toBe(true);
    // Its namespace deleted (its pods with it), the address is evil's again, fail-closed.
    a.step('w', ev('DELETED', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'y', resourceVersion: '6' } }));
    expect(idAt(a, '10.0.0.9')).toBe(255);
  });
});

describe('2924. two expired pods at one address: deleting the one written last leaves it held by the other', () => {
  it('b held at 255, then a read past its deadline at the same address, then a deleted', () => {
    const t = T0 + 31_000;
    const a = mirrorAgent('n1', { now: () => t, elapsed: () => t });
    a.step('w', nsX, ev('ADDED', pod('server', 1, 'n1', 'server', ['10.0.0.1'])), ev('ADDED', pod('b', 2, 'n2', 'evil', ['10.0.0.9'], T0)), denyEvilAllowCidr);
    a.step('w', ev('ADDED', pod('a', 3, 'n2', 'evil', ['10.0.0.9'], T0)));
    expect(idAt(a, '10.0.0.9')).toBe(255);
    a.step('w', ev('DELETED', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'a', namespace: 'x', resourceVersion: '4' } }));
    // Before: a, the last writer, left 10.0.0.9 unowned (world) while b, still in the cluster, claims it.
    expect(idAt(a, '10.0.0.9')).toBe(255);
  });
});
