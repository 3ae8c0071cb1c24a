import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent, IpcacheDelta } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import type { Pod } from '../../src/model/cluster.js';
import { parseManifestFile } from '../../src/policy/manifest.js';

const ns: EngineEvent = { type: 'upsertNamespace', name: 'prod', labels: {} };
const mkPod = (name: string, app: string, ip: string): Pod => ({ namespace: 'prod', name, labels: { app }, ip: parseIp(ip), serviceAccount: 'default', ports: [] });
const add = (p: Pod, local = false): EngineEvent => ({ type: 'upsertPod', pod: p, local });
const del = (p: Pod): EngineEvent => ({ type: 'deletePod', namespace: p.namespace, name: p.name });
const ipOf = (i: number): string => `10.244.${i >> 8}.${(i & 255) + 1}`;
const idOf = (e: Engine, p: Pod): number => e.identityOfPod(`${p.namespace}/${p.name}`) as number;

/** Replays ipcache deltas onto a table, checking each against what it says it replaces. */
function replay(table: Map<string, number>, deltas: readonly IpcacheDelta[]): void {
  for (const d of deltas) {
    expect(table.get(d.prefix)).toBe(d.op === 'delete' ? d.identity : d.previous);
    if (d.op === 'delete') table.delete(d.prefix);
    else table.set(d.prefix, d.identity);
  }
}

describe('ipcache deltas', () => {
  // 3 touches stay in the transaction's scanned journal; 40 go past its limit into the indexed one.
  for (const n of [3, 40]) {
    it(`a batch touching each of ${n} addresses twice reports each net change once, sorted by prefix`, () => {
      const e = new Engine();
      const table = new Map<string, number>();
      const pods = Array.from({ length: n }, (_, i) => mkPod(`p${i}`, 'a', ipOf(i)));
      const first = e.apply([ns, ...pods.map((p) => add(p))]);
      expect(first.ipcache).toHaveLength(n);
      replay(table, first.ipcache);
      // Same labels under another name: the address keeps its identity, nothing to write.
      const same = pods.map((p) => mkPod(`${p.name}-same`, 'a', p.ip.text));
      const replaced = e.apply(pods.flatMap((p, i) => [del(p), add(same[i] as Pod)]));
      expect(replaced.ipcache).toEqual([]);
      // Other labels: one upsert per address, naming the identity it replaces.
      const other = same.map((p) => mkPod(`${p.name}-other`, 'b', p.ip.text));
      const relabelled = e.apply(same.flatMap((p, i) => [del(p), add(other[i] as Pod)]));
      expect(relabelled.ipcache).toHaveLength(n);
      expect(relabelled.ipcache.map((d) => d.prefix)).toEqual([...relabelled.ipcache.map((d) => d.prefix)].sort());
      replay(table, relabelled.ipcache);
      expect(relabelled.ipcache.every((d) => d.op === 'upsert' && d.identity === idOf(e, other[0] as Pod))).toBe(true);
      const gone = e.apply(other.map(del));
      replay(table, gone.ipcache);
      expect(table.size).toBe(0);
      expect(new Map(e.ipcache().map((x) => [x.prefix, x.identity]))).toEqual(table);
    });
  }

  it('a /32 CIDR identity and a pod on that address are one ipcache entry', () => {
    const [toHost] = parseManifestFile(
      `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: to-host, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toCIDR: [10.244.0.9/32]
`,
      'to-host.yaml',
    );
    const e = new Engine();
    const table = new Map<string, number>();
    const client = mkPod('client', 'client', '10.244.0.2');
    const server = mkPod('server', 'server', '10.244.0.9');
    replay(table, e.apply([ns, add(client, true), { type: 'upsertPolicy', policy: toHost! }]).ipcache);
    const cidrId = table.get('10.244.0.9/32') as number;
    expect(cidrId).toBeDefined();
    const withPod = e.apply([add(server)]);
    const serverId = idOf(e, server);
    expect(withPod.ipcache).toEqual([{ op: 'upsert', prefix: '10.244.0.9/32', identity: serverId, previous: cidrId }]);
    replay(table, withPod.ipcache);
    const podGone = e.apply([del(server)]);
    expect(podGone.ipcache).toEqual([{ op: 'upsert', prefix: '10.244.0.9/32', identity: cidrId, previous: serverId }]);
    replay(table, podGone.ipcache);
    // Pod and policy gone in one batch: the entry goes once.
    replay(table, e.apply([add(server)]).ipcache);
    const both = e.apply([del(server), { type: 'deletePolicy', ref: toHost!.ref }]);
    expect(both.ipcache.map((d) => [d.op, d.prefix])).toEqual([['delete', '10.244.0.9/32']]);
    replay(table, both.ipcache);
    expect(new Map(e.ipcache().map((x) => [x.prefix, x.identity]))).toEqual(table);
  });

  // A cold start (a batch on an empty engine) journals each touch without looking up what the
  // address had (nothing): the repeats must still come out once, as the same batch on a non-empty
  // engine (the journal that deduplicates as it goes) reports them.
  it('a cold start touching addresses repeatedly reports each once, as a later batch does', () => {
    const [toHost] = parseManifestFile(
      `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: to-host, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
  - toCIDR: [10.244.0.3/32, 10.244.0.0/24]
`,
      'to-host.yaml',
    );
    const pods = Array.from({ length: 40 }, (_, i) => mkPod(`p${i}`, i % 2 === 0 ? 'a' : 'b', ipOf(i)));
    const batch: EngineEvent[] = [
      ns,
      ...pods.map((p, i) => add(p, i === 0)),
      { type: 'upsertPolicy', policy: toHost! },
      // The same pods again, other pods on their addresses (the last writer owns one), a pod gone and back.
      ...pods.map((p, i) => add(p, i === 0)),
      ...pods.slice(0, 20).map((p) => add(mkPod(`${p.name}-twin`, 'c', p.ip.text))),
      del(pods[30] as Pod),
      add(pods[30] as Pod),
      del(pods[31] as Pod),
      { type: 'upsertNode', name: 'n1', ips: [parseIp(ipOf(5)), parseIp('192.168.0.1')] },
    ];
    const cold = new Engine().apply(batch);
    const warmEngine = new Engine();
    warmEngine.apply([{ type: 'upsertNamespace', name: 'other', labels: {} }]);
    const warm = warmEngine.apply(batch);
    expect(cold.ipcache).toEqual(warm.ipcache);
    const prefixes = cold.ipcache.map((d) => d.prefix);
    expect(new Set(prefixes).size).toBe(prefixes.length);
    expect(prefixes).toContain('10.244.0.0/24');
    expect(prefixes).not.toContain(`${ipOf(31)}/32`);
    const table = new Map<string, number>();
    replay(table, cold.ipcache);
    expect(new Map(warmEngine.ipcache().map((x) => [x.prefix, x.identity]))).toEqual(table);
  });
});
