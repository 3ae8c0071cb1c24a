import { describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.js';
import type { EngineEvent } from '../src/engine/events.js';
import { ClusterMirror } from '../src/k8s/mirror.js';
import { ciliumNodeOf } from '../src/k8s/objects.js';
import { parseIp } from '../src/model/cidr.js';
import { RESERVED_IDENTITIES } from '../src/model/identity.js';

/**
 * Attack round 6b, part 2 (docs/attack-findings-6b.md, finding 54): a CiliumNode's health endpoint
 * address (spec.health) and Ingress address (spec.ingress) are reserved health (4) and ingress (8)
 * in Cilium's ipcache (pkg/node/manager/policy.go updatePolicy.Upsert), not world.
 */
type Obj = Record<string, unknown>;

const ciliumNode = (rv: number, spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNode', metadata: { name: 'node-b', resourceVersion: String(rv) }, spec });
const NODE_B: Obj = { addresses: [{ type: 'InternalIP', ip: '192.0.2.11' }], health: { ipv4: '10.244.1.2', ipv6: 'fd00:244:1::2' }, ingress: { ipv4: '10.244.1.3' } };
const base: readonly Obj[] = [
  { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } },
  {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'web', namespace: 'shop', resourceVersion: '2', labels: { app: 'web' } },
    spec: { nodeName: 'node-a', containers: [{ name: 'c', image: 'i' }] },
    status: { phase: 'Running', podIP: '10.244.0.5', podIPs: [{ ip: '10.244.0.5' }] },
  },
];
const cnp = (from: Obj): Obj => ({
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumNetworkPolicy',
  metadata: { name: 'web', namespace: 'shop', resourceVersion: '5' },
  spec: { endpointSelector: { matchLabels: { app: 'web' } }, ingress: [from] },
});

/** A mirror feeding an engine, as the agent runs them. */
function setup(objects: readonly Obj[]): { mirror: ClusterMirror; engine: Engine; sync: () => void } {
  const mirror = new ClusterMirror({ nodeName: 'node-a' });
  const engine = new Engine();
  const sync = (): void => {
    const batch = mirror.flush();
    engine.apply(batch.events as EngineEvent[]);
    batch.commit();
  };
  for (const object of objects) mirror.observe({ type: 'ADDED', object }, 'stream');
  sync();
  return { mirror, engine, sync };
}

function admits(engine: Engine, ip: string): boolean {
  const hit = engine.lookup('shop/web', engine.identityOfIp(parseIp(ip)), 'ingress', 6, 80);
  return hit !== undefined && !hit.entry.deny;
}

describe('finding 54: node health and Ingress addresses', () => {
  it('reads spec.health and spec.ingress of a CiliumNode, skipping what does not parse', () => {
    const n = ciliumNodeOf(ciliumNode(1, { ...NODE_B, ingress: { ipv4: '10.244.1.3', ipv6: 'nonsense' } }), 'node-a', 'cn.yaml');
    expect([n.ips, n.health, n.ingress].map((l) => l?.map((a) => a.text))).toEqual([['192.0.2.11'], ['10.244.1.2', 'fd00:244:1::2'], ['10.244.1.3']]);
    expect(ciliumNodeOf(ciliumNode(1, { addresses: NODE_B.addresses }), 'node-a', 'cn.yaml')).not.toHaveProperty('health');
  });

  it('gives them reserved health / ingress: world rules do not admit them, the health / ingress entities do', () => {
    const world = setup([...base, cnp({ fromEntities: ['world'] }), ciliumNode(11, NODE_B)]).engine;
    for (const ip of ['10.244.1.2', 'fd00:244:1::2', '10.244.1.3']) expect(admits(world, ip), `${ip} is not world`).toBe(false);
    expect(world.identityOfIp(parseIp('10.244.1.2'))).toBe(RESERVED_IDENTITIES.health);
    expect(world.identityOfIp(parseIp('10.244.1.3'))).toBe(RESERVED_IDENTITIES.ingress);
    const health = setup([...base, cnp({ fromEntities: ['health'] }), ciliumNode(11, NODE_B)]).engine;
    expect([admits(health, '10.244.1.2'), admits(health, 'fd00:244:1::2'), admits(health, '10.244.1.3'), admits(health, '192.0.2.11')]).toEqual([true, true, false, false]);
    const ingress = setup([...base, cnp({ fromEntities: ['ingress'] }), ciliumNode(11, NODE_B)]).engine;
    expect([admits(ingress, '10.244.1.3'), admits(ingress, '10.244.1.2')]).toEqual([true, false]);
  });

  it('an update that drops the health address makes it world again; deleting the node drops the rest', () => {
    const { mirror, engine, sync } = setup([...base, cnp({ fromEntities: ['world'] }), ciliumNode(11, NODE_B)]);
    mirror.observe({ type: 'MODIFIED', object: ciliumNode(12, { ...NODE_B, health: { ipv4: '10.244.1.9' } }) }, 'stream');
    sync();
    expect([admits(engine, '10.244.1.2'), admits(engine, '10.244.1.9'), admits(engine, '10.244.1.3')]).toEqual([true, false, false]);
    mirror.observe({ type: 'DELETED', object: ciliumNode(13, NODE_B) }, 'stream');
    sync();
    expect([admits(engine, '10.244.1.9'), admits(engine, '10.244.1.3')]).toEqual([true, true]);
  });
});
