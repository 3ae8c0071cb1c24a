import { describe, expect, it } from 'vitest';
import { parseTrace } from '../../src/churn/trace.js';
import { traceToWatch } from '../../src/cluster/watch-objects.js';
import { generateTrace } from '../../src/churn/profiles.js';
import { replay } from '../../src/churn/replay.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { Engine } from '../../src/engine/engine.js';
import { ClusterMirror } from '../../src/k8s/mirror.js';
import { parseIp } from '../../src/model/cidr.js';

/**
 * Traces carry CiliumCIDRGroup objects (`upsertCidrGroup` with the manifest, `deleteCidrGroup` by name) and
 * read group peers (26g). On the base the line types did not exist ("type: must be one of ...") and a
 * policy with `cidrGroupRef` was "not supported".
 */
const group = (cidrs: string[]) => ({ apiVersion: 'cilium.io/v2alpha1', kind: 'CiliumCIDRGroup', metadata: { name: 'partners', labels: { team: 'a' } }, spec: { externalCIDRs: cidrs } });
const policy = {
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumNetworkPolicy',
  metadata: { name: 'p', namespace: 'shop' },
  spec: { endpointSelector: { matchLabels: { app: 'web' } }, egress: [{ toCIDRSet: [{ cidrGroupSelector: { matchLabels: { team: 'a' } } }] }] },
};
const lines = [
  { distillTrace: 1 },
  { type: 'upsertNamespace', name: 'shop', labels: {} },
  { type: 'upsertPod', pod: { namespace: 'shop', name: 'web', labels: { app: 'web' }, ip: '10.0.0.2' }, local: true },
  { type: 'upsertCidrGroup', manifest: group(['198.51.100.0/24']) },
  { type: 'upsertPolicy', manifest: policy },
  { type: 'phase', name: 'churn' },
  { type: 'upsertCidrGroup', manifest: group(['192.0.2.0/24']) },
  { type: 'deleteCidrGroup', name: 'partners' },
];
const text = lines.map((l) => JSON.stringify(l)).join('\n') + '\n';

function verdicts(engine: Engine): string[] {
  return ['198.51.100.7', '192.0.2.5'].map((ip) => {
    const hit = engine.lookup('shop/web', engine.identityOfIp(parseIp(ip)), 'egress', 6, 443);
    return hit === undefined ? 'none' : hit.entry.deny ? 'deny' : 'allow';
  });
}

describe('traces with CiliumCIDRGroup objects', () => {
  it('parse and replay: the policy follows the group, then its deletion', () => {
    const trace = parseTrace(text, 't.jsonl');
    const engine = new Engine();
    const seen: string[][] = [];
    for (const item of trace.items) {
      if (item.kind !== 'event') continue;
      engine.apply([item.event]);
      if (item.event.type === 'upsertPolicy' || item.event.type.endsWith('CidrGroup')) seen.push(verdicts(engine));
    }
    expect(seen).toEqual([
      ['allow', 'allow'], // no policy yet
      ['allow', 'none'],
      ['none', 'allow'],
      ['none', 'none'],
    ]);
  });

  it('a deleteCidrGroup names a group by its CRD name', () => {
    const bad = text.replace('"name":"partners"}', '"name":"Bad_Name"}');
    expect(() => parseTrace(bad, 't.jsonl')).toThrow(/is not a CiliumCIDRGroup name/);
  });

  it('as watch events (distill cluster): CiliumCIDRGroup objects a mirror reads', () => {
    const feed = traceToWatch(text, 't.jsonl', 1);
    const mirror = new ClusterMirror({ nodeName: 'node-0' });
    const engine = new Engine();
    for (const item of feed.items) mirror.observe(item, 'feed');
    const b = mirror.flush();
    engine.apply(b.events as EngineEvent[]);
    b.commit();
    expect(feed.items.filter((i) => i.type !== 'LIST' && i.type !== 'LIST_ITEM' && (i.object as { kind?: string }).kind === 'CiliumCIDRGroup').map((i) => i.type)).toEqual(['ADDED', 'ADDED', 'DELETED']);
    expect(verdicts(engine)).toEqual(['none', 'none']);
  });

  it('distill gen --profile cidr-groups: a replay checked against a from-scratch recomputation after every event', () => {
    for (const seed of [1, 2]) {
      const trace = parseTrace(generateTrace({ profile: 'cidr-groups', seed, churnEvents: 120 }), `cidr-groups-${seed}`);
      const groupEvents = trace.items.filter((i) => i.kind === 'event' && i.event.type.endsWith('CidrGroup')).length;
      expect(groupEvents).toBeGreaterThan(50);
      // The model beside the engine holds the groups (src/harness/mutable-cluster.ts): without them the recomputation diverges.
      expect(() => replay(trace, { mode: 'incremental', verifyEvery: 1 })).not.toThrow();
    }
  });
});
