import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import { UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';
import { rollingMirrorAgent } from './mirror-agent.js';
import { cnp, egressVerdict, line, md, namespace, server, type Obj } from './refused-objects.js';

/*
 * 32y (finding 3670): 32c's 3361 counts the API server's slices as one object, so a batch of two slices refused waits
 * whole in `refused`. Refused alone, one slice is held fail-closed (3265); two were not: they waited at the version the
 * engine held, an address joining the API server read world, and a later world allow admitted it past `deny-api`.
 */
const slice = (name: string, rv: number, addresses: string[]): Obj => ({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4', metadata: md(name, rv, { namespace: 'default', labels: { 'kubernetes.io/service-name': 'kubernetes' } }), endpoints: addresses.map((a) => ({ addresses: [a] })), ports: [{ name: 'https', port: 6443, protocol: 'TCP' }] });

describe('3670: API server slices refused together', () => {
  it('are held fail-closed like one slice refused alone: an address joining the API server is never world', () => {
    let refusing = false;
    const refuse = (events: readonly EngineEvent[]): boolean => refusing && events.some((e) => e.type === 'setApiServer' && e.held === undefined);
    const verdicts: string[] = [];
    const { feed, engine, mirror } = rollingMirrorAgent({}, {}, () => refusing && verdicts.push(verdict('10.0.1.1')), refuse);
    const at80 = egressVerdict(engine);
    const verdict = (ip: string): string => at80(ip, 80);
    feed(line('ADDED', namespace), line('ADDED', server), line('ADDED', slice('k1', 5, ['192.0.2.1'])), line('ADDED', slice('k2', 6, ['192.0.2.2'])));
    feed(line('ADDED', cnp('deny-api', 7, { egressDeny: [{ toEntities: ['kube-apiserver'] }] })));
    refusing = true;
    // Both slices change in one flush; 10.0.1.1 joins the API server (denied before? world, no allow; after: deny-api).
    feed(line('MODIFIED', slice('k1', 8, ['192.0.2.1', '10.0.1.1'])), line('MODIFIED', slice('k2', 9, ['192.0.2.3'])));
    // A later event: a world allow. Before and after it 10.0.1.1 is the API server, denied by deny-api.
    feed(line('ADDED', cnp('to-world', 10, { egress: [{ toEntities: ['world'] }] })));
    expect(verdicts.filter((v) => v !== 'deny')).toEqual([]);
    expect(verdict('10.0.1.1')).toBe('deny');
    expect(engine.identityOfIp(parseIp('10.0.1.1'))).toBe(UNALLOCATED_POD_IDENTITY);
    expect(mirror.refusedObjects()).toEqual(['EndpointSlice/default/k1', 'EndpointSlice/default/k2']);
    // The engine takes them again: read at their own forms after the next commit, 10.0.1.1 the API server's.
    refusing = false;
    feed(line('ADDED', cnp('other', 11, { egress: [{ toCIDR: ['198.51.100.0/24'] }] })));
    expect(mirror.refusedObjects()).toEqual([]);
    expect(engine.identityOfIp(parseIp('10.0.1.1'))).not.toBe(UNALLOCATED_POD_IDENTITY);
    expect(['10.0.1.1', '192.0.2.2', '192.0.2.3'].map(verdict)).toEqual(['deny', 'allow', 'deny']);
  });

  // 3671: a slice held fail-closed (3265) whose held form was refused too was held "again" from the same form, sent
  // again at every flush: the agent never went idle (40 flushes here; the agent re-queues a flush after each refusal).
  for (const slices of [1, 2])
    it(`${slices} slice(s) refused at every form: the mirror goes idle, the slices wait`, () => {
      let refusing = false;
      let tried = 0;
      const refuse = (events: readonly EngineEvent[]): boolean => refusing && ++tried > 0 && events.some((e) => e.type === 'setApiServer');
      const { feed, mirror } = rollingMirrorAgent({}, {}, () => {}, refuse);
      feed(line('ADDED', namespace), line('ADDED', server), line('ADDED', slice('k1', 5, ['192.0.2.1'])), line('ADDED', slice('k2', 6, ['192.0.2.2'])));
      refusing = true;
      feed(line('MODIFIED', slice('k1', 8, ['192.0.2.1', '10.0.1.1'])), ...(slices === 2 ? [line('MODIFIED', slice('k2', 9, ['192.0.2.3']))] : []));
      expect(mirror.idle).toBe(true);
      // Its own form, then its held form.
      expect(tried).toBe(2);
      expect(mirror.refusedObjects()).toEqual(['EndpointSlice/default/k1', 'EndpointSlice/default/k2'].slice(0, slices));
    });

  it('3672: a slice refused at every form joins the next batch of slices: an address it adds is never left world', () => {
    // The engine refuses every setApiServer naming 192.0.2.7 (k1's new address), in its addresses or held.
    let refusing = false;
    const refuse = (events: readonly EngineEvent[]): boolean => refusing && events.some((e) => e.type === 'setApiServer' && [...e.addresses, ...(e.held ?? [])].some((ip) => ip.text === '192.0.2.7'));
    const verdicts: string[] = [];
    const { feed, engine, mirror } = rollingMirrorAgent({}, {}, () => refusing && verdicts.push(verdict('10.0.1.1')), refuse);
    const at80 = egressVerdict(engine);
    const verdict = (ip: string): string => at80(ip, 80);
    feed(line('ADDED', namespace), line('ADDED', server), line('ADDED', slice('k1', 5, ['192.0.2.1'])), line('ADDED', slice('k2', 6, ['192.0.2.2', '10.0.1.1'])));
    feed(line('ADDED', cnp('deny-api', 7, { egressDeny: [{ toEntities: ['kube-apiserver'] }] })), line('ADDED', cnp('to-world', 8, { egress: [{ toEntities: ['world'] }] })));
    refusing = true;
    // k1 takes 10.0.1.1 too (and .7): refused at its own form and its held form, it waits.
    feed(line('MODIFIED', slice('k1', 9, ['192.0.2.1', '10.0.1.1', '192.0.2.7'])));
    // k2 leaves 10.0.1.1: before and after, k1 has it (the API server's, denied by deny-api).
    feed(line('MODIFIED', slice('k2', 10, ['192.0.2.2'])));
    expect(verdicts.filter((v) => v !== 'deny')).toEqual([]);
    expect(verdict('10.0.1.1')).toBe('deny');
    expect(mirror.idle).toBe(true);
  });
});
