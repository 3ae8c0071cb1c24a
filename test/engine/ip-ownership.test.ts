import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { EngineEvent, MapCapacityError } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import { ClusterState, deleteNamespace, deletePod, EMPTY_CLUSTER, ipOwner, namespaceWithDefaults, Pod, upsertExternal, upsertNamespace, upsertPod } from '../../src/model/cluster.js';
import { resolveEndpoint, UnknownEndpointError } from '../../src/model/flow.js';
import { applyEventToCluster, initialEvents } from '../../src/harness/cluster-sync.js';
import { parseManifestFile } from '../../src/policy/manifest.js';
import { fcReplay, fcRuns } from '../fc-knobs.js';

/**
 * Two pods claiming one IP: the last writer owns it in the ipcache (as Cilium's pod watcher:
 * docs/semantics.md "Pods as endpoints"). A refused or failed transaction must leave exactly that
 * owner, never hand the IP back to the earlier pod.
 */
const ns: EngineEvent = { type: 'upsertNamespace', name: 'prod', labels: {} };
const mkPod = (name: string, labels: Record<string, string>, ip: string): Pod => ({ namespace: 'prod', name, labels, ip: parseIp(ip), serviceAccount: 'default', ports: [] });
const add = (p: Pod, local = false): EngineEvent => ({ type: 'upsertPod', pod: p, local });
const del = (p: Pod): EngineEvent => ({ type: 'deletePod', namespace: p.namespace, name: p.name });
const [allowTrusted] = parseManifestFile(
  `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: trusted}}]
  - fromEndpoints: [{matchExpressions: [{key: filler, operator: Exists}]}]
`,
  'server.yaml',
);
const shared = '10.0.0.2';
const trusted = mkPod('trusted', { app: 'trusted' }, shared);
const evil = mkPod('evil', { app: 'evil' }, shared);
const server = mkPod('server', { app: 'server' }, '10.0.0.1');
/** Remote pods with distinct labels: each is one more entry in the server's map. */
const fillers = Array.from({ length: 30 }, (_, i) => add(mkPod(`f${i}`, { filler: String(i) }, `10.0.1.${i + 1}`)));
const idOf = (e: Engine, p: Pod): number => e.identityOfPod(`${p.namespace}/${p.name}`) as number;
const ipcache = (e: Engine): Map<string, number> => new Map(e.ipcache().map((x) => [x.prefix, x.identity]));

function setUp(faultHook?: (point: string) => void): Engine {
  const e = new Engine({ mapCapacity: 20, ...(faultHook ? { faultHook } : {}) });
  e.apply([ns, { type: 'upsertPolicy', policy: allowTrusted! }, add(server, true), add(trusted)]);
  e.apply([add(evil)]);
  expect(e.identityOfIp(parseIp(shared))).toBe(idOf(e, evil));
  return e;
}

describe('a pod IP claimed by two pods', () => {
  it('a refused transaction deleting the earlier claimant leaves the IP with the later one', () => {
    const e = setUp();
    const before = ipcache(e);
    expect(() => e.apply([del(trusted), ...fillers])).toThrow(MapCapacityError);
    expect(e.identityOfIp(parseIp(shared))).toBe(idOf(e, evil));
    expect(ipcache(e)).toEqual(before);
    // Deleting trusted for real leaves evil's entry as it was.
    expect(e.apply([del(trusted)]).ipcache).toEqual([]);
    expect(e.identityOfIp(parseIp(shared))).toBe(idOf(e, evil));
  });

  it('a refused transaction adding a claimant gives the IP back to its owner', () => {
    const e = setUp();
    const before = ipcache(e);
    const third = mkPod('third', { app: 'third' }, shared);
    expect(() => e.apply([add(third), ...fillers])).toThrow(MapCapacityError);
    expect(e.identityOfIp(parseIp(shared))).toBe(idOf(e, evil));
    expect(ipcache(e)).toEqual(before);
  });

  it('a refused transaction deleting the owner restores it, and only it', () => {
    const e = setUp();
    e.apply([del(evil)]);
    // Deleting the owner leaves the IP unowned (Cilium deletes the entry; trusted does not get it back).
    const unowned = e.identityOfIp(parseIp(shared));
    expect(unowned).not.toBe(idOf(e, trusted));
    const before = ipcache(e);
    expect(() => e.apply([del(trusted), ...fillers])).toThrow(MapCapacityError);
    expect(e.identityOfIp(parseIp(shared))).toBe(unowned);
    expect(ipcache(e)).toEqual(before);
  });

  for (const [name, prepare] of [
    ['the later claimant owns it', (_: Engine): void => undefined],
    ['the owner was deleted', (e: Engine): void => void e.apply([del(evil)])],
  ] as const) {
    it(`an internal error rebuilds the same ownership (${name})`, () => {
      let armed = false;
      const e = setUp((point) => {
        if (armed && point === 'event') throw new TypeError('injected');
      });
      prepare(e);
      const before = ipcache(e);
      armed = true;
      expect(() => e.apply([add(mkPod('other', { app: 'other' }, '10.0.0.9'))])).toThrow(TypeError);
      armed = false;
      expect(ipcache(e)).toEqual(before);
    });
  }

  it('an internal error after a re-upsert of the earlier claimant keeps it the owner', () => {
    let armed = false;
    const e = setUp((point) => {
      if (armed && point === 'event') throw new TypeError('injected');
    });
    // Re-upserting trusted makes it the last writer: it owns the IP now.
    e.apply([add(mkPod('trusted', { app: 'trusted', v: '2' }, shared))]);
    const before = ipcache(e);
    expect(e.identityOfIp(parseIp(shared))).toBe(idOf(e, trusted));
    armed = true;
    expect(() => e.apply([add(mkPod('other', { app: 'other' }, '10.0.0.9'))])).toThrow(TypeError);
    armed = false;
    expect(ipcache(e)).toEqual(before);
    expect(e.identityOfIp(parseIp(shared))).toBe(idOf(e, trusted));
  });

  // Finding 1736 (docs/attack-findings-24f.md): this test asserted the opposite ("no new claim"). Cilium patches the
  // re-identified pod's CiliumEndpoint and every agent upserts its addresses (test/engine/ip-handoff.test.ts cites it).
  it('re-identifying the earlier claimant (its namespace relabelled) is a new write: it takes the IP, in the oracle too', () => {
    const e = new Engine();
    const inA = { ...trusted, namespace: 'a' };
    const inB = { ...evil, namespace: 'b' };
    const events: EngineEvent[][] = [[{ type: 'upsertNamespace', name: 'a', labels: {} }, { type: 'upsertNamespace', name: 'b', labels: {} }, add(inA)], [add(inB)]];
    for (const batch of events) e.apply(batch);
    let s = events.flat().reduce(applyEventToCluster, EMPTY_CLUSTER);
    expect(e.identityOfIp(parseIp(shared))).toBe(idOf(e, inB));
    const relabel: EngineEvent = { type: 'upsertNamespace', name: 'a', labels: { team: 'x' } };
    e.apply([relabel]);
    s = applyEventToCluster(s, relabel);
    expect(e.identityOfIp(parseIp(shared))).toBe(idOf(e, inA));
    expect(ipOwner(s, shared)).toBe('a/trusted');
  });
});

describe('the oracle on a pod IP claimed by two pods', () => {
  const at = (s: ClusterState): string => resolveEndpoint(s, shared).name;
  it('resolves it to the last pod written, as the engine', () => {
    let s = upsertNamespace(EMPTY_CLUSTER, namespaceWithDefaults('prod', {}));
    s = upsertPod(upsertPod(s, trusted), evil);
    expect(at(s)).toBe('prod/evil');
    // An update of the earlier claimant is a new write: it owns the IP now (engine: same).
    s = upsertPod(s, { ...trusted, labels: { app: 'trusted', v: '2' } });
    expect(at(s)).toBe('prod/trusted');
    const e = new Engine();
    e.apply(initialEvents(s));
    expect(e.identityOfIp(parseIp(shared))).toBe(e.identityOfPod('prod/trusted'));
  });
});

describe('the oracle after the owner of a shared IP leaves it (Cilium: DeleteOnMetadataMatch deletes the entry)', () => {
  const at = (s: ClusterState): string => resolveEndpoint(s, shared).name;
  const base = (): ClusterState => upsertPod(upsertPod(upsertNamespace(EMPTY_CLUSTER, namespaceWithDefaults('prod', {})), trusted), evil);

  it('deleting the owner leaves the address to no pod; a write of the other claimant takes it back', () => {
    let s = deletePod(base(), 'prod/evil');
    expect(ipOwner(s, shared)).toBeUndefined();
    expect(() => at(s)).toThrow(UnknownEndpointError);
    expect(resolveEndpoint(upsertExternal(s, { name: 'out', ip: parseIp(shared) }), 'out').kind).toBe('external');
    s = upsertPod(s, { ...trusted, labels: { app: 'trusted', v: '2' } });
    expect(at(s)).toBe('prod/trusted');
    expect(s.unownedIps).toBeUndefined();
  });

  it('an owner dropping the address in an update leaves it to no pod; deleting a non-owner changes nothing', () => {
    const s = upsertPod(base(), { ...evil, ip: parseIp('10.0.0.9') });
    expect(ipOwner(s, shared)).toBeUndefined();
    expect(ipOwner(deletePod(base(), 'prod/trusted'), shared)).toBe('prod/evil');
    // Once no pod claims it, it is forgotten.
    expect(deletePod(s, 'prod/trusted').unownedIps).toBeUndefined();
  });

  it('deleting the owner\'s namespace leaves the address to no pod in the other namespace', () => {
    let s = upsertNamespace(upsertNamespace(EMPTY_CLUSTER, namespaceWithDefaults('a', {})), namespaceWithDefaults('b', {}));
    s = upsertPod(upsertPod(s, { ...trusted, namespace: 'a' }), { ...evil, namespace: 'b' });
    expect(ipOwner(deleteNamespace(s, 'b'), shared)).toBeUndefined();
    expect(ipOwner(deleteNamespace(s, 'a'), shared)).toBe('b/evil');
  });

  /** Pods p0..p3 of two namespaces claiming one of two addresses; random writes and deletes. */
  const podOp = fc.record({ ns: fc.constantFrom('a', 'b'), name: fc.constantFrom('p0', 'p1', 'p2'), ip: fc.constantFrom(shared, '10.0.0.3'), app: fc.constantFrom('x', 'y', 'z'), del: fc.boolean() });
  it('engine ipcache = oracle owner after every event (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.array(podOp, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 25 }), (batches) => {
        const e = new Engine();
        let s = EMPTY_CLUSTER;
        const nsEvents: EngineEvent[] = ['a', 'b'].map((name) => ({ type: 'upsertNamespace', name, labels: {} }));
        e.apply(nsEvents);
        for (const ev of nsEvents) s = applyEventToCluster(s, ev);
        for (const batch of batches) {
          const events: EngineEvent[] = batch.flatMap((o): EngineEvent[] => {
            const key = `${o.ns}/${o.name}`;
            if (o.del) return s.pods.has(key) ? [{ type: 'deletePod', namespace: o.ns, name: o.name }] : [];
            return [add({ ...mkPod(o.name, { app: o.app }, o.ip), namespace: o.ns })];
          });
          // Fold the batch into the model one event at a time (a repeated key in a batch is two writes).
          let next = s;
          const applied: EngineEvent[] = [];
          for (const ev of events) {
            if (ev.type === 'deletePod' && !next.pods.has(`${ev.namespace}/${ev.name}`)) continue;
            next = applyEventToCluster(next, ev);
            applied.push(ev);
          }
          e.apply(applied);
          s = next;
          for (const ip of [shared, '10.0.0.3']) {
            const owner = ipOwner(s, ip);
            const id = e.identityOfIp(parseIp(ip));
            if (owner !== undefined) expect(id).toBe(e.identityOfPod(owner));
            else expect([2, 9]).toContain(id);
          }
        }
      }),
      { numRuns: fcRuns(300), ...fcReplay() },
    );
  });
});
