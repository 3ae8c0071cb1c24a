import { expect } from 'vitest';
import { parseIp } from '../../src/model/cidr.js';
import { ClusterState, upsertExternal } from '../../src/model/cluster.js';
import { endpointAddress, FlowEndpoint, resolveEndpoint, UnknownEndpointError } from '../../src/model/flow.js';
import { FlowProtocol, PROTOCOL_NUMBER } from '../../src/model/ports.js';
import { Engine } from '../../src/engine/engine.js';
import { decideDirection } from '../../src/naive/evaluator.js';

/**
 * The peer a flow to `addr` meets and the state to decide it in: the pod or node holding it, or,
 * for an address its owner left while pods still claim it (`unownedIps`), the outside address it
 * is then (an external at it; the engine gives it world or a revived CIDR/FQDN identity). Undefined
 * when nothing resolves it.
 */
export function peerAt(state: ClusterState, addr: string): { state: ClusterState; peer: FlowEndpoint } | undefined {
  try {
    return { state, peer: resolveEndpoint(state, addr) };
  } catch (e) {
    if (!(e instanceof UnknownEndpointError) || !state.unownedIps?.has(addr)) return undefined;
    const name = `left:${addr}`;
    const probe = upsertExternal(state, { name, ip: parseIp(addr) });
    return { state: probe, peer: resolveEndpoint(probe, name) };
  }
}

/**
 * Every local endpoint, every peer (pods and externals), both directions, every probe: the
 * engine's map lookup against the oracle (for peers `stricterOk` names, only: never more open). Returns how many flows it checked and how many of them
 * an egress deny entry decided.
 */
export function checkAllFlows(engine: Engine, state: ClusterState, probes: readonly { protocol: FlowProtocol; port: number }[], step: string, stricterOk: (peer: ReturnType<typeof resolveEndpoint>) => boolean = () => false): { flows: number; egressDenies: number } {
  let flows = 0;
  let egressDenies = 0;
  const peers = [...state.pods.keys(), ...state.externals.keys()];
  for (const ep of engine.endpoints()) {
    const subject = resolveEndpoint(state, ep);
    if (subject.kind !== 'pod') throw new Error('endpoint is not a pod');
    for (const peerName of peers) {
      const peer = resolveEndpoint(state, peerName);
      const peerId = peer.kind === 'pod' ? engine.identityOfPod(peer.name)! : engine.identityOfIp(endpointAddress(peer));
      for (const direction of ['ingress', 'egress'] as const) {
        for (const { protocol, port } of probes) {
          const naive = decideDirection(state, subject, direction, peer, protocol, port, undefined);
          const hit = engine.lookup(ep, peerId, direction, PROTOCOL_NUMBER[protocol], port);
          flows++;
          if (hit?.entry.deny && direction === 'egress') egressDenies++;
          const allowed = hit !== undefined && !hit.entry.deny;
          // Where the engine may be stricter than the oracle (documented limits): never more open.
          if (!allowed && stricterOk(peer)) continue;
          expect({ step, ep, peerName, direction, protocol, port, allowed }).toEqual({ step, ep, peerName, direction, protocol, port, allowed: naive.allowed });
        }
      }
    }
  }
  return { flows, egressDenies };
}
