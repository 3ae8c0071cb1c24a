import { describe, expect, it } from 'vitest';
import { type PolicyFact, PolicyFacts } from '../../src/engine/policy-facts.js';
import { parseManifestFile } from '../../src/policy/manifest.js';
import type { Policy } from '../../src/model/rules.js';

function policy(name: string, app: string): Policy {
  const [p] = parseManifestFile(`apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: a, name: ${name}}\nspec: {podSelector: {matchLabels: {app: ${app}}}}\n`, 't.yaml');
  if (!p) throw new Error('no policy');
  return p;
}

/** Written as the resolver writes: a new key gets a record, a known key's record is updated in place. */
function upsert(f: PolicyFacts<PolicyFact>, key: string, given: Policy): void {
  const rec = f.get(key);
  if (rec) f.setGiven(key, rec, given);
  else f.add(key, { given });
}

const state = (f: PolicyFacts<PolicyFact>): Map<string, Policy> => new Map([...f.entries()].map(([k, r]) => [k, r.given]));

describe('PolicyFacts: the resolver writes them, the committed model reads them', () => {
  const keys = ['k1', 'k2', 'k3', 'k4'];
  const policies = ['web', 'db', 'cache'].flatMap((app) => keys.map((k) => policy(k, app)));

  it('a rollback gives back the policies from before the transaction (records updated in place included), a commit keeps its writes', () => {
    const f = new PolicyFacts<PolicyFact>();
    let committed = new Map<string, Policy>();
    let rand = 11;
    const next = (n: number): number => (rand = (rand * 1103515245 + 12345) % 2147483648) % n;
    for (let txn = 0; txn < 80; txn++) {
      const want = new Map(committed);
      f.begin();
      for (let op = 0; op < 6; op++) {
        const key = keys[next(keys.length)] as string;
        if (next(3) === 0) {
          if (f.get(key) === undefined) continue;
          f.delete(key);
          want.delete(key);
        } else {
          const p = policies[next(policies.length)] as Policy;
          upsert(f, key, p);
          want.set(key, p);
        }
      }
      expect(state(f)).toEqual(want);
      if (next(2) === 0) {
        f.commit();
        committed = want;
      } else f.rollback();
      expect(f.inTransaction).toBe(false);
      expect(state(f)).toEqual(committed);
      expect(f.size).toBe(committed.size);
    }
  });

  it('a transaction that began empty (a cold start) keeps nothing and rolls back to empty', () => {
    const f = new PolicyFacts<PolicyFact>();
    f.begin();
    upsert(f, 'k1', policies[0] as Policy);
    upsert(f, 'k1', policies[4] as Policy);
    f.rollback();
    expect(f.size).toBe(0);
    expect([...f.entries()]).toEqual([]);
  });

  it('after an undo: true only when every written key holds the same policy again (its record may be new)', () => {
    const [p1, p2] = policies as [Policy, Policy];
    const f = new PolicyFacts<PolicyFact>();
    f.begin();
    upsert(f, 'k1', p1);
    f.commit();
    // An undo that deleted the key and re-created its record with the same policy gave the facts back.
    f.begin();
    upsert(f, 'k1', p2);
    f.delete('k1');
    f.add('k1', { given: p1 });
    upsert(f, 'k2', p2);
    f.delete('k2');
    expect(f.undone()).toBe(true);
    expect(f.inTransaction).toBe(false);
    // One that left another policy (even an equal copy) under a key did not: the transaction stays open for the rollback.
    const old = f.get('k1');
    f.begin();
    upsert(f, 'k1', { ...p1 });
    expect(f.undone()).toBe(false);
    expect(f.inTransaction).toBe(true);
    f.rollback();
    expect(f.get('k1')).toBe(old);
    expect(f.get('k1')?.given).toBe(p1);
    // Nor one that left a key the transaction added.
    f.begin();
    upsert(f, 'k3', p2);
    expect(f.undone()).toBe(false);
    f.rollback();
    expect(f.get('k3')).toBeUndefined();
  });
});
