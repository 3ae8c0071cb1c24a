import type { IdentityId } from '../model/identity.js';
import { ContainerPort, FlowProtocol, PORT_PROTOCOLS, protocolCovers } from '../model/ports.js';
import type { IdentityRecord } from './identities.js';
import { keyWithoutPortSplit, portSplitNames, splitByPortName } from './network-splits.js';
import type { NamedPortResolver } from './rule-units.js';

/**
 * Told around a change of named ports, so the egress rules on those names can take their
 * contributions out under the old ports and put them back under the new ones.
 */
export interface NamedPortListener {
  /**
   * The names the identity has (`own`'s keys) or its joining or leaving pod brings (`ports`' names;
   * a name may come twice); `clusterWide`: names whose cluster-wide set of ports changes (every peer
   * of the rules on them is affected).
   */
  namedPortsChanging(identity: IdentityId, own: ReadonlyMap<string, unknown>, ports: readonly ContainerPort[], clusterWide: ReadonlySet<string>): void;
  namedPortsChanged(): void;
  /** False while no rule names a port on egress: nothing to take out or put back, so nothing to tell. */
  readonly resolvesNamedEgress: boolean;
}

/**
 * Named ports per identity and cluster-wide (Cilium's node-wide named-port map), counted as pods
 * join and leave identities, and what an egress named port resolves to for a peer identity. The
 * identity table owns one and tells it every pod joining or leaving an identity.
 *
 * Contract: consumes pod joins/leaves from the identity table; emits named-port changes to its
 * listener (the policy resolver), before and after the counts move.
 */
export class NamedPorts {
  /**
   * Named ports of every pod owning one of its addresses (name → "protocol/port" → pods): Cilium's node-wide
   * named-port map, which its ipcache counts per address from the one pod written there last.
   */
  private readonly cluster = new Map<string, Map<string, number>>();
  /** Pods per identity, counted with its named ports. */
  private readonly podsPerIdentity = new Map<IdentityId, number>();
  /**
   * Identities with pods and a split by a port name, by the key of their labels without that split
   * (`keyWithoutPortSplit`), then by the name: the pods an egress named port resolves over.
   */
  private readonly portSplitClasses = new Map<string, Map<string, Set<IdentityRecord>>>();
  /** Set once by the engine when it wires its stages. */
  listener: NamedPortListener | null = null;

  constructor(
    /** The identity table's lookups: by number, and by the key of a label set. */
    private readonly byId: (id: IdentityId) => IdentityRecord | undefined,
    private readonly byKey: (key: string) => IdentityRecord | undefined,
  ) {}

  /**
   * A pod joining or leaving an identity changes what egress named ports resolve to (see
   * resolveNamedEgress): for that identity, every name it has (the "every pod" condition), and,
   * when the cluster-wide set of ports of a name changes, every target of the rules on that name.
   * The listener takes their contributions out before the change and puts them back after it.
   * `nodeWide`: the pod owns one of its addresses, so its ports are in the node-wide map too
   * (`changeNodeWide`); a pod that lost every address to another pod joins its identity only.
   */
  changeNamedPorts(rec: IdentityRecord, allPorts: readonly ContainerPort[], sign: 1 | -1, nodeWide = true): void {
    const ports = distinctNamedPorts(allPorts);
    const classes = this.portSplitClassesChanging(rec, sign);
    if ((rec.namedPorts?.size ?? 0) === 0 && !ports.some((p) => p.name !== undefined) && classes.length === 0) {
      // No name involved: no rule's resolution changes, only the identity's pod count.
      this.countPods(rec, sign);
      return;
    }
    if (!this.listener?.resolvesNamedEgress) {
      addNamedPorts((rec.namedPorts ??= new Map()), ports, sign);
      if (nodeWide) addNamedPorts(this.cluster, ports, sign);
      this.countPods(rec, sign);
      return;
    }
    // The other identities of a class resolve the name over this one's pods too. Usually none
    // changes cluster-wide (every pod add, remove and move comes here): no set is built for none.
    let clusterWide: Set<string> | null = classes.length === 0 ? null : new Set<string>(classes);
    if (nodeWide) clusterWide = this.nodeWideChanging(ports, sign, clusterWide);
    const named = (rec.namedPorts ??= new Map());
    this.listener?.namedPortsChanging(rec.id, named, ports, clusterWide ?? NO_NAMES);
    addNamedPorts(named, ports, sign);
    if (nodeWide) addNamedPorts(this.cluster, ports, sign);
    this.countPods(rec, sign);
    this.listener?.namedPortsChanged();
  }

  /**
   * A pod of identity `id` gains its first address or loses its last one to another pod (Cilium's ipcache keeps one
   * pod's metadata per address, and its named-port map counts the ports of that metadata: pkg/ipcache/ipcache.go
   * `upsertLocked`, `deleteLocked`): its ports join or leave the node-wide map only, its identity's count stays.
   */
  changeNodeWide(id: IdentityId, allPorts: readonly ContainerPort[], sign: 1 | -1): void {
    const ports = distinctNamedPorts(allPorts);
    if (!ports.some((p) => p.name !== undefined)) return;
    const clusterWide = this.listener?.resolvesNamedEgress ? this.nodeWideChanging(ports, sign, null) : null;
    if (clusterWide !== null) this.listener?.namedPortsChanging(id, NO_OWN, NO_PORTS, clusterWide);
    addNamedPorts(this.cluster, ports, sign);
    if (clusterWide !== null) this.listener?.namedPortsChanged();
  }

  /** `into` with the names whose node-wide set of ports `ports` joining (or leaving) changes. */
  private nodeWideChanging(ports: readonly ContainerPort[], sign: 1 | -1, into: Set<string> | null): Set<string> | null {
    for (const p of ports) {
      if (p.name === undefined) continue;
      const count = this.cluster.get(p.name)?.get(portKey(p)) ?? 0;
      if ((sign > 0 && count === 0) || (sign < 0 && count === 1)) (into ??= new Set<string>()).add(p.name);
    }
    return into;
  }

  private countPods(rec: IdentityRecord, sign: 1 | -1): void {
    const before = this.podsPerIdentity.get(rec.id) ?? 0;
    const pods = before + sign;
    if (pods > 0 && rec.cidr === undefined) this.podsPerIdentity.set(rec.id, pods);
    else this.podsPerIdentity.delete(rec.id);
    if (rec.cidr !== undefined) return;
    if (before === 0 && pods > 0) this.joinPortSplitClasses(rec);
    else if (before > 0 && pods <= 0) this.leavePortSplitClasses(rec);
  }

  private joinPortSplitClasses(rec: IdentityRecord): void {
    for (const name of portSplitNames(rec.labels)) {
      const key = keyWithoutPortSplit(rec.labels, name);
      let byName = this.portSplitClasses.get(key);
      if (!byName) this.portSplitClasses.set(key, (byName = new Map()));
      let members = byName.get(name);
      if (!members) byName.set(name, (members = new Set()));
      members.add(rec);
    }
  }

  private leavePortSplitClasses(rec: IdentityRecord): void {
    for (const name of portSplitNames(rec.labels)) {
      const key = keyWithoutPortSplit(rec.labels, name);
      const byName = this.portSplitClasses.get(key);
      const members = byName?.get(name);
      if (!byName || !members) continue;
      members.delete(rec);
      if (members.size === 0) byName.delete(name);
      if (byName.size === 0) this.portSplitClasses.delete(key);
    }
  }

  /**
   * The port names whose resolution on other identities changes when `rec` gains or loses a pod:
   * the names it is split by when it gains its first pod or loses its last (its pods agree on the
   * name, so only joining or leaving the class counts), and, on every change, those of the classes
   * it is the unsplit member of (its pods need not agree: some may lack the name, some may still
   * carry it until their re-identification). Only identities with pods resolve over a class
   * (resolveNamedEgress), so none while no identity with pods is split by a name.
   */
  private portSplitClassesChanging(rec: IdentityRecord, sign: 1 | -1): string[] {
    if (this.portSplitClasses.size === 0) return [];
    const pods = this.podsPerIdentity.get(rec.id) ?? 0;
    const joinsOrLeaves = (sign > 0 && pods === 0) || (sign < 0 && pods === 1);
    return [...(joinsOrLeaves ? portSplitNames(rec.labels) : []), ...(this.portSplitClasses.get(rec.key)?.keys() ?? [])];
  }

  /** The pods of the identities `rec` shares a class for `name` with (itself included): their count, and per "protocol/port" of the name. */
  private portSplitClassPods(rec: IdentityRecord, name: string): { pods: number; ports: Map<string, number> } {
    const key = keyWithoutPortSplit(rec.labels, name);
    const members = [...(this.portSplitClasses.get(key)?.get(name) ?? [])];
    const unsplit = this.byKey(key);
    if (unsplit) members.push(unsplit);
    let pods = 0;
    const ports = new Map<string, number>();
    for (const m of members) {
      pods += this.podsPerIdentity.get(m.id) ?? 0;
      for (const [pp, n] of m.namedPorts?.get(name) ?? []) ports.set(pp, (ports.get(pp) ?? 0) + n);
    }
    return { pods, ports };
  }

  /**
   * ClusterNetworkPolicy egress named ports: the (protocol, port) pairs every pod of the identity
   * has for the name; exact, as network-splits.ts splits identities whose pods disagree.
   */
  resolveNamedShared(peer: IdentityId): NamedPortResolver {
    const rec = this.byId(peer);
    const pods = this.podsPerIdentity.get(peer) ?? 0;
    return (name, protocol) => {
      const out: { protocol: FlowProtocol; port: number }[] = [];
      for (const [pp, count] of rec?.namedPorts?.get(name) ?? []) {
        const [proto, port] = pp.split('/') as [FlowProtocol, string];
        if (count === pods && protocolCovers(protocol, proto)) out.push({ protocol: proto, port: Number(port) });
      }
      return out;
    };
  }

  /**
   * Deny rules on an egress named port: every (protocol, port) the name has in the node-wide map
   * (the pods owning an address), for any peer. Cilium resolves the name once in its node-wide map and denies that port to
   * every peer the rule selects (pkg/policy/l4.go toMapState, Endpoint.GetNamedPort); where Cilium
   * finds the name ambiguous and writes no deny, this denies every port the name has.
   */
  readonly resolveNamedAnyPod: NamedPortResolver = (name, protocol) => {
    const out: { protocol: FlowProtocol; port: number }[] = [];
    for (const pp of this.cluster.get(name)?.keys() ?? []) {
      const [proto, port] = pp.split('/') as [FlowProtocol, string];
      if (protocolCovers(protocol, proto)) out.push({ protocol: proto, port: Number(port) });
    }
    return out;
  };

  /**
   * Cilium 1.19's node-wide resolution of an egress named port (pkg/policy/types `namedPortMultiMap.GetNamedPort`, as
   * `Endpoint.proxyID` asks it for a filter's proxy ID): the one port the name has for the protocol over every pod of
   * the cluster owning an address; nothing when it has none or two ("ErrDuplicateNamedPorts"). `ANY` resolves each protocol apart.
   */
  readonly resolveNamedNodeWide: NamedPortResolver = (name, protocol) => {
    const out: { protocol: FlowProtocol; port: number }[] = [];
    for (const proto of PORT_PROTOCOLS) {
      if (!protocolCovers(protocol, proto)) continue;
      const port = this.clusterPort(name, proto);
      if (port !== undefined) out.push({ protocol: proto, port });
    }
    return out;
  };

  /** The one port `name` has for `proto` in the node-wide map (`cluster`); none when it has none or two. */
  private clusterPort(name: string, proto: FlowProtocol): number | undefined {
    let found: number | undefined;
    for (const pp of this.cluster.get(name)?.keys() ?? []) {
      if (!pp.startsWith(`${proto}/`)) continue;
      if (found !== undefined) return undefined;
      found = Number(pp.slice(proto.length + 1));
    }
    return found;
  }

  /**
   * Egress named ports, never more permissive than Kubernetes (the destination pod's own port) nor
   * Cilium (one cluster-wide map; a name with two ports resolves to nothing): a name resolves, for
   * a peer identity, to (protocol, port) when every pod of the identity has that named port and
   * it is the name's one port for that protocol in the node-wide map (`clusterPort`).
   */
  resolveNamedEgress(peer: IdentityId): NamedPortResolver {
    const rec = this.byId(peer);
    return (name, protocol) => {
      const out: { protocol: FlowProtocol; port: number }[] = [];
      const own = this.podsPerIdentity.get(peer) ?? 0;
      // Split by the name itself: over the pods of the identities that differ only by that split, as
      // the oracle. An identity without pods resolves nothing (no flow reaches it), so the changes of
      // its class never touch what it contributed (portSplitClassesChanging).
      const split = rec !== undefined && splitByPortName(rec.labels, name);
      if (split && own === 0) return out;
      const { pods, ports } = split ? this.portSplitClassPods(rec, name) : { pods: own, ports: rec?.namedPorts?.get(name) };
      for (const [pp, count] of ports ?? []) {
        const [proto, port] = pp.split('/') as [FlowProtocol, string];
        if (count !== pods || !protocolCovers(protocol, proto)) continue;
        // That port node-wide: the identity's pods may all have lost their addresses (3740).
        if (this.clusterPort(name, proto) === Number(port)) out.push({ protocol: proto, port: Number(port) });
      }
      return out;
    };
  }
}

/**
 * A pod's named ports, each (name, protocol, port) once: a pod listing one twice (two containers,
 * or a repeated entry) still has it once, or "every pod of the identity has it" would fail.
 */
function distinctNamedPorts(ports: readonly ContainerPort[]): readonly ContainerPort[] {
  if (ports.length < 2 || (ports.length <= 8 && !hasDuplicatePort(ports))) return ports;
  const seen = new Set<string>();
  return ports.filter((p) => {
    const k = `${p.name ?? ''}|${p.protocol}/${p.port}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

const NO_NAMES: ReadonlySet<string> = new Set<string>();
const NO_OWN: ReadonlyMap<string, unknown> = new Map<string, unknown>();
const NO_PORTS: readonly ContainerPort[] = [];

/** Whether two ports agree on name, protocol and port: a pairwise check, no key strings (every pod add, remove and move asks). */
function hasDuplicatePort(ports: readonly ContainerPort[]): boolean {
  for (let i = 1; i < ports.length; i++) {
    const a = ports[i] as ContainerPort;
    for (let j = 0; j < i; j++) {
      const b = ports[j] as ContainerPort;
      if (a.port === b.port && a.protocol === b.protocol && (a.name ?? '') === (b.name ?? '')) return true;
    }
  }
  return false;
}

/** "protocol/port" keys of container ports, built once each: every pod add and remove counts its named ports twice. */
const PORT_KEYS = new Map<number, string>();
const PROTOCOL_SLOTS: Readonly<Record<FlowProtocol, number>> = { TCP: 0, UDP: 1, SCTP: 2, ICMP: 3, ICMPv6: 4 };

/** By port and protocol (validated: an integer port, a known protocol), so one slot is one key. */
function portKey(p: ContainerPort): string {
  const slot = p.port * 8 + PROTOCOL_SLOTS[p.protocol];
  let k = PORT_KEYS.get(slot);
  if (k === undefined) PORT_KEYS.set(slot, (k = `${p.protocol}/${p.port}`));
  return k;
}

/** Counts named ports: name → "protocol/port" → how many pods have it. */
function addNamedPorts(namedPorts: Map<string, Map<string, number>>, ports: readonly ContainerPort[], sign: 1 | -1): void {
  // Indexed: every pod add and remove runs this, and for-of left an iterator result per port in
  // the unoptimised code it often runs as (a namespace relabel moves every pod of it).
  for (let i = 0; i < ports.length; i++) {
    const p = ports[i] as ContainerPort;
    if (p.name === undefined) continue;
    let byPort = namedPorts.get(p.name);
    if (!byPort) namedPorts.set(p.name, (byPort = new Map()));
    const k = portKey(p);
    const n = (byPort.get(k) ?? 0) + sign;
    if (n > 0) byPort.set(k, n);
    else byPort.delete(k);
    if (byPort.size === 0) namedPorts.delete(p.name);
  }
}
