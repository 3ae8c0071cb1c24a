import { Cidr, cidrContainsCidr } from './cidr.js';
import type { Selector } from './selector.js';

/*
 * CiliumCIDRGroup objects and what they give CIDR identities (Cilium 1.19,
 * pkg/policy/k8s/cilium_cidr_group.go `applyCIDRGroup`): every prefix of a group's
 * `spec.externalCIDRs` is an ipcache prefix labelled `cidrgroup:io.cilium.policy.cidrgroupname/<name>`
 * plus the group's own metadata.labels under the source `cidrgroup` (`io.cilium.k8s*` keys dropped,
 * `utils.RemoveCiliumLabels`) and world. A prefix's identity also carries the labels of every
 * enclosing ipcache prefix, the longest one winning for a key (pkg/ipcache/metadata.go
 * `mergeParentLabels`, test `Test_metadata_mergeParentLabels` "longest-match wins").
 */

/** The label source of CIDR group labels (pkg/labels `LabelSourceCIDRGroup`). */
export const SOURCE_CIDR_GROUP = 'cidrgroup';

/** pkg/policy/api/cidr.go `LabelPrefixGroupName`. */
const CIDR_GROUP_NAME_PREFIX = 'io.cilium.policy.cidrgroupname';

/** The key of the label naming a group (`LabelForCIDRGroupRef`); a cidrGroupRef is `Exists` on it. */
export function cidrGroupNameKey(name: string): string {
  return `${CIDR_GROUP_NAME_PREFIX}/${name}`;
}

/** One CiliumCIDRGroup: its name, the labels it gives its prefixes (key → value, name label included), its prefixes. */
export interface CidrGroup {
  readonly name: string;
  readonly labels: ReadonlyMap<string, string>;
  readonly cidrs: readonly Cidr[];
  /**
   * Set by the agent only, for a group whose change the engine refused alone (finding 2431): its prefixes, and every
   * CIDR or learnt address inside them, read the unallocated number in the ipcache, which every local map denies both
   * ways; its labels reach only those addresses, so no flow reads them (the agent sends the labels the engine held,
   * finding 2601). Validation refuses a value other than true.
   */
  readonly failClosed?: true;
}

/**
 * The group labels an identity of prefix `c` carries, by key: the values of the longest enclosing
 * group prefixes that have the key. More than one value: groups holding the same prefix disagree
 * (Cilium merges them in Go map order, `prefixInfo.ToLabels`: either may win).
 */
export type GroupLabels = ReadonlyMap<string, ReadonlySet<string>>;

export const NO_GROUP_LABELS: GroupLabels = new Map();

/**
 * How a group selector reads labels two groups disagree on: `all` (an allow) matches only when
 * every value Cilium may hold matches; `any` (a deny) when one does. Either way a flow Cilium may
 * deny is never allowed (fail closed).
 */
export type GroupMatchMode = 'all' | 'any';

/** Whether a group selector (requirements on `cidrgroup:` keys) matches `labels`. */
export function groupSelectorMatches(sel: Selector, labels: GroupLabels, mode: GroupMatchMode): boolean {
  return sel.requirements.every((r) => {
    const values = labels.get(r.key.key);
    const some = (f: (v: string) => boolean): boolean => values !== undefined && (mode === 'all' ? [...values].every(f) : [...values].some(f));
    switch (r.operator) {
      case 'Exists':
        return values !== undefined;
      case 'DoesNotExist':
        return values === undefined;
      case 'In':
        return some((v) => r.values.includes(v));
      case 'NotIn':
        return values === undefined || some((v) => !r.values.includes(v));
    }
  });
}

/**
 * The group labels of prefix `c` by scanning every group (the oracle's way): per key, the values
 * of the longest group prefixes containing `c` that carry it.
 */
export function groupLabelsByScan(groups: Iterable<CidrGroup>, c: Cidr): GroupLabels {
  const best = new Map<string, { length: number; values: Set<string> }>();
  for (const g of groups) {
    for (const p of g.cidrs) {
      if (!cidrContainsCidr(p, c)) continue;
      for (const [k, v] of g.labels) {
        const b = best.get(k);
        if (b === undefined || p.prefixLength > b.length) best.set(k, { length: p.prefixLength, values: new Set([v]) });
        else if (p.prefixLength === b.length) b.values.add(v);
      }
    }
  }
  return new Map([...best].map(([k, b]) => [k, b.values]));
}
