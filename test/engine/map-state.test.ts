import { describe, expect, it } from 'vitest';
import { datapathLookup, PolicyEntry, PolicyKey } from '../../src/model/mapstate.js';
import { MapState } from '../../src/engine/map-state.js';
import { emptyStats } from '../../src/engine/stats.js';

const ALLOW: PolicyEntry = { deny: false, proxyPort: 0, precedence: 1 };
const DENY: PolicyEntry = { deny: true, proxyPort: 0, precedence: 255 };
const REDIRECT: PolicyEntry = { deny: false, proxyPort: 10000, precedence: 2 };
const key = (identity: number, protocol = 0, port = 0, portPrefixLen = protocol === 0 ? 0 : port === 0 ? 0 : 16): PolicyKey => ({ identity, direction: 'ingress', protocol, port, portPrefixLen });
const keys = (m: MapState): string[] => [...m.entries.keys()].sort();

describe('map state (Cilium insertion rules)', () => {
  it('does not insert an entry covered by a broader key of higher precedence, and brings it back when that goes', () => {
    const m = new MapState(emptyStats());
    m.add(key(300), 'deny-all', DENY);
    m.add(key(300, 6, 80), 'allow-80', ALLOW);
    expect(m.settle().map((c) => c.keyString)).toEqual(['300/ingress/0/0/0']);
    expect(keys(m)).toEqual(['300/ingress/0/0/0']);
    m.remove(key(300), 'deny-all', DENY);
    const changes = m.settle();
    expect(changes.map((c) => [c.keyString, c.before?.deny, c.after?.deny])).toEqual([
      ['300/ingress/0/0/0', true, undefined],
      ['300/ingress/6/80/16', undefined, false],
    ]);
  });

  it('a broader identity-0 deny hides narrower entries of every identity', () => {
    const m = new MapState(emptyStats());
    m.add(key(300, 6, 80), 'a', ALLOW);
    m.add(key(301, 6, 80), 'a', REDIRECT);
    m.add(key(301, 17, 53), 'a', ALLOW);
    m.settle();
    m.add(key(0, 6, 0), 'deny-tcp', DENY);
    const changes = m.settle();
    expect(changes.filter((c) => c.after === undefined).map((c) => c.keyString).sort()).toEqual(['300/ingress/6/80/16', '301/ingress/6/80/16']);
    expect(keys(m)).toEqual(['0/ingress/6/0/0', '301/ingress/17/53/16']);
  });

  it('elides an identity-specific entry equal to the identity-0 entry of the same key', () => {
    const m = new MapState(emptyStats());
    m.add(key(300, 6, 80), 'r1', ALLOW);
    m.add(key(0, 6, 80), 'r2', ALLOW);
    m.settle();
    expect(keys(m)).toEqual(['0/ingress/6/80/16']);
    m.remove(key(0, 6, 80), 'r2', ALLOW);
    m.settle();
    expect(keys(m)).toEqual(['300/ingress/6/80/16']);
  });

  it('merges contributions: the higher precedence wins, and a key lives while any contribution does', () => {
    const m = new MapState(emptyStats());
    m.add(key(300, 6, 80), 'plain', ALLOW);
    m.add(key(300, 6, 80), 'l7', REDIRECT);
    m.add(key(300, 6, 80), 'l7', REDIRECT);
    m.settle();
    expect(m.entries.get('300/ingress/6/80/16')?.entry).toEqual(REDIRECT);
    m.remove(key(300, 6, 80), 'l7', REDIRECT);
    expect(m.settle()).toEqual([]);
    m.remove(key(300, 6, 80), 'l7', REDIRECT);
    expect(m.settle().map((c) => c.after)).toEqual([ALLOW]);
    expect(() => m.remove(key(300, 6, 80), 'l7', REDIRECT)).toThrow(/never added/);
  });

  it('changes that cancel within one settle report nothing', () => {
    const m = new MapState(emptyStats());
    m.add(key(300, 6, 80), 'a', ALLOW);
    m.settle();
    m.remove(key(300, 6, 80), 'a', ALLOW);
    m.add(key(300, 6, 80), 'b', ALLOW);
    expect(m.settle()).toEqual([]);
  });

  it('the datapath lookup on the pruned map gives the verdict of the highest-precedence matching rule', () => {
    const m = new MapState(emptyStats());
    m.add(key(300), 'l3', ALLOW);
    m.add(key(0, 6, 80), 'l7-any', REDIRECT);
    m.add(key(300, 6, 64, 10), 'deny-range', DENY);
    m.settle();
    expect(datapathLookup(m.entries, 300, 'ingress', 6, 80)?.entry).toEqual(DENY);
    expect(datapathLookup(m.entries, 300, 'ingress', 6, 443)?.entry).toEqual(ALLOW);
    expect(datapathLookup(m.entries, 301, 'ingress', 6, 80)?.entry).toEqual(REDIRECT);
    expect(datapathLookup(m.entries, 301, 'ingress', 17, 53)).toBeUndefined();
  });
});
