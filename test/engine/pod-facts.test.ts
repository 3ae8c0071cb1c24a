import { describe, expect, it } from 'vitest';
import type { Pod } from '../../src/model/cluster.js';
import { parseIp } from '../../src/model/cidr.js';
import { type PodFact, PodFacts } from '../../src/engine/pod-facts.js';

function fact(name: string, ip: string, local = false): PodFact {
  const pod: Pod = { namespace: 'a', name, labels: { app: name }, ip: parseIp(ip), serviceAccount: 'default', ports: [] };
  return { pod, local, written: 0 };
}

function put(f: PodFacts<PodFact>, r: PodFact): void {
  f.setPod(`a/${r.pod.name}`, r);
  f.setOwner(r.pod.ip.text, r);
}

function state(f: PodFacts<PodFact>): unknown {
  return { pods: [...f.podEntries()].map(([k, r]) => [k, r.pod, r.local]), owners: [...f.ipOwners()].map(([ip, r]) => [ip, r.pod]) };
}

describe('PodFacts: the pod table writes them, the committed model reads them', () => {
  const p1 = fact('p1', '10.0.0.1');
  const p2 = fact('p2', '10.0.0.2');
  const p3 = fact('p3', '10.0.0.1'); // claims p1's IP

  it('a rollback gives back the entries from before the transaction, a commit keeps its writes', () => {
    const f = new PodFacts<PodFact>();
    f.begin();
    put(f, p1);
    put(f, p2);
    f.commit();
    const committed = state(f);
    f.begin();
    put(f, p3);
    f.deletePod('a/p2');
    f.deleteOwner('10.0.0.2');
    put(f, fact('p1', '10.0.0.1', true));
    f.rollback();
    expect(state(f)).toEqual(committed);
    expect(f.inTransaction).toBe(false);
    f.begin();
    f.deletePod('a/p1');
    f.commit();
    expect(f.pod('a/p1')).toBeUndefined();
    expect(f.ownerOf('10.0.0.1')).toBe(p1); // the owner table is the caller's to change
  });

  it('a transaction that began empty (a cold start) keeps nothing and rolls back to empty', () => {
    const f = new PodFacts<PodFact>();
    f.begin();
    put(f, p1);
    put(f, p2);
    f.rollback();
    expect(f.podCount).toBe(0);
    expect([...f.ipOwners()]).toEqual([]);
  });

  it('after an undo: true only when every written key holds the same pod, locality and IP owner again', () => {
    const f = new PodFacts<PodFact>();
    f.begin();
    put(f, p1);
    f.commit();
    // An undo that re-creates the record (a new object, same pod and locality) gave the facts back.
    f.begin();
    put(f, p3);
    f.deletePod('a/p3');
    put(f, { ...p1 });
    expect(f.undone()).toBe(true);
    expect(f.inTransaction).toBe(false);
    // One that left another pod owning the IP did not: the transaction stays open for the rollback.
    f.begin();
    put(f, p3);
    f.setPod('a/p3', p3);
    f.deletePod('a/p3');
    expect(f.undone()).toBe(false);
    expect(f.inTransaction).toBe(true);
    f.rollback();
    expect(f.ownerOf('10.0.0.1')?.pod).toBe(p1.pod);
    // Nor one that changed a pod's locality.
    f.begin();
    f.setPod('a/p1', { pod: p1.pod, local: true, written: 0 });
    expect(f.undone()).toBe(false);
    f.rollback();
    expect(f.pod('a/p1')).toEqual({ pod: p1.pod, local: false, written: 0 });
  });

  it('the IP owners answer as one table keyed by the IP text, through commits and rollbacks (IPv4 keyed by number, perf23)', () => {
    // Texts that one text-keyed table tells apart: IPv4 across the int32 sign bit, the ends of the
    // range, IPv6 (an IPv4-mapped one too) and texts that are no canonical dotted quad.
    const texts = ['10.0.0.1', '127.255.255.255', '128.0.0.0', '200.1.2.3', '0.0.0.0', '255.255.255.255', 'fd00::1', '::ffff:10.0.0.1', '010.0.0.1', '10.0.0.1.', '1.2.3', '256.0.0.1'];
    const recs = texts.map((t, i) => ({ pod: fact(`q${i}`, t.includes(':') ? t : '10.9.9.9').pod, local: false }));
    const f = new PodFacts<PodFact>();
    let committed = new Map<string, PodFact>();
    let rand = 7;
    const next = (n: number): number => (rand = (rand * 1103515245 + 12345) % 2147483648) % n;
    for (let txn = 0; txn < 60; txn++) {
      const want = new Map(committed);
      f.begin();
      for (let op = 0; op < 8; op++) {
        const text = texts[next(texts.length)] as string;
        if (next(3) === 0) {
          f.deleteOwner(text);
          want.delete(text);
        } else {
          const rec = recs[next(recs.length)] as PodFact;
          f.setOwner(text, rec);
          want.set(text, rec);
        }
      }
      for (const t of texts) expect(f.ownerOf(t)).toBe(want.get(t));
      if (next(2) === 0) {
        f.commit();
        committed = want;
      } else f.rollback();
      for (const t of texts) expect(f.ownerOf(t)).toBe(committed.get(t));
      expect(new Map(f.ipOwners())).toEqual(committed);
    }
  });
});
