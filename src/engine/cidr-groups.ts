import { Cidr, IpFamily, prefixNetwork } from '../model/cidr.js';
import { CidrGroup, GroupLabels, NO_GROUP_LABELS } from '../model/cidr-group.js';
import type { EngineContext } from './context.js';
import type { IdentityRecord, IdentityTable } from './identities.js';
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
  ) {
    peerCache.groupLabelsOf = (c) => this.labelsOf(c);
  }

  /** A group created or changed (`group`), or deleted (undefined). */
  set(name: string, group: CidrGroup | undefined): void {
    const old = this.groups.get(name);
    if (old === group) return;
    this.ctx.onUndo(() => this.set(name, old));
    if (old) this.indexGroup(old, false);
    if (group) {
      this.groups.set(name, group);
      this.indexGroup(group, true);
    } else {
      this.groups.delete(name);
    }
    const before = this.held.get(name) ?? [];
    const now = group ? group.cidrs.map((c) => this.identities.acquireCidr(c)) : [];
    if (now.length > 0) this.held.set(name, now);
    else this.held.delete(name);
    this.peerCache.refreshGroupSelectors([...(old?.cidrs ?? []), ...(group?.cidrs ?? [])]);
    for (const rec of before) this.identities.release(rec);
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

  /** Per key, the values of the longest group prefixes enclosing `c` that carry it (pkg/ipcache `mergeParentLabels`). */
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
