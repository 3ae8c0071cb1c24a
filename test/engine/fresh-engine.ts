import { Engine, EngineOptions } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { initialEvents } from '../../src/harness/cluster-sync.js';
import { type ClusterState, podIps } from '../../src/model/cluster.js';

/**
 * The events that leave each of `state.unownedIps` to no pod after `initialEvents(state)`: a
 * transient remote pod claims the address (the last write: it owns the entry) and is deleted. In
 * Cilium the deletion is `DeleteOnMetadataMatch` of the owner's entry, which no other claimant gets
 * back until it is written again (pkg/k8s/watchers/cilium_endpoint.go `endpointDeleted`), and
 * `deleteLocked` revives the shadowed `/32` CIDR/FQDN entry (pkg/ipcache/ipcache.go: "Removal of
 * endpoint IP revives shadowed CIDR to identity mapping"). Without these a fresh engine hands the
 * address to the claimant written last (finding 524's divergence; 1622 was that, not an engine bug).
 */
export function ownerDepartures(state: ClusterState): EngineEvent[] {
  const out: EngineEvent[] = [];
  let n = 0;
  for (const ip of state.unownedIps ?? []) {
    const claimant = [...state.pods.values()].find((p) => podIps(p).some((a) => a.text === ip));
    const address = claimant && podIps(claimant).find((a) => a.text === ip);
    if (claimant === undefined || address === undefined) throw new Error(`unowned ${ip} has no claimant`);
    let name = `departed-${n++}`;
    while (state.pods.has(`${claimant.namespace}/${name}`)) name = `departed-${n++}`;
    out.push({ type: 'upsertPod', pod: { namespace: claimant.namespace, name, labels: {}, ip: address, serviceAccount: 'default', ports: [] }, local: false });
    out.push({ type: 'deletePod', namespace: claimant.namespace, name });
  }
  return out;
}

/**
 * A restart from the model: the engine's DNS cache file, then the model's objects in one batch
 * (re-sent answers would be judged again under today's rules: cluster-sync.ts dnsEvents), with the
 * addresses whose owner left them left to no pod (`ownerDepartures`).
 */
export function freshEngine(engine: Engine, state: ClusterState, local: ReadonlyMap<string, boolean>, options: EngineOptions = {}): Engine {
  const fresh = new Engine(options);
  fresh.restoreDnsCache(engine.dnsCacheFile(), 'dns.jsonl');
  const objects = initialEvents(state, (p) => local.get(`${p.namespace}/${p.name}`) ?? false).filter((e) => e.type !== 'dnsResponse' && e.type !== 'advanceTime');
  fresh.apply([...objects, ...ownerDepartures(state)]);
  return fresh;
}
