import { describe, expect, it } from 'vitest';
import type { Pod } from '../../src/model/cluster.js';
import { parseIp } from '../../src/model/cidr.js';
import { ModelStore } from '../../src/engine/model-store.js';
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

describe('ModelStore namespace index (built on first use)', () => {
  it('lists what an index kept from the start would, before and after it is built', () => {
    const m = new ModelStore();
    for (const p of [pod('a', 'p1'), pod('b', 'p2'), pod('a', 'p3'), pod('a', 'p4')]) m.apply({ type: 'upsertPod', pod: p });
    m.apply({ type: 'deletePod', namespace: 'a', name: 'p1' });
    m.apply({ type: 'upsertPod', pod: pod('a', 'p1') });
    m.apply({ type: 'upsertPod', pod: pod('a', 'p3') }); // an update keeps its place
    for (const [ns, n] of [['a', 'n1'], ['b', 'n2'], ['a', 'n3']] as const) m.apply({ type: 'upsertPolicy', policy: policy(ns, n) });
    expect([...m.podsInNamespace('a')]).toEqual(['a/p3', 'a/p4', 'a/p1']);
    expect([...m.policiesInNamespace('a')]).toEqual(['NetworkPolicy/a/n1', 'NetworkPolicy/a/n3']);
    // Kept up to date once built.
    m.apply({ type: 'upsertPod', pod: pod('a', 'p5') });
    m.apply({ type: 'deletePod', namespace: 'a', name: 'p4' });
    m.apply({ type: 'upsertPolicy', policy: policy('a', 'n4') });
    m.apply({ type: 'deletePolicy', ref: { kind: 'NetworkPolicy', namespace: 'a', name: 'n1' } });
    expect([...m.podsInNamespace('a')]).toEqual(['a/p3', 'a/p1', 'a/p5']);
    expect([...m.policiesInNamespace('a')]).toEqual(['NetworkPolicy/a/n3', 'NetworkPolicy/a/n4']);
    m.apply({ type: 'deleteNamespace', name: 'a' });
    expect([...m.podsInNamespace('a')]).toEqual([]);
    expect([...m.podsInNamespace('b')]).toEqual(['b/p2']);
    expect(m.hasPod('a/p3')).toBe(false);
    expect(m.hasPolicy('NetworkPolicy/a/n3')).toBe(false);
    expect(m.hasPolicy('NetworkPolicy/b/n2')).toBe(true);
  });
});
