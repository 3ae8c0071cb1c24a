import { expect } from 'vitest';
import { ClusterState } from '../../src/model/cluster.js';
import { endpointAddress, resolveEndpoint } from '../../src/model/flow.js';
import { FlowProtocol, PROTOCOL_NUMBER } from '../../src/model/ports.js';
import { Engine } from '../../src/engine/engine.js';
import { decideDirection } from '../../src/naive/evaluator.js';

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
