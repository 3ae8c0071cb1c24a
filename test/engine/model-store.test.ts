import { describe, expect, it } from 'vitest';
import type { Pod } from '../../src/model/cluster.js';
import { parseIp } from '../../src/model/cidr.js';
import { ModelStore } from '../../src/engine/model-store.js';
import { type PodFact, PodFacts } from '../../src/engine/pod-facts.js';
import { type PolicyFact, PolicyFacts } from '../../src/engine/policy-facts.js';
import { type Policy, policyRefKey, type PolicyRef } from '../../src/model/rules.js';
import { parseManifestFile } from '../../src/policy/manifest.js';

let ipCounter = 1;
function pod(namespace: string, name: string): Pod {
  ipCounter++;
  return { namespace, name, labels: { app: name }, ip: parseIp(`10.9.${ipCounter >> 8}.${ipCounter & 255}`), serviceAccount: 'default', ports: [] };
}

function policy(namespace: string, name: string) {
  const [p] = parseManifestFile(`apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: ${namespace}, name: ${name}}\nspec: {podSelector: {}}\n`, 't.yaml');
  if (!p) throw new Error('no policy');
  return p;
}

/** Pods and policies reach the model through the tables' facts (written as the pod table and the resolver do) and then the committed events. */
function podStore() {
  const facts = new PodFacts<PodFact>();
  const policyFacts = new PolicyFacts<PolicyFact>();
  const m = new ModelStore(facts, policyFacts);
  let written = 0;
  const upsert = (p: Pod): void => {
    const rec = { pod: p, local: false, written: ++written };
    facts.setPod(`${p.namespace}/${p.name}`, rec);
    facts.setOwner(p.ip.text, rec);
    m.apply({ type: 'upsertPod', pod: p });
  };
  const remove = (namespace: string, name: string): void => {
    facts.deletePod(`${namespace}/${name}`);
    m.apply({ type: 'deletePod', namespace, name });
  };
  const upsertPolicy = (p: Policy): void => {
    const key = policyRefKey(p.ref);
    const rec = policyFacts.get(key);
    if (rec) policyFacts.setGiven(key, rec, p);
    else policyFacts.add(key, { given: p });
    m.apply({ type: 'upsertPolicy', policy: p });
  };
  const deletePolicy = (ref: PolicyRef): void => {
    policyFacts.delete(policyRefKey(ref));
    m.apply({ type: 'deletePolicy', ref });
  };
  return { m, facts, policyFacts, upsert, remove, upsertPolicy, deletePolicy };
}

describe('ModelStore namespace index (built on first use)', () => {
  it('lists the pod table\'s order before it is built and an incremental index\'s after', () => {
    const { m, facts, policyFacts, upsert, remove, upsertPolicy, deletePolicy } = podStore();
    for (const p of [pod('a', 'p1'), pod('b', 'p2'), pod('a', 'p3'), pod('a', 'p4')]) upsert(p);
    remove('a', 'p1');
    upsert(pod('a', 'p1')); // the pod table's table gives a re-added key its old place back (tombstone-map.ts)
    upsert(pod('a', 'p3')); // an update keeps its place
    for (const [ns, n] of [['a', 'n1'], ['b', 'n2'], ['a', 'n3']] as const) upsertPolicy(policy(ns, n));
    expect([...m.podsInNamespace('a')]).toEqual(['a/p1', 'a/p3', 'a/p4']);
    expect([...m.policiesInNamespace('a')]).toEqual(['NetworkPolicy/a/n1', 'NetworkPolicy/a/n3']);
    // Kept up to date once built.
    upsert(pod('a', 'p5'));
    remove('a', 'p4');
    upsertPolicy(policy('a', 'n4'));
    deletePolicy({ kind: 'NetworkPolicy', namespace: 'a', name: 'n1' });
    expect([...m.podsInNamespace('a')]).toEqual(['a/p1', 'a/p3', 'a/p5']);
    expect([...m.policiesInNamespace('a')]).toEqual(['NetworkPolicy/a/n3', 'NetworkPolicy/a/n4']);
    for (const k of [...m.podsInNamespace('a')]) facts.deletePod(k); // the pod table and the resolver remove them in the transaction
    for (const k of [...m.policiesInNamespace('a')]) policyFacts.delete(k);
    m.apply({ type: 'deleteNamespace', name: 'a' });
    expect([...m.podsInNamespace('a')]).toEqual([]);
    expect([...m.podsInNamespace('b')]).toEqual(['b/p2']);
    expect(m.hasPod('a/p3')).toBe(false);
    expect(m.hasPolicy('NetworkPolicy/a/n3')).toBe(false);
    expect(m.hasPolicy('NetworkPolicy/b/n2')).toBe(true);
  });
});
