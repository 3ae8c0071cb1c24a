import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.js';
import type { EngineEvent } from '../src/engine/events.js';
import { parseIp } from '../src/model/cidr.js';
import { ClusterState, EMPTY_CLUSTER, ipOwner, Pod, upsertExternal } from '../src/model/cluster.js';
import type { Flow } from '../src/model/flow.js';
import { applyEventToCluster } from '../src/harness/cluster-sync.js';
import { decideFlow } from '../src/naive/evaluator.js';
import { parseManifestFile } from '../src/policy/manifest.js';

/**
 * Finding 583 (docs/attack-findings-14i.md): a remote pod claiming a local endpoint's address.
 * Cilium gives a local endpoint's own address no stronger source than a remote pod's: the endpoint
 * writes it only to the kvstore (pkg/endpoint/policy.go `runIPIdentitySync`), and the agent learns
 * it back like any other, from its CiliumEndpoint (pkg/k8s/watchers/cilium_endpoint.go
 * `endpointUpdated`, source CustomResource) or the kvstore (pkg/ipcache/kvstore.go `OnUpdate`,
 * source KVStore). Equal sources overwrite (pkg/source/source.go `AllowOverwrite`), so the last
 * write owns the address whichever node the pod is on, and only the owner's deletion removes it
 * (`DeleteOnMetadataMatch`). These tests pin that the engine (incremental) and the oracle agree on
 * it, with local and remote claimants mixed.
 */
const ns: EngineEvent = { type: 'upsertNamespace', name: 'prod', labels: {} };
const mkPod = (name: string, app: string, ip: string): Pod => ({ namespace: 'prod', name, labels: { app }, ip: parseIp(ip), serviceAccount: 'default', ports: [] });
const add = (p: Pod, local: boolean): EngineEvent => ({ type: 'upsertPod', pod: p, local });
const del = (name: string): EngineEvent => ({ type: 'deletePod', namespace: 'prod', name });
const [egressEvil] = parseManifestFile(
  `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: client, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress: [{toEndpoints: [{matchLabels: {app: evil}}]}]
`,
  'client.yaml',
);

class Run {
  readonly engine = new Engine();
  /** Externals at the probed addresses: the oracle resolves one to the pod or node owning it, else world. */
  state: ClusterState = ['10.0.0.1', '10.0.0.3', '192.168.1.1'].reduce((s, ip) => upsertExternal(s, { name: `at-${ip}`, ip: parseIp(ip) }), EMPTY_CLUSTER);
  apply(events: EngineEvent[]): void {
    this.engine.apply(events);
    for (const e of events) this.state = applyEventToCluster(this.state, e);
  }
  /**
   * Whether client's egress lets client -> address:80 out, engine and oracle (they must agree).
   * Egress only: the packet is delivered to whichever local endpoint holds the address, which the
   * egress verdict does not depend on.
   */
  allowed(to: string): boolean {
    const flow: Flow = { from: 'prod/client', to: `at-${to}`, port: 80, protocol: 'TCP' };
    const engine = this.engine.lookup('prod/client', this.engine.identityOfIp(parseIp(to)), 'egress', 6, 80);
    const allowed = engine !== undefined && !engine.entry.deny;
    expect(decideFlow(this.state, flow).egress?.allowed).toBe(allowed);
    return allowed;
  }
}

describe('583: a remote pod claiming a local endpoint address (last writer, as Cilium)', () => {
  const server = mkPod('server', 'server', '10.0.0.1');
  const client = mkPod('client', 'client', '10.0.0.2');
  const evil = mkPod('evil', 'evil', '10.0.0.1');

  it('the remote claimant written last owns the address; the local owner written again takes it back', () => {
    const r = new Run();
    r.apply([ns, { type: 'upsertPolicy', policy: egressEvil! }, add(server, true), add(client, true)]);
    expect(r.allowed('10.0.0.1')).toBe(false);
    r.apply([add(evil, false)]);
    expect(ipOwner(r.state, '10.0.0.1')).toBe('prod/evil');
    expect(r.allowed('10.0.0.1')).toBe(true);
    // A new write of the local pod (its CiliumEndpoint changes) upserts its entry again.
    r.apply([add({ ...server, labels: { app: 'server', v: '2' } }, true)]);
    expect(ipOwner(r.state, '10.0.0.1')).toBe('prod/server');
    expect(r.allowed('10.0.0.1')).toBe(false);
  });

  it('the local endpoint going away leaves a remote owner its entry; the owner going away leaves world', () => {
    const r = new Run();
    r.apply([ns, { type: 'upsertPolicy', policy: egressEvil! }, add(server, true), add(client, true), add(evil, false)]);
    r.apply([del('server')]);
    expect(ipOwner(r.state, '10.0.0.1')).toBe('prod/evil');
    expect(r.allowed('10.0.0.1')).toBe(true);
    r.apply([add(server, true)]);
    r.apply([del('evil')]);
    // The owner (server, written last) remains: deleting a claimant that does not own it changes nothing.
    expect(ipOwner(r.state, '10.0.0.1')).toBe('prod/server');
    r.apply([add(evil, false), del('evil')]);
    // The owner's deletion removes the entry although the local pod still claims the address.
    expect(ipOwner(r.state, '10.0.0.1')).toBeUndefined();
    expect(r.engine.ipcache().some((x) => x.prefix.startsWith('10.0.0.1/'))).toBe(false);
    expect(r.allowed('10.0.0.1')).toBe(false);
  });

  it('a local pod claiming the local node address does not take it (the node manager writes it with source Local)', () => {
    const r = new Run();
    r.apply([ns, { type: 'upsertPolicy', policy: egressEvil! }, add(client, true), { type: 'upsertNode', name: 'n1', ips: [parseIp('192.168.1.1')], local: true }]);
    r.apply([add(mkPod('evil', 'evil', '192.168.1.1'), false)]);
    expect(r.engine.identityOfIp(parseIp('192.168.1.1'))).toBe(1);
    expect(r.allowed('192.168.1.1')).toBe(false);
  });
});

const IPS = ['10.0.0.1', '10.0.0.3'] as const;
const NAMES = ['a', 'b', 'c'] as const;
type Op = { op: 'put'; name: string; ip: string; local: boolean; app: string } | { op: 'delete'; name: string };
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant('put' as const), name: fc.constantFrom(...NAMES), ip: fc.constantFrom(...IPS), local: fc.boolean(), app: fc.constantFrom('web', 'evil') }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('delete' as const), name: fc.constantFrom(...NAMES) }) },
);

describe('583: address ownership with local and remote claimants, engine vs oracle', () => {
  it('after every event the engine ipcache entry is the oracle owner (none once the owner left)', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 14 }), (ops) => {
        const r = new Run();
        r.apply([ns, { type: 'upsertPolicy', policy: egressEvil! }, add(mkPod('client', 'client', '10.0.0.2'), true)]);
        for (const o of ops) {
          if (o.op === 'delete' && !r.state.pods.has(`prod/${o.name}`)) continue;
          r.apply([o.op === 'put' ? add(mkPod(o.name, o.app, o.ip), o.local) : del(o.name)]);
          for (const ip of IPS) {
            const owner = ipOwner(r.state, ip);
            const entry = r.engine.ipcache().find((x) => x.prefix.startsWith(`${ip}/`));
            expect(entry?.identity).toBe(owner === undefined ? undefined : r.engine.identityOfPod(owner));
            r.allowed(ip);
          }
        }
      }),
      { numRuns: 150 },
    );
  });
});
