import { describe, expect, it } from 'vitest';
import { parseIp } from '../../src/model/cidr.js';
import type { Pod } from '../../src/model/cluster.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { parseManifestFile } from '../../src/policy/manifest.js';

// A cold start adopts its policies' rule units after all its events, one stage per loop
// (policy-resolver.ts `deferAdoptions`/`adoptDeferred`). Whatever the batch does to a unit before
// that (its subject gaining or losing the endpoint, its policy replaced or deleted), the result
// must be the one of applying the same events one transaction at a time.

let ip = 2;
const pod = (name: string, labels: Record<string, string>, local: boolean): EngineEvent => {
  ip++;
  const p: Pod = { namespace: 'prod', name, labels, ip: parseIp(`10.244.0.${ip}`), serviceAccount: 'default', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] };
  return { type: 'upsertPod', pod: p, local };
};
const policy = (name: string, subject: string, peer: string, port: string, tiered = ''): EngineEvent => ({
  type: 'upsertPolicy',
  policy: parseManifestFile(
    `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ${name}, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: ${subject}}}
  ingress:
  - ${peer}
    toPorts: [{ports: [{port: "${port}", protocol: TCP}]}]
  egress:
  - toCIDR: [192.0.2.0/24]${tiered}
`,
    `${name}.yaml`,
  )[0]!,
});
const del = (name: string): EngineEvent => ({ type: 'deletePolicy', ref: { kind: 'CiliumNetworkPolicy', namespace: 'prod', name } });

/** Identities by their labels: one transaction per event frees CIDR identities at other times, so numbers may differ. */
function state(e: Engine): string {
  const named = (id: number): string => JSON.stringify(e.identityLabels(id));
  const maps = e.endpoints().map((ep) => [ep, [...e.mapState(ep).values()].map((r) => `${named(r.key.identity)} ${r.key.direction} ${r.key.protocol}/${r.key.port}/${r.key.portPrefixLen} ${JSON.stringify(r.entry)}`).sort()]);
  const ipcache = e.ipcache().map((c) => `${c.prefix} ${named(c.identity)}`);
  return JSON.stringify({ maps, ids: e.identities().map(named).sort(), ipcache, policy: e.endpoints().map((ep) => e.policyOf(ep).length) });
}

function batch(): EngineEvent[] {
  ip = 2;
  return [
    { type: 'upsertNamespace', name: 'prod', labels: {} },
    pod('web0', { app: 'web' }, true),
    // Attached before its subject's endpoint exists, then adopted when the endpoint comes.
    policy('b', 'db', 'fromCIDR: [10.1.0.0/16]', '5432'),
    policy('a', 'web', 'fromCIDR: [10.3.0.0/16]', '80'),
    policy('a2', 'web', 'fromEndpoints: [{matchLabels: {role: client}}]', '80'),
    pod('db0', { app: 'db' }, true),
    // Replaced and deleted within the batch.
    policy('c', 'web', 'fromEndpoints: [{matchLabels: {role: client}}]', '81'),
    policy('c', 'web', 'fromEndpoints: [{matchLabels: {role: admin}}]', '82'),
    policy('d', 'db', 'fromCIDR: [10.2.0.0/16]', '6000'),
    del('d'),
    policy('e', 'web', 'fromEndpoints: [{}]', 'http'),
    // Endpoints and peers after the policies; one endpoint leaves again.
    pod('web1', { app: 'web' }, true),
    { type: 'deletePod', namespace: 'prod', name: 'web1' },
    pod('c0', { role: 'client' }, false),
    pod('a0', { role: 'admin' }, false),
  ];
}

/** As the cold start numbered them before adoptions were deferred (22be3da). */
const CIDR_NUMBERS = [
  { prefix: '10.1.0.0/16', identity: 16777219 },
  { prefix: '10.3.0.0/16', identity: 16777217 },
  { prefix: '192.0.2.0/24', identity: 16777218 },
];

describe('a cold start adopts its rule units in one batch', () => {
  it('ends where the same events one at a time end', () => {
    const events = batch();
    const cold = new Engine();
    const cs = cold.apply(events);
    const steps = new Engine();
    for (const e of batch()) steps.apply([e]);
    expect(cs.deltas.length).toBeGreaterThan(0);
    expect(state(cold)).toBe(state(steps));
    expect(cold.mapState('prod/web0').size).toBeGreaterThan(3);
    expect(cold.mapState('prod/db0').size).toBeGreaterThanOrEqual(3);
  });

  it('CIDR identities get the numbers adopting one policy at a time gives them', () => {
    const e = new Engine();
    e.apply(batch());
    const cidrs = e.ipcache().filter((c) => !c.prefix.startsWith('10.244.'));
    expect(cidrs).toEqual(CIDR_NUMBERS);
  });

  it('later transactions adopt at once', () => {
    const e = new Engine();
    e.apply(batch());
    const before = e.mapState('prod/web0').size;
    const cs = e.apply([policy('f', 'web', 'fromEndpoints: [{matchLabels: {role: client}}]', '9000')]);
    expect(cs.deltas.length).toBeGreaterThan(0);
    expect(e.mapState('prod/web0').size).toBeGreaterThan(before);
  });
});
