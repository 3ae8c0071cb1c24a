import { describe, expect, it } from 'vitest';
import { applyChangeSet } from '../../src/backend/backend.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import { Pod } from '../../src/model/cluster.js';
import { podIdentityLabels, securityLabels, UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';
import { NAMESPACE_NAME_LABEL } from '../../src/model/labels.js';
import { parseManifestFile } from '../../src/policy/manifest.js';
import { steppedBackend } from './stepped-backend.js';

/*
 * Review 27x of fix2132 (finding 2200, docs/attack-findings-27x.md): the deny of a number no selector names is now
 * placed in a direction only while an identity-0 allow is there. Written one map operation at a time (the write plan's
 * tighten phase, then its loosen phase: backend.ts `applyChangeSet`), no intermediate map may admit such a number
 * (a stand-in, or 255 while a pod holds it): the deny must be in before the identity-0 allow that needs it, and leave
 * after it. The datapath's verdict is read from the written map (`backendLookup`: the peer's LPM lookup and identity 0's,
 * Cilium 1.19 bpf/lib/policy.h `__policy_can_access`) on the ports every policy here names, and one none does.
 */
const ns: EngineEvent = { type: 'upsertNamespace', name: 'prod', labels: {} };
const mkPod = (name: string, ip: string): Pod => ({ namespace: 'prod', name, labels: { app: name }, ip: parseIp(ip), serviceAccount: 'default', ports: [] });
const web = mkPod('web', '10.244.0.10');
const client = mkPod('client', '10.244.0.11');
const db = mkPod('db', '10.244.0.12');
const stray = mkPod('stray', '10.244.0.13');
const labelsOf = (p: Pod): Record<string, string> => securityLabels(podIdentityLabels(p, { [NAMESPACE_NAME_LABEL]: p.namespace }));
const policy = (ingress: string, egress: string): EngineEvent => {
  const [p] = parseManifestFile(
    `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - ${ingress}
  egress:
  - ${egress}
`,
    'web.yaml',
  );
  return { type: 'upsertPolicy', policy: p! };
};
const narrow = policy('fromEndpoints: [{matchLabels: {app: client}}]', 'toEndpoints: [{matchLabels: {app: client}}]');
// Identity-0 allows of several shapes: an entity on a port range, a port-only rule of protocol ANY, an L7 redirect.
const wide = policy(
  'toPorts: [{ports: [{port: "8000", endPort: 9000, protocol: ANY}]}]',
  'toEntities: [all]\n    toPorts: [{ports: [{port: "443", protocol: TCP}]}]\n  - toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET}]}}]',
);
const PROBES: readonly [number, number][] = [
  [6, 443],
  [6, 80],
  [6, 8000],
  [17, 8500],
  [132, 9000],
  [6, 22],
];

/**
 * Writes each transaction's change set one operation at a time. A number counts while the ipcache maps some address to
 * it: the numbers `denied` names before the transaction until the ipcache is written (between the plan's phases), those
 * it names after from then on.
 */
function run(steps: readonly (readonly EngineEvent[])[], denied: (e: Engine) => readonly number[]): { seen: string[]; checks: number } {
  const e = new Engine({ identitySource: 'external' });
  const maps = new MemoryBackend();
  const seen: string[] = [];
  let checks = 0;
  let live: readonly number[] = [];
  const check = (): void => {
    if (!maps.endpoints().includes('prod/web')) return;
    for (const x of live)
      for (const d of ['ingress', 'egress'] as const)
        for (const [proto, port] of PROBES) {
          checks++;
          const v = backendLookup(maps, 'prod/web', x, d, proto, port);
          if (v !== undefined && !v.entry.deny) seen.push(`${x} ${d} ${proto}/${port}: ${JSON.stringify(v)}`);
        }
  };
  const stepped = steppedBackend(maps, check);
  for (const events of steps) {
    live = denied(e);
    const cs = e.apply(events);
    applyChangeSet(stepped, cs, () => {
      live = denied(e);
      check();
    });
  }
  return { seen, checks };
}

const base: EngineEvent[] = [
  ns,
  { type: 'upsertPod', pod: web, local: true },
  { type: 'upsertPod', pod: client },
  { type: 'upsertPod', pod: db },
  narrow,
  { type: 'upsertIdentity', id: 40000, labels: labelsOf(web) },
  { type: 'upsertIdentity', id: 40001, labels: labelsOf(client) },
  { type: 'upsertIdentity', id: 40002, labels: labelsOf(db) },
];
const standIn: EngineEvent = { type: 'upsertIdentity', id: 40002, labels: labelsOf(db), unreadable: true };

describe('27x: the stand-in deny and the identity-0 allow it guards, written one operation at a time', () => {
  it('a stand-in, while the identity-0 allows come and go (apart, and in the transaction that brings the stand-in)', () => {
    const { seen, checks } = run([base, [standIn], [wide], [narrow], [wide], [{ type: 'deleteIdentity', id: 40002 }, { ...standIn }], [narrow]], (e) => (e.identityLabels(40002) ? [40002] : []));
    expect(checks).toBeGreaterThan(50);
    expect(seen).toEqual([]);
  });

  it('a stand-in arriving with the identity-0 allows, and the allows leaving as it turns readable', () => {
    // When 40002 turns readable in the last step it is db again: denied by both old (stand-in) and new (narrow: client only).
    const { seen, checks } = run([base, [standIn, wide], [{ type: 'upsertIdentity', id: 40002, labels: labelsOf(db) }, narrow]], () => [40002]);
    expect(checks).toBeGreaterThan(20);
    expect(seen).toEqual([]);
  });

  it('255, while a pod without an external number holds it, as the identity-0 allows come and go', () => {
    const { seen, checks } = run([base, [{ type: 'upsertPod', pod: stray }], [wide], [narrow], [wide, { type: 'deletePod', namespace: 'prod', name: 'stray' }], [{ type: 'upsertPod', pod: stray }, narrow]], (e) =>
      e.identityOfPod('prod/stray') === UNALLOCATED_POD_IDENTITY ? [UNALLOCATED_POD_IDENTITY] : [],
    );
    expect(checks).toBeGreaterThan(20);
    expect(seen).toEqual([]);
  });
});
