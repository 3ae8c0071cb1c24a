import { Cidr, cidrContainsCidr, hostCidr, IpFamily, prefixNetwork } from '../model/cidr.js';
import { CidrGroup, GroupLabels, NO_GROUP_LABELS } from '../model/cidr-group.js';
import type { EngineContext } from './context.js';
import type { IdentityRecord, IdentityTable } from './identities.js';
import type { NodeTable } from './node-table.js';
import type { SelectorCache } from './selector-cache.js';

/**
 * The CiliumCIDRGroup objects: each prefix of a group is an ipcache prefix with a CIDR identity
 * (held while the group lists it, as Cilium's `applyCIDRGroup` upserts every group's prefixes),
 * and the labels a prefix's identity inherits from the groups enclosing it are read here by the
 * peer cache (`groupLabelsOf`). A change re-evaluates the group selectors for the identities inside
 * the group's old and new prefixes only.
 */
export class CidrGroupTable {
  private readonly groups = new Map<string, CidrGroup>();
  /** Per family: prefix length → network → the groups listing that prefix. */
  private readonly index: Record<IpFamily, Map<number, Map<bigint, Set<CidrGroup>>>> = { ipv4: new Map(), ipv6: new Map() };
  /** The CIDR identities held for each group's prefixes. */
  private readonly held = new Map<string, IdentityRecord[]>();

  constructor(
    private readonly ctx: EngineContext,
    private readonly identities: IdentityTable,
    private readonly peerCache: SelectorCache,
    private readonly nodes: NodeTable,
  ) {
    peerCache.groupLabelsOf = (c) => this.labelsOf(c);
  }

  /** A group created or changed (`group`), or deleted (undefined). */
  set(name: string, group: CidrGroup | undefined): void {
    const old = this.groups.get(name);
    if (old === group) return;
    this.ctx.onUndo(() => this.set(name, old));
    this.hold(name, old, group);
    if (old) this.indexGroup(old, false);
    if (group) {
      this.groups.set(name, group);
      this.indexGroup(group, true);
    } else {
      this.groups.delete(name);
    }
    const before = this.held.get(name) ?? [];
    // A group held fail-closed holds no CIDR identity for its prefixes (finding 3273): they read the unallocated number
    // as entries of their own (`IdentityTable.heldGroupEntry`), so its form adds no identity a full map must take.
    const now = group && group.failClosed !== true ? group.cidrs.map((c) => this.identities.acquireCidr(c)) : [];
    if (now.length > 0) this.held.set(name, now);
    else this.held.delete(name);
    this.peerCache.refreshGroupSelectors([...(old?.cidrs ?? []), ...(group?.cidrs ?? [])]);
    for (const rec of before) this.identities.release(rec);
  }

  /**
   * A group held fail-closed (`CidrGroup.failClosed`, finding 2431), or no longer: the ipcache entries inside its old
   * and new held prefixes (CIDR identities, learnt addresses, the API server's outside the cluster) are touched before
   * they move to or from the unallocated number (`IdentityTable.heldPrefix`).
   */
  private hold(name: string, old: CidrGroup | undefined, group: CidrGroup | undefined): void {
    const heldAt = (g: CidrGroup | undefined): readonly Cidr[] => (g?.failClosed === true ? g.cidrs : []);
    const held = [...heldAt(old), ...heldAt(group)];
    if (held.length === 0) return;
    const inside = (c: Cidr): boolean => held.some((h) => cidrContainsCidr(h, c));
    for (const rec of this.identities.cidrIdentities()) if (rec.cidr && !rec.fqdn && inside(rec.cidr)) this.ctx.touchIpcache(rec.cidr);
    // Its own prefixes, entries of their own while held (no CIDR identity, `set`).
    for (const c of held) this.ctx.touchIpcache(c);
    for (const { ip } of this.identities.fqdnHostEntries()) if (inside(hostCidr(ip))) this.ctx.touchIpcacheHost(ip);
    // An API server address outside the cluster is a CIDR identity too (it would lose the held group's labels).
    for (const { ip } of this.nodes.apiServerEntries()) if (inside(hostCidr(ip))) this.ctx.touchIpcacheHost(ip);
    // A held group without prefixes holds no address: not counted (`heldGroupCount`).
    this.identities.setHeldGroup(name, heldAt(group).length > 0 ? heldAt(group) : undefined);
  }

  private indexGroup(g: CidrGroup, add: boolean): void {
    for (const c of g.cidrs) {
      const byLen = this.index[c.family];
      let byNet = byLen.get(c.prefixLength);
      if (!byNet) byLen.set(c.prefixLength, (byNet = new Map()));
      let set = byNet.get(c.network);
      if (!set) byNet.set(c.network, (set = new Set()));
      if (add) set.add(g);
      else set.delete(g);
      if (set.size === 0) byNet.delete(c.network);
      if (byNet.size === 0) byLen.delete(c.prefixLength);
    }
  }

  /**
   * Per key, the values of the longest group prefixes enclosing `c` that carry it (pkg/ipcache `mergeParentLabels`).
   * A group held fail-closed gives its labels too: every prefix it reaches reads the unallocated number in the ipcache
   * (`IdentityTable.heldPrefix`), so no flow reads them, and the agent sends the labels the engine held (finding 2601).
   */
  labelsOf(c: Cidr): GroupLabels {
    const byLen = this.index[c.family];
    if (byLen.size === 0) return NO_GROUP_LABELS;
    const out = new Map<string, Set<string>>();
    for (let len = c.prefixLength; len >= 0; len--) {
      const groups = byLen.get(len)?.get(prefixNetwork(c.family, c.network, len));
      if (groups === undefined) continue;
      const atLen = new Map<string, Set<string>>();
      for (const g of groups) {
        for (const [k, v] of g.labels) {
          if (out.has(k)) continue;
          let vs = atLen.get(k);
          if (!vs) atLen.set(k, (vs = new Set()));
          vs.add(v);
        }
      }
      for (const [k, vs] of atLen) out.set(k, vs);
    }
    return out;
  }
}
