import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../../src/engine/events.js';
import { Engine } from '../../src/engine/engine.js';
import { ClusterMirror } from '../../src/k8s/mirror.js';
import { WatchStreamParser, type WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';

/**
 * Property (26g): whatever the order of CiliumCIDRGroup events (upserts, unreadable versions, deletes, relists),
 * once no group is unreadable the engine an agent's mirror fed holds what a fresh mirror fed the same objects at
 * once holds (no policy left as its stand-in, no group left behind); while one is unreadable, the deny rule
 * naming a group is its stand-in (every peer denied), and what the plain CIDR deny names is denied throughout.
 */
type Obj = Record<string, unknown>;
const NAMES = ['a', 'b', 'c'];
const PREFIXES = ['198.51.100.0/24', '198.51.100.128/25', '192.0.2.0/24', '203.0.113.0/24'];
const PROBES = ['198.51.100.7', '198.51.100.200', '192.0.2.5', '203.0.113.9', '10.9.9.9'];
const ALWAYS_DENIED = '203.0.113.9';
const meta = (name: string, rv: number, extra: Obj = {}): Obj => ({ name, resourceVersion: String(rv), ...extra });
const base = (rv: () => number): WatchItem[] => [
  { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: meta('x', rv()) } },
  { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Pod', metadata: meta('server', rv(), { namespace: 'x', labels: { app: 'server' } }), spec: { nodeName: 'n1', containers: [] }, status: { phase: 'Running', podIP: '10.0.0.1' } } },
  {
    type: 'ADDED',
    object: {
      apiVersion: 'cilium.io/v2',
      kind: 'CiliumNetworkPolicy',
      metadata: meta('groups', rv(), { namespace: 'x' }),
      spec: {
        endpointSelector: { matchLabels: { app: 'server' } },
        ingress: [{ fromCIDRSet: [{ cidrGroupRef: 'a' }, { cidrGroupSelector: { matchLabels: { tier: 'open' } } }] }, { fromCIDR: ['203.0.113.0/24'] }],
        ingressDeny: [{ fromCIDRSet: [{ cidrGroupRef: 'b' }, { cidr: '203.0.113.0/24' }] }],
      },
    },
  },
];
type Op = { kind: 'upsert'; name: string; cidrs: string[]; open: boolean; unreadable: boolean } | { kind: 'delete'; name: string } | { kind: 'relist' };
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('upsert' as const), name: fc.constantFrom(...NAMES), cidrs: fc.subarray(PREFIXES), open: fc.boolean(), unreadable: fc.boolean() }),
  fc.record({ kind: fc.constant('delete' as const), name: fc.constantFrom(...NAMES) }),
  fc.constant({ kind: 'relist' as const }),
);
const groupObj = (name: string, rv: number, cidrs: string[], open: boolean, unreadable: boolean): Obj => ({
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumCIDRGroup',
  metadata: meta(name, rv, open ? { labels: { tier: 'open' } } : {}),
  spec: { externalCIDRs: cidrs, ...(unreadable ? { newerField: 1 } : {}) },
});

function node() {
  const mirror = new ClusterMirror({ nodeName: 'n1', cidrGroups: true });
  const engine = new Engine();
  const feed = (items: WatchItem[]): void => {
    for (const i of items) mirror.observe(i, i.type === 'LIST' || i.type === 'LIST_ITEM' || i.type === 'ERROR' || i.object.kind === 'CiliumCIDRGroup' ? 'groups' : 'rest');
    for (let n = 0; n < 20 && !mirror.idle; n++) {
      const b = mirror.flush();
      engine.apply(b.events as EngineEvent[]);
      b.commit();
    }
  };
  const verdicts = (): string[] =>
    PROBES.map((ip) => {
      const hit = engine.lookup('x/server', engine.identityOfIp(parseIp(ip)), 'ingress', 6, 80);
      return hit === undefined ? 'none' : hit.entry.deny ? 'deny' : 'allow';
    });
  return { feed, verdicts };
}

describe('CIDR group events in every order (property)', () => {
  it('readable again: as a fresh start; meanwhile the stand-in (nothing admitted)', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 12 }), (ops) => {
        let rv = 0;
        const next = (): number => ++rv;
        const live = node();
        live.feed(base(next));
        const groups = new Map<string, Obj>();
        for (const o of ops) {
          if (o.kind === 'upsert') {
            const g = groupObj(o.name, next(), o.cidrs, o.open, o.unreadable);
            live.feed([{ type: groups.has(o.name) ? 'MODIFIED' : 'ADDED', object: g }]);
            groups.set(o.name, g);
          } else if (o.kind === 'delete') {
            const g = groups.get(o.name);
            if (g === undefined) continue;
            live.feed([{ type: 'DELETED', object: { ...g, metadata: { ...(g.metadata as Obj), resourceVersion: String(next()) } } }]);
            groups.delete(o.name);
          } else {
            const list = { apiVersion: 'cilium.io/v2', kind: 'CiliumCIDRGroupList', metadata: { resourceVersion: String(next()) }, items: [...groups.values()] };
            const error = { type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410 } };
            live.feed(new WatchStreamParser('groups').push(`${JSON.stringify(error)}\n${JSON.stringify(list)}\n`));
          }
          const got = live.verdicts();
          expect(got[PROBES.indexOf(ALWAYS_DENIED)]).toBe('deny');
          const unreadable = [...groups.values()].some((g) => 'newerField' in (g.spec as Obj));
          // Meanwhile every group peer is the stand-in: the deny rule naming a group denies every peer.
          if (unreadable) expect(got.filter((v) => v === 'allow')).toEqual([]);
          if (unreadable) continue;
          const fresh = node();
          let frv = 0;
          fresh.feed([...base(() => ++frv), ...[...groups.values()].map((g) => ({ type: 'ADDED' as const, object: g }))]);
          expect(got).toEqual(fresh.verdicts());
        }
      }),
      { numRuns: 150 },
    );
  });
});
