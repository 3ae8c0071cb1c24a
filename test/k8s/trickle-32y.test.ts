import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../../src/engine/events.js';
import { Engine } from '../../src/engine/engine.js';
import { ClusterMirror } from '../../src/k8s/mirror.js';
import { WatchStreamParser } from '../../src/k8s/watch.js';
import { UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';
import { line, md, namespace, server, type Obj } from './refused-objects.js';

/*
 * 32y (finding 3673): an object new to a part of a split step was held with it (`holdStep`), so the step's held phase
 * ended (`releaseSplit`) only once none of its objects waited: with one new object arriving per round, every part
 * took the next one in, the phase never ended, and the step's pods stayed fail-closed.
 */
const remote = (name: string, ip: string): Obj => ({ apiVersion: 'v1', kind: 'Pod', metadata: md(name, 4, { namespace: 'x', labels: { app: 'r' } }), spec: { nodeName: 'n2', containers: [] }, status: { phase: 'Running', podIP: ip } });

describe('3673: a split step under a trickle of new objects', () => {
  it('its objects reach their own forms though a new object arrives before every flush', () => {
    const mirror = new ClusterMirror({ nodeName: 'n1' });
    const engine = new Engine();
    const parser = new WatchStreamParser('w');
    const observe = (...lines: string[]): void => {
      for (const item of parser.push(lines.join('\n') + '\n')) mirror.observe(item, 'w');
    };
    // The engine refuses every transaction of several events (as a map with room for one change at a time).
    let refusing = false;
    const flush = (): void => {
      const b = mirror.flush();
      if (refusing && b.events.length > 1) return b.rollback();
      engine.apply(b.events as EngineEvent[]);
      b.commit();
    };
    observe(line('ADDED', namespace), line('ADDED', server));
    while (!mirror.idle) flush();
    refusing = true;
    const first = [1, 2, 3, 4].map((i) => `10.0.2.${i}`);
    observe(...first.map((ip, i) => line('ADDED', remote(`p${i}`, ip))));
    const idOf = (ip: string): number | undefined => engine.ipcache().find((e) => e.prefix === `${ip}/32`)?.identity;
    const own = (): boolean => first.every((ip) => ![undefined, UNALLOCATED_POD_IDENTITY].includes(idOf(ip)));
    let flushes = 0;
    for (let i = 0; i < 200 && !own(); i++, flushes++) {
      observe(line('ADDED', remote(`t${i}`, `10.0.3.${i + 1}`)));
      flush();
    }
    expect(own()).toBe(true);
    // 1f03f6af: 200 flushes, the step still held (every new pod joined it).
    expect(flushes).toBeLessThan(40);
  });
});
