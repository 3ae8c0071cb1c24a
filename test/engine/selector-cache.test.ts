import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseCidr } from '../../src/model/cidr.js';
import { k8sLabels, makeLabelSet, reservedLabel } from '../../src/model/labels.js';
import { labelIndex, makeSelector, Requirement, selectorMatches } from '../../src/model/selector.js';
import { CachedSelector, cidrSelector, labelsSelector, SelectionListener, SelectorCache } from '../../src/engine/selector-cache.js';
import { emptyStats } from '../../src/engine/stats.js';
import { fcReplay, fcRuns } from '../fc-knobs.js';

const k8s = (key: string): { source: string; key: string } => ({ source: 'k8s', key });
const eq = (key: string, value: string): Requirement => ({ key: k8s(key), operator: 'In', values: [value] });
const ident = (id: number, labels: Record<string, string>) => ({ id, matchLabels: makeLabelSet(k8sLabels(labels)) });

function recorder(): SelectionListener & { log: string[] } {
  const log: string[] = [];
  return { log, selectionChanged: (cs, added, removed) => log.push(`${cs.selector.key}: +[${added.join(',')}] -[${removed.join(',')}]`) };
}

describe('selector cache', () => {
  it('stores each distinct selector once and reports selection changes to its users', () => {
    const stats = emptyStats();
    const cache = new SelectorCache(stats);
    const a = recorder();
    const b = recorder();
    const s1 = cache.register(labelsSelector(makeSelector([eq('app', 'web')])), a);
    const s2 = cache.register(labelsSelector(makeSelector([eq('app', 'web')])), b);
    expect(s1).toBe(s2);
    expect(cache.selectorCount).toBe(1);
    cache.addIdentity(ident(300, { app: 'web' }));
    cache.addIdentity(ident(301, { app: 'db' }));
    expect([...s1.selected]).toEqual([300]);
    expect(a.log).toEqual(['k8s:app=web: +[300] -[]']);
    expect(b.log).toEqual(a.log);
    cache.removeIdentity(300);
    expect(a.log[1]).toBe('k8s:app=web: +[] -[300]');
    cache.unregister(s1, a);
    expect(cache.selectorCount).toBe(1);
    cache.unregister(s1, b);
    expect(cache.selectorCount).toBe(0);
  });

  it('evaluates only the selectors an identity could match (the label index)', () => {
    const stats = emptyStats();
    const cache = new SelectorCache(stats);
    const user = recorder();
    for (let i = 0; i < 1000; i++) cache.register(labelsSelector(makeSelector([eq('app', `svc-${i}`), eq('io.kubernetes.pod.namespace', 'prod')])), user);
    const before = stats.selectorEvaluations;
    cache.addIdentity(ident(400, { team: 'unrelated' }));
    expect(stats.selectorEvaluations - before).toBe(0);
    cache.addIdentity(ident(401, { app: 'svc-7', 'io.kubernetes.pod.namespace': 'prod' }));
    // One candidate: the selector filed under app=svc-7, not the 999 others sharing the namespace.
    expect(stats.selectorEvaluations - before).toBe(1);
    const removalStart = stats.selectorEvaluations;
    cache.removeIdentity(401);
    expect(stats.selectorEvaluations).toBe(removalStart);
  });

  it('evaluates only candidate identities when a selector is registered', () => {
    const stats = emptyStats();
    const cache = new SelectorCache(stats);
    for (let i = 0; i < 500; i++) cache.addIdentity(ident(1000 + i, { app: `svc-${i}` }));
    const before = stats.selectorEvaluations;
    const cs = cache.register(labelsSelector(makeSelector([eq('app', 'svc-3')])), recorder());
    expect([...cs.selected]).toEqual([1003]);
    expect(stats.selectorEvaluations - before).toBe(1);
  });

  it('a selector on a label key no selector used before finds the identities added earlier, in the order they were last added', () => {
    const stats = emptyStats();
    const cache = new SelectorCache(stats);
    cache.register(labelsSelector(makeSelector([eq('app', 'web')])), recorder());
    cache.addIdentity(ident(300, { app: 'web', tier: 'front' }));
    cache.addIdentity(ident(301, { app: 'db', tier: 'front' }));
    cache.addIdentity(ident(302, { app: 'db', tier: 'back' }));
    cache.removeIdentity(300);
    cache.addIdentity(ident(300, { app: 'web', tier: 'front' }));
    const before = stats.selectorEvaluations;
    const front = cache.register(labelsSelector(makeSelector([eq('tier', 'front')])), recorder());
    expect([...front.selected]).toEqual([301, 300]);
    expect(stats.selectorEvaluations - before).toBe(2);
    const anyTier = cache.register(labelsSelector(makeSelector([{ key: k8s('tier'), operator: 'Exists', values: [] }])), recorder());
    expect([...anyTier.selected]).toEqual([301, 302, 300]);
    // Kept from now on: later identities and removals reach both selectors.
    cache.addIdentity(ident(303, { tier: 'front' }));
    cache.removeIdentity(301);
    expect([...front.selected]).toEqual([300, 303]);
    expect([...anyTier.selected]).toEqual([302, 300, 303]);
  });

  it('selectors with only negative requirements are evaluated for every identity, and match correctly', () => {
    const cache = new SelectorCache(emptyStats());
    const cs = cache.register(labelsSelector(makeSelector([{ key: k8s('app'), operator: 'DoesNotExist', values: [] }])), recorder());
    cache.addIdentity(ident(300, { app: 'web' }));
    cache.addIdentity(ident(301, { tier: 'db' }));
    expect([...cs.selected]).toEqual([301]);
  });

  it('a CIDR selector selects the CIDR identities inside it and not inside an exception', () => {
    const cache = new SelectorCache(emptyStats());
    const cs = cache.register(cidrSelector(parseCidr('10.0.0.0/8'), [parseCidr('10.96.0.0/12')]), recorder());
    const world = makeLabelSet([reservedLabel('world'), reservedLabel('world-ipv4')]);
    cache.addIdentity({ id: 1 << 24 | 1, matchLabels: world, cidr: parseCidr('10.0.0.0/8') });
    cache.addIdentity({ id: 1 << 24 | 2, matchLabels: world, cidr: parseCidr('10.96.0.0/12') });
    cache.addIdentity({ id: 1 << 24 | 3, matchLabels: world, cidr: parseCidr('10.1.0.0/16') });
    cache.addIdentity({ id: 1 << 24 | 4, matchLabels: world, cidr: parseCidr('192.168.0.0/16') });
    cache.addIdentity({ id: 9, matchLabels: world });
    expect([...cs.selected].sort()).toEqual([1 << 24 | 1, 1 << 24 | 3]);
  });
});

describe('selector cache vs brute force (keys indexed on first need)', () => {
  const KEYS = ['app', 'tier', 'io.kubernetes.pod.namespace', 'io.cilium.k8s.namespace.labels.team', 'io.cilium.k8s.policy.cluster'];
  const VALUES = ['a', 'b', 'c'];
  const SOURCES = ['k8s', 'any', 'reserved'];
  const reqArb = fc.record({
    key: fc.record({ source: fc.constantFrom(...SOURCES), key: fc.constantFrom(...KEYS) }),
    operator: fc.constantFrom('In' as const, 'NotIn' as const, 'Exists' as const, 'DoesNotExist' as const),
    values: fc.uniqueArray(fc.constantFrom(...VALUES), { minLength: 1, maxLength: 2 }),
  });
  const labelsArb = fc.uniqueArray(fc.record({ source: fc.constantFrom('k8s', 'reserved'), key: fc.constantFrom(...KEYS), value: fc.constantFrom(...VALUES) }), {
    maxLength: 4,
    selector: (l) => `${l.source}:${l.key}`,
  });
  type Op =
    | { k: 'add'; id: number; labels: { source: string; key: string; value: string }[] }
    | { k: 'remove'; id: number }
    | { k: 'register'; sel: number; reqs: Requirement[] }
    | { k: 'unregister'; sel: number };
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ k: fc.constant('add' as const), id: fc.integer({ min: 256, max: 262 }), labels: labelsArb }),
    fc.record({ k: fc.constant('remove' as const), id: fc.integer({ min: 256, max: 262 }) }),
    fc.record({ k: fc.constant('register' as const), sel: fc.nat(5), reqs: fc.array(reqArb, { minLength: 1, maxLength: 2 }) }),
    fc.record({ k: fc.constant('unregister' as const), sel: fc.nat(5) }),
  );

  it('every registered selector selects exactly the identities it matches, and its listener saw exactly those changes', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 40 }), (ops) => {
        const cache = new SelectorCache(emptyStats());
        const live = new Map<number, ReturnType<typeof makeLabelSet>>();
        const slots = new Map<number, { cs: CachedSelector; listener: SelectionListener; seen: Set<number> }>();
        // A slot's listener may be re-registered under another selector; each has its own view.
        for (const o of ops) {
          if (o.k === 'add' && !live.has(o.id)) {
            const labels = makeLabelSet(o.labels);
            live.set(o.id, labels);
            cache.addIdentity({ id: o.id, matchLabels: labels });
          } else if (o.k === 'remove' && live.has(o.id)) {
            live.delete(o.id);
            cache.removeIdentity(o.id);
          } else if (o.k === 'register' && !slots.has(o.sel)) {
            const seen = new Set<number>();
            const listener: SelectionListener = {
              selectionChanged: (_cs, added, removed) => {
                for (const id of added) seen.add(id);
                for (const id of removed) seen.delete(id);
              },
            };
            const cs = cache.register(labelsSelector(makeSelector(o.reqs)), listener);
            for (const id of cs.selected) seen.add(id);
            slots.set(o.sel, { cs, listener, seen });
          } else if (o.k === 'unregister' && slots.has(o.sel)) {
            const s = slots.get(o.sel)!;
            cache.unregister(s.cs, s.listener);
            slots.delete(o.sel);
          }
          for (const { cs, seen } of slots.values()) {
            const sel = cs.selector;
            if (sel.kind !== 'labels') throw new Error('label selectors only');
            const want = [...live].filter(([, l]) => selectorMatches(sel.selector, l)).map(([id]) => id).sort();
            expect([sel.key, [...cs.selected].sort()]).toEqual([sel.key, want]);
            expect([sel.key, [...seen].sort()]).toEqual([sel.key, want]);
          }
        }
      }),
      { numRuns: process.env.DISTILL_LONG ? 20_000 : 500, ...(process.env.DISTILL_LONG ? {} : { seed: 20261130 }) },
    );
  });
});

describe("a selector's listeners (a Set's semantics, kept in an array while few)", () => {
  it('keeps each listener once, in the order added, across the switch to a Set and back below it', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 39 })), { maxLength: 200 }), (ops) => {
        const cache = new SelectorCache(emptyStats());
        const pool = Array.from({ length: 40 }, () => recorder());
        const keeper = recorder();
        const sel = labelsSelector(makeSelector([eq('app', 'web')]));
        const cs = cache.register(sel, keeper);
        const model = new Set<SelectionListener>([keeper]);
        for (const [add, i] of ops) {
          const l = pool[i] as SelectionListener;
          if (add) {
            expect(cache.register(sel, l)).toBe(cs);
            model.add(l);
          } else if (model.has(l)) {
            cache.unregister(cs, l);
            model.delete(l);
          }
          expect(cs.listeners.size).toBe(model.size);
          expect([...cs.listeners]).toEqual([...model]);
        }
        cache.addIdentity(ident(300, { app: 'web' }));
        for (const l of pool) expect((l as ReturnType<typeof recorder>).log.length).toBe(model.has(l) ? 1 : 0);
      }),
      { numRuns: fcRuns(200), ...fcReplay() },
    );
  });
});

describe('selector cache: identities with many labels (attack finding 1143)', () => {
  /** Label reads to add one identity of m labels `k0..k{m-1}=v` to a cache holding m selectors `k<j>=v`, one per key. */
  function labelReads(m: number): { reads: number; selected: number } {
    const cache = new SelectorCache(emptyStats());
    const listener = recorder();
    const selectors = Array.from({ length: m }, (_, j) => cache.register(labelsSelector(makeSelector([eq(`k${j}`, 'v')])), listener));
    const labels = makeLabelSet(k8sLabels(Object.fromEntries(Array.from({ length: m }, (_, j) => [`k${j}`, 'v']))));
    let reads = 0;
    const counted = new Proxy(labels, {
      get(target, p, receiver) {
        if (typeof p === 'string' && /^\d+$/.test(p)) reads++;
        return Reflect.get(target, p, receiver) as unknown;
      },
    });
    cache.addIdentity({ id: 300, matchLabels: counted });
    return { reads, selected: selectors.filter((cs) => cs.selected.has(300)).length };
  }

  it('fixed: every selector is judged without scanning the labels: reads grow with m, not with m × selectors', () => {
    // Each label is read a bounded number of times (finding the candidate selectors, filing the
    // identity, indexing its labels by key); scanning the set once per selector read m²/2 of them.
    for (const m of [200, 800]) {
      const { reads, selected } = labelReads(m);
      expect({ m, selected, perLabel: Math.ceil(reads / m) }).toEqual({ m, selected: m, perLabel: 3 });
    }
  });

  it('held: an indexed set matches as the scanned one, for every operator and a key of source any', () => {
    const many = Object.fromEntries(Array.from({ length: 40 }, (_, j) => [`k${j}`, `v${j % 3}`]));
    const labels = makeLabelSet([...k8sLabels(many), { source: 'container', key: 'k1', value: 'c' }]);
    const index = labelIndex(labels);
    const any = (key: string): { source: string; key: string } => ({ source: 'any', key });
    const reqs: Requirement[] = [
      eq('k1', 'v1'), eq('k1', 'c'), eq('nope', 'v'),
      { key: any('k1'), operator: 'In', values: ['c'] }, { key: any('k2'), operator: 'NotIn', values: ['v2'] },
      { key: k8s('k3'), operator: 'Exists', values: [] }, { key: any('nope'), operator: 'DoesNotExist', values: [] },
      { key: k8s('k4'), operator: 'NotIn', values: ['x'] }, { key: { source: 'container', key: 'k2' }, operator: 'Exists', values: [] },
    ];
    for (const r of reqs) {
      const sel = makeSelector([r]);
      expect({ r, indexed: selectorMatches(sel, labels, index) }).toEqual({ r, indexed: selectorMatches(sel, labels) });
    }
    expect(reqs.map((r) => selectorMatches(makeSelector([r]), labels, index))).toEqual([true, false, false, true, false, true, true, true, false]);
  });
});
