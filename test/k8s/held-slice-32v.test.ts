import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import { rollingMirrorAgent } from './mirror-agent.js';
import { cnp, line, md, namespace, server, type Obj } from './refused-objects.js';

/* 32v: review of 32a's held API server slice (findings 3620–3639). */
const slice = (rv: number, addresses: string[]): Obj => ({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4', metadata: md('kubernetes', rv, { namespace: 'default', labels: { 'kubernetes.io/service-name': 'kubernetes' } }), endpoints: addresses.map((a) => ({ addresses: [a] })), ports: [{ name: 'https', port: 6443, protocol: 'TCP' }] });

describe('32v: held API server slice', () => {
  it('3620: a slice whose held form a full map refuses too waits refused, not retried at every flush', () => {
    // 5 of 5 entries, `toEntities: [all]` admits identity 0. The slice adds 192.0.2.2: its own form needs a deny entry
    // for the new CIDR identity (deny-api, port 80), its held form one for the unallocated number: both overflow.
    let flushes = 0;
    const { feed, engine, mirror } = rollingMirrorAgent({ mapCapacity: 5 }, {}, () => {}, () => (flushes++, false));
    feed(line('ADDED', namespace), line('ADDED', server), line('ADDED', slice(5, ['192.0.2.1'])), line('ADDED', cnp('all', 6, { egress: [{ toEntities: ['all'] }] })));
    feed(line('ADDED', cnp('deny-api', 8, { egressDeny: [{ toEntities: ['kube-apiserver'], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }] })));
    expect(engine.mapPressure()[0]?.entries).toBe(5);
    flushes = 0;
    feed(line('MODIFIED', slice(9, ['192.0.2.1', '192.0.2.2'])));
    // Its own form, then its held form: refused both, it waits (on f58c2ecb the held form was sent again at every flush).
    expect(mirror.idle).toBe(true);
    expect(flushes).toBe(2);
    expect(mirror.refusedObjects()).toEqual(['EndpointSlice/default/kubernetes']);
    // Room again (deny-api gone): the slice is read again with the change that made room.
    feed(line('DELETED', cnp('deny-api', 10, {})));
    expect(mirror.refusedObjects()).toEqual([]);
    expect(engine.identityOfIp(parseIp('192.0.2.2'))).not.toBe(2);
  });

  it('3620: so for an update and a delete of a slice whose every form the engine refuses', () => {
    let flushes = 0;
    let refusing = false;
    const refuse = (events: readonly EngineEvent[]): boolean => (flushes++, refusing && events.some((e) => e.type === 'setApiServer'));
    const { feed, engine, mirror } = rollingMirrorAgent({}, {}, () => {}, refuse);
    feed(line('ADDED', namespace), line('ADDED', server), line('ADDED', slice(5, ['192.0.2.1'])));
    refusing = true;
    for (const [type, rv, addresses] of [['MODIFIED', 9, ['192.0.2.2']], ['DELETED', 10, ['192.0.2.2']]] as const) {
      flushes = 0;
      feed(line(type, slice(rv, [...addresses])));
      expect([mirror.idle, flushes]).toEqual([true, 2]);
      expect(mirror.refusedObjects()).toEqual(['EndpointSlice/default/kubernetes']);
      // Still the version the engine holds: .1 the API server's.
      expect(engine.identityOfIp(parseIp('192.0.2.1'))).not.toBe(2);
    }
  });
});
