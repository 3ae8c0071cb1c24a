import { describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.js';
import type { ChangeSet, EngineEvent } from '../src/engine/events.js';
import { engineDecision } from '../src/harness/engine-decider.js';
import { IpAddress, parseIp } from '../src/model/cidr.js';
import { ClusterState, EMPTY_CLUSTER, namespaceWithDefaults, upsertNamespace, upsertNode, upsertPod, upsertPolicy } from '../src/model/cluster.js';
import type { Policy } from '../src/model/rules.js';
import { decideFlow } from '../src/naive/evaluator.js';
import { parseManifest } from '../src/policy/manifest.js';

/*
 * Round 8r attacks (docs/attack-findings-8r.md): ClusterNetworkPolicy `nodes` peers and the node
 * identities behind them, judged through what the kernel gets (the change sets' ipcache deltas),
 * not the engine's own view.
 */

/** An engine and the ipcache a kernel holds after its change sets. */
class Kernel {
  readonly engine = new Engine();
  readonly ipcache = new Map<string, number>();
  apply(events: readonly EngineEvent[]): ChangeSet {
    const cs = this.engine.apply(events);
    for (const d of cs.ipcache) {
      if (d.op === 'delete') this.ipcache.delete(d.prefix);
      else this.ipcache.set(d.prefix, d.identity);
    }
    return cs;
  }
  readonly lookup = (ip: IpAddress): number => this.ipcache.get(`${ip.text}/${ip.family === 'ipv4' ? 32 : 128}`) ?? 2;
}

const WEB = { namespace: 'a', name: 'web', labels: { app: 'web' }, ip: parseIp('10.244.0.10'), serviceAccount: 'default', ports: [] };
const GPU_NODE = { name: 'n1', ips: [parseIp('172.18.0.2')], local: false, labels: { pool: 'gpu' } };
const denyGpuNodes = (): Policy =>
  parseManifest(
    { apiVersion: 'policy.networking.k8s.io/v1alpha2', kind: 'ClusterNetworkPolicy', metadata: { name: 'no-gpu' }, spec: { tier: 'Admin', priority: 1, subject: { namespaces: {} }, egress: [{ action: 'Deny', to: [{ nodes: { matchLabels: { pool: 'gpu' } } }] }] } },
    'no-gpu.yaml',
  );

describe('90. a nodes peer applied after its node: the kernel ipcache gets the node identity', () => {
  it('a Deny on nodes pool=gpu applied to a running cluster denies egress to the gpu node in the kernel', () => {
    const k = new Kernel();
    k.apply([
      { type: 'upsertNamespace', name: 'a', labels: {} },
      { type: 'upsertPod', pod: WEB, local: true },
      { type: 'upsertNode', name: GPU_NODE.name, ips: GPU_NODE.ips, labels: GPU_NODE.labels },
    ]);
    const policy = denyGpuNodes();
    k.apply([{ type: 'upsertPolicy', policy }]);
    // The node left remote-node (6) for its labels' identity; the kernel must be told.
    expect(k.ipcache.get('172.18.0.2/32')).toBe(k.engine.identityOfIp(parseIp('172.18.0.2')));
    let s: ClusterState = upsertPod(upsertNamespace(EMPTY_CLUSTER, namespaceWithDefaults('a', {})), WEB);
    s = upsertPolicy(upsertNode(s, GPU_NODE), policy);
    const flow = { from: 'a/web', to: '172.18.0.2', port: 80, protocol: 'TCP' as const };
    expect(decideFlow(s, flow).allowed).toBe(false);
    expect(engineDecision(k.engine, s, flow, undefined, k.lookup).allowed, 'the kernel, by its ipcache').toBe(false);
  });

  it('deleting the policy gives the node its remote-node entry back in the kernel', () => {
    const k = new Kernel();
    const policy = denyGpuNodes();
    k.apply([{ type: 'upsertNamespace', name: 'a', labels: {} }, { type: 'upsertPod', pod: WEB, local: true }, { type: 'upsertPolicy', policy }, { type: 'upsertNode', name: GPU_NODE.name, ips: GPU_NODE.ips, labels: GPU_NODE.labels }]);
    expect(k.ipcache.get('172.18.0.2/32')).toBeGreaterThan(1 << 24);
    k.apply([{ type: 'deletePolicy', ref: policy.ref }]);
    expect(k.ipcache.get('172.18.0.2/32')).toBe(6);
  });
});
