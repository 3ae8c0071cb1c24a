import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../../src/engine/events.js';
import { rollingMirrorAgent } from './mirror-agent.js';
import { cnp, egressVerdict, line, md, namespace, server, type Obj } from './refused-objects.js';

/**
 * Finding 3023 (31b), fixed in 32c (3361): objects with no narrowing form split apart from each other. The API server's
 * addresses are the union of every EndpointSlice of default/kubernetes (one `setApiServer` event, `apiServerEvent`), but
 * each slice is an object of its own: a step moving an address from one slice to another, refused with another object,
 * was retried in parts, and the slice losing the address committed before the one gaining it. The address was then
 * world between the parts, which `to-world` allowed, though before and after the step it is the API server
 * (`deny-api` denies it).
 */
const A = '10.0.1.1';
const slice = (name: string, rv: number, addresses: string[]): Obj => ({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4', metadata: md(name, rv, { namespace: 'default', labels: { 'kubernetes.io/service-name': 'kubernetes' } }), endpoints: addresses.map((a) => ({ addresses: [a] })), ports: [{ name: 'https', port: 6443, protocol: 'TCP' }] });

describe('3023: the API server slices of a split step', () => {
  it('commit together: an address moved between them is never world between the parts', () => {
    let refusing = false;
    // The engine refuses the step's batch and its held phase (as a full map may), then commits what it is sent.
    let refusals = 0;
    const verdicts: string[] = [];
    const { feed, engine, mirror } = rollingMirrorAgent({}, {}, () => refusing && verdicts.push(verdict(A, 80)), (events: readonly EngineEvent[]) => refusing && events.length > 1 && refusals++ < 2);
    const verdict = egressVerdict(engine);
    feed(line('ADDED', namespace), line('ADDED', server), line('ADDED', slice('k1', 5, [A, '192.0.2.1'])), line('ADDED', slice('k2', 6, ['192.0.2.2'])));
    feed(line('ADDED', cnp('to-world', 7, { egress: [{ toEntities: ['world'] }] })), line('ADDED', cnp('deny-api', 8, { egressDeny: [{ toEntities: ['kube-apiserver'] }] })));
    expect([verdict(A, 80), verdict('198.51.100.1', 80)]).toEqual(['deny', 'allow']);
    refusing = true;
    feed(line('ADDED', cnp('extra', 9, { egress: [{ toCIDR: ['198.51.100.0/24'] }] })), line('MODIFIED', slice('k1', 10, ['192.0.2.1'])), line('MODIFIED', slice('k2', 11, ['192.0.2.2', A])));
    expect(verdicts.length).toBeGreaterThan(0);
    expect(verdicts.filter((v) => v !== 'deny')).toEqual([]);
    expect(mirror.idle).toBe(true);
    expect(mirror.refusedObjects()).toEqual([]);
    expect(verdict(A, 80)).toBe('deny');
  });
});
