import { IdentityId, RESERVED_IDENTITIES } from '../model/identity.js';
import type { ContainerPort } from '../model/ports.js';
import type { Direction } from '../model/rules.js';
import type { EngineContext } from './context.js';
import type { NamedEgress } from './contribution.js';
import type { IdentityRecord } from './identities.js';
import { MapState } from './map-state.js';
import type { AttachedEnforcement, AttachedUnit } from './attached-units.js';
import { NamedPortResolver, resolveNamedIn } from './rule-units.js';
import type { SelectorCache } from './selector-cache.js';
import { TombstoneMap } from './tombstone-map.js';

/** A local identity's resolved policy, shared by every endpoint with that identity. */
export interface LocalIdentity {
  readonly record: IdentityRecord;
  /** The rule units it has adopted (their subject selects it). */
  readonly units: Set<AttachedUnit>;
  /** The enforcement units making each direction default-deny. */
  readonly enforcing: Record<Direction, Set<AttachedEnforcement>>;
  /** Its map states, one per distinct container-port set of its endpoints (ingress named ports). */
  readonly maps: Map<string, SharedMapState>;
  /**
   * The identity of endpoints whose cluster identity is not known yet (external identities):
   * no rule applies to it and its map stays empty, so they are default deny in both directions.
   * So is an external identity distill cannot read (`IdentityRecord.unreadable`, finding 1936).
   */
  readonly pending: boolean;
}

/** A map state shared by the endpoints with the same identity and the same container ports. */
export interface SharedMapState {
  readonly key: string;
  readonly local: LocalIdentity;
  readonly ports: readonly ContainerPort[];
  /** Ingress named ports resolve against the endpoints' own ports. */
  readonly resolveNamed: NamedPortResolver;
  readonly state: MapState;
  readonly endpoints: Set<string>;
  /**
   * The directions (bit 1 ingress, bit 2 egress) in which the map holds the deny of every number of
   * the resolver's `deniedEverywhere`: those where `state.admitsEvery` held at the last commit
   * (policy-resolver.ts `placeDenies`, finding 2132).
   */
  deniesPlaced: number;
}

function portsSignature(ports: readonly ContainerPort[]): string {
  return ports
    .map((p) => `${p.name ?? ''}:${p.port}/${p.protocol}`)
    .sort()
    .join(',');
}

/**
 * Local identities and their shared map states: which endpoint uses which map state.
 *
 * Contract: consumes endpoints attaching and detaching (from the pod table); emits local
 * identities to the subject selector cache (whose listeners, the policy resolver, adopt rules) and
 * records in the transaction which endpoints moved. It never computes map content: a new map
 * state is returned to the caller to be populated by the policy resolver.
 */
export class SharedMaps {
  readonly locals = new TombstoneMap<IdentityId, LocalIdentity>();
  /** Local endpoint → its map state. */
  readonly byEndpoint = new TombstoneMap<string, SharedMapState>();
  /** Read at each call: the engine wires `ctx.namedEgress` with each set of stages. */
  private readonly namedEgress: NamedEgress = (peer) => this.ctx.namedEgress(peer);

  constructor(
    private readonly ctx: EngineContext,
    private readonly subjectCache: SelectorCache,
  ) {}

  /** Attaches an endpoint to the map state of its identity and ports; returns that map state when it is new (empty). */
  attachEndpoint(endpoint: string, identity: IdentityRecord, ports: readonly ContainerPort[]): { map: SharedMapState; created: boolean } {
    if (this.ctx.faultHook) this.ctx.fault('attachEndpoint');
    this.noteMove(endpoint);
    const local = this.locals.get(identity.id) ?? this.addLocalIdentity(identity);
    // A number held by another record (an external number moved to other labels) is not this identity's map state (1925).
    if (local.record !== identity) throw new Error(`internal: endpoint ${endpoint} joins identity ${identity.id} of other labels`);
    const sig = portsSignature(ports);
    let map = local.maps.get(sig);
    const created = map === undefined;
    if (!map) {
      map = { key: `${identity.id}|${sig}`, local, ports, resolveNamed: resolveNamedIn(ports), state: new MapState(this.ctx.stats, this.namedEgress), endpoints: new Set(), deniesPlaced: 0 };
      local.maps.set(sig, map);
    }
    map.endpoints.add(endpoint);
    this.byEndpoint.set(endpoint, map);
    return { map, created };
  }

  detachEndpoint(endpoint: string, map: SharedMapState): void {
    if (this.ctx.faultHook) this.ctx.fault('detachEndpoint');
    this.noteMove(endpoint);
    map.endpoints.delete(endpoint);
    this.byEndpoint.delete(endpoint);
    if (map.endpoints.size > 0) return;
    // Retired: its `entries` still hold the pre-transaction state, which the diff needs.
    map.local.maps.delete(portsSignature(map.ports));
    this.ctx.dirtyMaps.delete(map);
    if (map.local.maps.size === 0) this.removeLocalIdentity(map.local);
  }

  private noteMove(endpoint: string): void {
    if (!this.ctx.movedEndpoints.has(endpoint)) this.ctx.movedEndpoints.set(endpoint, this.byEndpoint.get(endpoint) ?? null);
  }

  private addLocalIdentity(record: IdentityRecord): LocalIdentity {
    const pending = record.id === RESERVED_IDENTITIES.init || record.unreadable === true;
    const local: LocalIdentity = { record, units: new Set(), enforcing: { ingress: new Set(), egress: new Set() }, maps: new Map(), pending };
    this.locals.set(record.id, local);
    this.ctx.stats.policyResolutions++;
    // Subject selectors that select it report it to their units, which attach themselves.
    if (!pending) this.subjectCache.addIdentity(record);
    return local;
  }

  private removeLocalIdentity(local: LocalIdentity): void {
    if (!local.pending) this.subjectCache.removeIdentity(local.record.id);
    this.locals.delete(local.record.id);
  }

  get mapStateCount(): number {
    let n = 0;
    for (const l of this.locals.values()) n += l.maps.size;
    return n;
  }
}
