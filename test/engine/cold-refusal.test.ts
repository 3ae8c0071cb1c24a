import { describe, expect, it } from 'vitest';
import { parseIp } from '../../src/model/cidr.js';
import type { Pod } from '../../src/model/cluster.js';
import { Engine } from '../../src/engine/engine.js';
import { EngineEvent, MapCapacityError } from '../../src/engine/events.js';
import { parseManifestFile } from '../../src/policy/manifest.js';

// A transaction on an empty model (a cold start) keeps no undo log: a refusal rebuilds the empty
// stages instead (engine.ts `transaction`). The engine must end exactly as a fresh one.
const pod = (name: string, labels: Record<string, string>, n: number): Pod => ({ namespace: 'prod', name, labels, ip: parseIp(`10.244.1.${n}`), serviceAccount: 'default', ports: [] });
const [allow] = parseManifestFile(
  `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: small, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`,
  'cold-refusal.yaml',
);
const ns: EngineEvent = { type: 'upsertNamespace', name: 'prod', labels: {} };
const web: EngineEvent = { type: 'upsertPod', pod: pod('web', { app: 'web' }, 2), local: true };
const clients = (n: number): EngineEvent[] => Array.from({ length: n }, (_, i) => ({ type: 'upsertPod', pod: pod(`c${i}`, { app: 'client', n: String(i) }, 10 + i), local: false }));
const batch = (n: number): EngineEvent[] => [ns, web, { type: 'upsertPolicy', policy: allow! }, ...clients(n)];
const snapshot = (e: Engine): string =>
  JSON.stringify({ ids: e.identities(), endpoints: e.endpoints(), stats: e.stats(), sizes: e.sizes(), maps: e.endpoints().map((ep) => [...e.mapState(ep)]) }, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));

describe('a refused cold start', () => {
  it('leaves the engine as a fresh one: same state, and the next batch gets the same deltas and identity numbers', () => {
    const refused = new Engine({ mapCapacity: 20 });
    const fresh = new Engine({ mapCapacity: 20 });
    const before = snapshot(refused);
    expect(() => refused.apply(batch(30))).toThrow(MapCapacityError);
    expect(snapshot(refused)).toBe(before);
    expect(snapshot(refused)).toBe(snapshot(fresh));
    const a = refused.apply(batch(10));
    const b = fresh.apply(batch(10));
    expect(a.deltas).toEqual(b.deltas);
    expect(a.deltas.length).toBeGreaterThan(10);
    expect(refused.identityOfPod('prod/c9')).toBe(fresh.identityOfPod('prod/c9'));
    expect(snapshot(refused)).toBe(snapshot(fresh));
    // Later refusals go through the undo log, and also leave the engine as it was.
    const mid = snapshot(refused);
    expect(() => refused.apply(clients(30).slice(10))).toThrow(MapCapacityError);
    expect(snapshot(refused)).toBe(mid);
  });
});
