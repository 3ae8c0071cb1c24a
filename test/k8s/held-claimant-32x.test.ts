import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../../src/engine/events.js';
import { refusingAgent } from './refusing-agent.js';
import { cnp, line, md, namespace, server, type Obj } from './refused-objects.js';

/*
 * 32x (3650): an address a pod leaves while a pod held fail-closed still claims it stays at the unallocated number.
 * The engine's last writer owns an address and its leave deletes the entry: the address was world (a 10.0.0.0/8 allow
 * took it) though the input before and the input after both read a pod there.
 */
const A = '10.0.1.1';
const ns = (name: string, rv: number): Obj => ({ apiVersion: 'v1', kind: 'Namespace', metadata: md(name, rv) });
const pod = (name: string, nsName: string, rv: number, ip: string): Obj => ({ apiVersion: 'v1', kind: 'Pod', metadata: md(name, rv, { namespace: nsName, labels: { app: name } }), spec: { nodeName: 'n2', containers: [] }, status: { phase: 'Running', podIP: ip } });
/** The engine refuses y/k's own form (as a full map would): it is held fail-closed at A. */
const refuseK = (events: readonly EngineEvent[]): boolean => events.some((e) => e.type === 'upsertPod' && e.pod.name === 'k' && e.pod.failClosed !== true);

describe('32x: a pod held fail-closed keeps the address another claimant leaves', () => {
  const leaves: [string, () => string[]][] = [
    ['moved', () => [line('MODIFIED', pod('l', 'z', 9, '10.0.1.2'))]],
    ['deleted', () => [line('DELETED', pod('l', 'z', 9, A))]],
    ['dropped with its namespace', () => [line('DELETED', ns('z', 9))]],
  ];
  it.each(leaves)('3650: the last writer of the address %s', (_how, leave) => {
    const { feed, step, verdict, engine } = refusingAgent(refuseK, { ip: A });
    feed(line('ADDED', namespace), line('ADDED', server), line('ADDED', ns('y', 4)), line('ADDED', ns('z', 5)));
    feed(line('ADDED', cnp('to-net', 6, { egress: [{ toCIDR: ['10.0.0.0/8'] }] })));
    // y/k refused, held fail-closed at A; z/l then written at A owns it (a pod: no rule allows it).
    step(line('ADDED', pod('k', 'y', 7, A)));
    step(line('ADDED', pod('l', 'z', 8, A)));
    expect(verdict()).toBe('deny');
    // y/k is at A before and after; its held form takes A back when z/l leaves it.
    step(...leave());
    expect(engine.ipcache().find((e) => e.prefix === `${A}/32`)?.identity).toBe(255);
  });
});
