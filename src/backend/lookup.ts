import { pickWinner } from '../model/policy-map.js';
import type { Direction } from '../model/rules.js';
import type { MapBackend } from './backend.js';
import type { DecodedValue } from './encoding.js';
import { TRANSITION_IDENTITY } from './ipcache-content.js';

/**
 * The datapath decision from a backend's maps, as the kernel program takes it: an LPM lookup with
 * the peer's identity and one with identity 0, then the datapath's `pickWinner` (the value
 * carries its key's protocol+port prefix length for exactly this). A peer at the transition
 * identity (an address the ipcache is moving) finds nothing: dropped, whatever the map holds.
 */
export function backendLookup(backend: MapBackend, endpoint: string, peer: number, direction: Direction, protocol: number, port: number): DecodedValue | undefined {
  if (peer === TRANSITION_IDENTITY) return undefined;
  const specific = backend.lookup(endpoint, peer, direction, protocol, port);
  const wildcard = peer === 0 ? undefined : backend.lookup(endpoint, 0, direction, protocol, port);
  return pickWinner(specific, wildcard, (v) => v.entry.precedence, (v) => v.l4PrefixBits);
}
