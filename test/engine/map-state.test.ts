import { describe, expect, it } from 'vitest';
import { datapathLookup, PolicyEntry, PolicyKey, PRECEDENCE_ALLOW, PRECEDENCE_DENY, PRECEDENCE_REDIRECT } from '../../src/model/policy-map.js';
import { MapState } from '../../src/engine/map-state.js';
import { emptyStats } from '../../src/engine/stats.js';
import type { Contribution } from '../../src/engine/contribution.js';

// NetworkPolicy-tier entries (level 40 000, above the default allow's level 1: docs/tiers-encoding.md).
const ALLOW: PolicyEntry = { deny: false, proxyPort: 0, precedence: PRECEDENCE_ALLOW };
const DENY: PolicyEntry = { deny: true, proxyPort: 0, precedence: PRECEDENCE_DENY };
const REDIRECT: PolicyEntry = { deny: false, proxyPort: 10000, precedence: PRECEDENCE_REDIRECT };
const key = (identity: number, protocol = 0, port = 0, portPrefixLen = protocol === 0 ? 0 : port === 0 ? 0 : 16): PolicyKey => ({ identity, direction: 'ingress', protocol, port, portPrefixLen });
const contributions = new Map<string, Contribution>();
/** One contribution per (name, entry), as the engine makes one per rule unit or L7 clause. */
const c = (label: string, entry: PolicyEntry): Contribution => {
  const k = `${label}/${entry.deny}/${entry.proxyPort}/${entry.precedence}`;
  let x = contributions.get(k);
  if (!x) contributions.set(k, (x = { origin: null, entry, label }));
  return x;
};
const keys = (m: MapState): string[] => [...m.entries.keys()].sort();

describe('map state (Cilium insertion rules)', () => {
  it('does not insert an entry covered by a broader key of higher precedence, and brings it back when that goes', () => {
    const m = new MapState(emptyStats());
    m.add(key(300), c('deny-all', DENY));
    m.add(key(300, 6, 80), c('allow-80', ALLOW));
    expect(m.settle().entries.map((c) => c.keyString)).toEqual(['300/ingress/0/0/0']);
    expect(keys(m)).toEqual(['300/ingress/0/0/0']);
    m.remove(key(300), c('deny-all', DENY));
    const changes = m.settle().entries;
    expect(changes.map((c) => [c.keyString, c.before?.deny, c.after?.deny])).toEqual([
      ['300/ingress/0/0/0', true, undefined],
      ['300/ingress/6/80/16', undefined, false],
    ]);
  });

  it('a broader identity-0 deny hides narrower entries of every identity', () => {
    const m = new MapState(emptyStats());
    m.add(key(300, 6, 80), c('a', ALLOW));
    m.add(key(301, 6, 80), c('a', REDIRECT));
    m.add(key(301, 17, 53), c('a', ALLOW));
    m.settle();
    m.add(key(0, 6, 0), c('deny-tcp', DENY));
    const changes = m.settle().entries;
    expect(changes.filter((c) => c.after === undefined).map((c) => c.keyString).sort()).toEqual(['300/ingress/6/80/16', '301/ingress/6/80/16']);
    expect(keys(m)).toEqual(['0/ingress/6/0/0', '301/ingress/17/53/16']);
  });

  it('elides an identity-specific entry equal to the identity-0 entry of the same key', () => {
    const m = new MapState(emptyStats());
    m.add(key(300, 6, 80), c('r1', ALLOW));
    m.add(key(0, 6, 80), c('r2', ALLOW));
    m.settle();
    expect(keys(m)).toEqual(['0/ingress/6/80/16']);
    m.remove(key(0, 6, 80), c('r2', ALLOW));
    m.settle();
    expect(keys(m)).toEqual(['300/ingress/6/80/16']);
  });

  it('merges contributions: the higher precedence wins, and a key lives while any contribution does', () => {
    const m = new MapState(emptyStats());
    m.add(key(300, 6, 80), c('plain', ALLOW));
    m.add(key(300, 6, 80), c('l7', REDIRECT));
    m.add(key(300, 6, 80), c('l7', REDIRECT));
    m.settle();
    expect(m.entries.get('300/ingress/6/80/16')?.entry).toEqual(REDIRECT);
    m.remove(key(300, 6, 80), c('l7', REDIRECT));
    expect(m.settle().entries).toEqual([]);
    m.remove(key(300, 6, 80), c('l7', REDIRECT));
    expect(m.settle().entries.map((c) => c.after)).toEqual([ALLOW]);
    expect(() => m.remove(key(300, 6, 80), c('l7', REDIRECT))).toThrow(/never added/);
  });

  it('changes that cancel within one settle report nothing', () => {
    const m = new MapState(emptyStats());
    m.add(key(300, 6, 80), c('a', ALLOW));
    m.settle();
    m.remove(key(300, 6, 80), c('a', ALLOW));
    m.add(key(300, 6, 80), c('b', ALLOW));
    expect(m.settle().entries).toEqual([]);
  });

  it('the kernel layer changes only in settle(): outside MapState it is read-only (docs/architecture.md, "Stage contracts")', () => {
    const m = new MapState(emptyStats());
    m.add(key(300, 6, 80), c('allow-80', ALLOW));
    expect(keys(m)).toEqual([]);
    // @ts-expect-error `entries` is a ReadonlyMap: no stage may write the kernel layer but settle() (checked by tsconfig.test.json).
    void m.entries.set;
    m.settle();
    expect(keys(m)).toEqual(['300/ingress/6/80/16']);
  });

  it('the datapath lookup on the pruned map gives the verdict of the highest-precedence matching rule', () => {
    const m = new MapState(emptyStats());
    m.add(key(300), c('l3', ALLOW));
    m.add(key(0, 6, 80), c('l7-any', REDIRECT));
    m.add(key(300, 6, 64, 10), c('deny-range', DENY));
    m.settle();
    expect(datapathLookup(m.entries, 300, 'ingress', 6, 80)?.entry).toEqual(DENY);
    expect(datapathLookup(m.entries, 300, 'ingress', 6, 443)?.entry).toEqual(ALLOW);
    expect(datapathLookup(m.entries, 301, 'ingress', 6, 80)?.entry).toEqual(REDIRECT);
    expect(datapathLookup(m.entries, 301, 'ingress', 17, 53)).toBeUndefined();
  });
});

describe('map state raw keys', () => {
  const LOCAL = (1 << 24) + 1;
  const egress = (k: PolicyKey): PolicyKey => ({ ...k, direction: 'egress' });
  // Keys that differ in one field only: identity scope, direction, protocol, prefix length, port.
  const distinct: PolicyKey[] = [
    key(0),
    key(0, 6),
    key(0, 6, 0, 16),
    key(0, 6, 65535),
    key(0, 6, 32768, 1),
    key(0, 17, 53),
    key(0, 1, 8),
    key(300, 6, 80),
    key(300, 6, 80, 15),
    key(300, 6, 81),
    egress(key(300, 6, 80)),
    key(LOCAL, 6, 80),
    key(LOCAL + 1, 6, 80),
    key(LOCAL),
    egress(key(LOCAL)),
  ];

  it('keeps apart keys that differ in one field only', () => {
    const m = new MapState(emptyStats());
    distinct.forEach((k, i) => m.add(k, c(`k${i}`, ALLOW)));
    expect(m.rawSize).toBe(distinct.length);
    distinct.forEach((k, i) => expect(m.contributions(k).map((x) => x.label)).toEqual([`k${i}`]));
    m.settle();
    distinct.forEach((k, i) => m.remove(k, c(`k${i}`, ALLOW)));
    expect(m.rawSize).toBe(0);
  });

  it('change() for a peer does what add/remove of each key does, settle by settle', () => {
    const viaKeys = new MapState(emptyStats());
    const viaChange = new MapState(emptyStats());
    const ports = [
      { protocol: 6, port: 80, portPrefixLen: 16 },
      { protocol: 6, port: 0, portPrefixLen: 0 },
      { protocol: 0, port: 0, portPrefixLen: 0 },
    ];
    const steps: [number, PolicyEntry, 1 | -1][] = [
      [300, ALLOW, 1],
      [0, DENY, 1],
      [LOCAL, REDIRECT, 1],
      [300, DENY, 1],
      [0, DENY, -1],
      [300, ALLOW, -1],
      [LOCAL, REDIRECT, -1],
    ];
    for (const [identity, entry, sign] of steps) {
      const contribution = c(`peer${identity}`, entry);
      for (const pk of ports) {
        const k: PolicyKey = { identity, direction: 'ingress', ...pk };
        if (sign > 0) viaKeys.add(k, contribution);
        else viaKeys.remove(k, contribution);
      }
      viaChange.change(identity, 'ingress', ports, contribution, sign);
      expect(viaChange.settle()).toEqual(viaKeys.settle());
      expect([...viaChange.entries]).toEqual([...viaKeys.entries]);
    }
    expect(viaChange.rawSize).toBe(viaKeys.rawSize);
  });
});
