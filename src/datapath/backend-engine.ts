import { applyChangeSet, MapBackend } from '../backend/backend.js';
import { BpfBackend } from '../backend/bpf.js';
import { backendLookup } from '../backend/lookup.js';
import { KernelIpcache } from '../backend/ipcache.js';
import { kernelWorldIdentity, localEndpointAddresses } from '../backend/ipcache-content.js';
import type { ChangeSet } from '../engine/events.js';
import { Engine, EngineOptions } from '../engine/engine.js';
import type { IpAddress } from '../model/cidr.js';
import type { ClusterState } from '../model/cluster.js';
import { reconcile } from '../node/restart.js';
import { ALL_LOCAL } from '../harness/cluster-sync.js';
import { EngineDecider } from '../harness/engine-decider.js';

export interface BackendEngine {
  readonly engine: Engine;
  readonly backend: MapBackend;
  /** Carries `syncThrough` (`EngineDecider.decide`): a scenario run brings it through each step's DNS answers in order. */
  readonly decide: EngineDecider['decide'];
  /** Brings the engine (and the backend) to a cluster state without deciding a flow. */
  readonly sync: (state: ClusterState) => void;
}

/**
 * An engine whose change sets are written to the backend, and whose verdicts are read back from
 * the backend's maps with the datapath's lookup (for bpf: real kernel LPM lookups). What
 * `distill reach`, `verify` and `maps dump` run a scenario through.
 */
export function backendEngine(backend: MapBackend, options: Pick<EngineOptions, 'dns' | 'allowLocalhost' | 'stack'> = {}): BackendEngine {
  const engine = new Engine({ mapCapacity: backend.capacity, ...options });
  reconcile(engine, backend); // a fresh engine: stale maps from an earlier run go
  // bpf: peers resolve through the kernel's ipcache (LPM), then the kernel's policy map.
  const ipcache = backend instanceof BpfBackend ? KernelIpcache.fresh(backend.pinDir) : undefined;
  const ipLookup = ipcache && ((ip: IpAddress) => ipcache.lookup(ip) ?? kernelWorldIdentity(engine.stack, ip.family));
  const write = (cs: ChangeSet): void => {
    const created = new Set(cs.endpointsAdded);
    applyChangeSet(backend, cs, ipcache && (() => ipcache.apply(cs.ipcache, localEndpointAddresses(engine, created))));
  };
  const decider = new EngineDecider(engine, ALL_LOCAL, write, (ep, peer, dir, proto, port) => backendLookup(backend, ep, peer, dir, proto, port)?.entry, ipLookup);
  return { engine, backend, decide: decider.decide, sync: (state) => decider.sync(state) };
}
