import { Cidr, IpAddress } from '../model/cidr.js';
import { compileFqdnSelector, FqdnMatcher } from '../model/fqdn.js';
import type { FqdnEvent } from '../model/fqdn-events.js';
import { worldLabels } from '../model/identity.js';
import { l7Allows, type DnsQuery } from '../model/l7.js';
import { LabelSet, labelSetKey, makeLabelSet, SOURCE_CIDR, type Label } from '../model/labels.js';
import { L7Rules, Policy, policyRefKey } from '../model/rules.js';
import { Selector, selectorMatches } from '../model/selector.js';
import type { EngineContext } from './context.js';
import { DnsCache } from './dns-cache.js';
import type { IdentityRecord, IdentityTable } from './identities.js';
import type { PodTable } from './pod-table.js';
import { SelectorCache, SOURCE_FQDN } from './selector-cache.js';

interface DnsRule {
  readonly subject: Selector;
  readonly l7: L7Rules;
}

/**
 * The FQDN stage (docs/fqdn-engine.md): the DNS cache, the DNS rules deciding what the proxy
 * learns, and the identity of every learnt IP. An IP's identity has the labels `fqdn:<selector>`
 * of every live FQDN selector matching one of its live names, the `cidr:` label of the CIDR
 * identity the ipcache's LPM would otherwise give it (so CIDR peers and denies select it exactly
 * as they select that prefix), and world. IPs with equal labels share one node-local identity, so
 * a new IP of a known name only adds an ipcache entry.
 *
 * Contract: consumes DNS events, policy events (DNS rules) and pod deletions; at `settle` (before
 * commit) re-identifies the IPs whose names changed, or every learnt IP after a structural event
 * (a policy, pod or namespace change may change the selectors in force or the CIDR identities).
 * Every mutation records its undo.
 */
export class FqdnStage {
  cache: DnsCache;
  private readonly dirty = new Map<string, IpAddress>();
  private structural = true;
  /** The selector tables need a rebuild (after a structural event) before the next IP is re-identified. */
  private selectorsStale = true;
  /** Policy key → its egress-allow DNS rules (what `dnsProxyLearns` reads). */
  private readonly dnsRules = new Map<string, { readonly namespace: string | undefined; readonly rules: readonly DnsRule[] }>();
  /** The FQDN selectors in force, by name (matchName) and as patterns; rebuilt after structural events. */
  private exact = new Map<string, string[]>();
  private patterns: { key: string; match: FqdnMatcher }[] = [];
  private readonly selectorsOfName = new Map<string, readonly string[]>();

  constructor(
    private readonly ctx: EngineContext,
    private readonly identities: IdentityTable,
    private readonly pods: PodTable,
    private readonly peerCache: SelectorCache,
    cache: DnsCache,
  ) {
    this.cache = cache;
  }

  /** A non-DNS event happened: re-identify every learnt IP at settle. */
  structuralChange(): void {
    this.structural = true;
  }

  policyUpserted(p: Policy): void {
    this.policyDeleted(policyRefKey(p.ref));
    const rules: DnsRule[] = [];
    for (const r of p.rules) {
      if (r.direction !== 'egress' || r.verdict !== 'allow') continue;
      for (const c of r.ports) if (c.l7?.parser === 'dns') rules.push({ subject: r.subject, l7: c.l7 });
    }
    if (rules.length === 0) return;
    const key = policyRefKey(p.ref);
    this.dnsRules.set(key, { namespace: p.ref.namespace, rules });
    this.ctx.onUndo(() => this.dnsRules.delete(key));
  }

  policyDeleted(key: string): void {
    const old = this.dnsRules.get(key);
    if (!old) return;
    this.dnsRules.delete(key);
    this.ctx.onUndo(() => this.dnsRules.set(key, old));
  }

  namespaceDeleted(ns: string): void {
    for (const [key, v] of [...this.dnsRules]) if (v.namespace === ns) this.policyDeleted(key);
    this.cache.forgetNamespace(ns, this.changed, this.undo);
  }

  podDeleted(endpoint: string): void {
    this.cache.forgetEndpoint(endpoint, this.changed, this.undo);
  }

  /** Whether the DNS proxy learns this answer (`dnsProxyLearns` without a server). */
  learns(endpoint: string, name: string): boolean {
    const labels = this.pods.labelsOf(endpoint);
    if (!labels) return false;
    const request: { dns: DnsQuery } = { dns: { name } };
    for (const { rules } of this.dnsRules.values()) {
      for (const r of rules) if (selectorMatches(r.subject, labels) && l7Allows(r.l7, request)) return true;
    }
    return false;
  }

  /** Applies a DNS event; returns whether it changed the cache (a refused answer does not). */
  apply(e: FqdnEvent): boolean {
    if (e.type === 'advanceTime') {
      this.cache.advance(e.seconds, this.changed, this.undo);
      return true;
    }
    if (!this.learns(e.endpoint, e.name)) return false;
    this.cache.record(e.endpoint, e.name, e.ips, e.ttl, this.changed, this.undo);
    return true;
  }

  private readonly changed = (ip: IpAddress): void => {
    this.dirty.set(ip.text, ip);
  };

  private readonly undo = (fn: () => void): void => this.ctx.onUndo(fn);

  /** Before commit: the learnt IPs whose identity may have changed get their new one. */
  settle(): void {
    if (this.structural) {
      for (const ip of this.cache.liveIps()) this.dirty.set(ip.text, ip);
      for (const ip of this.identities.fqdnHostIps()) this.dirty.set(ip.text, ip);
      this.structural = false;
      this.selectorsStale = true;
    }
    // Most transactions have no learnt IP to look at: the selectors are rebuilt only when one is.
    if (this.dirty.size === 0) return;
    if (this.selectorsStale) {
      this.rebuildSelectors();
      this.selectorsStale = false;
    }
    for (const ip of this.dirty.values()) this.reidentify(ip);
    this.dirty.clear();
  }

  private rebuildSelectors(): void {
    this.exact = new Map();
    this.patterns = [];
    this.selectorsOfName.clear();
    for (const [key, sel] of this.identities.fqdnSelectors()) {
      // In force while a unit has it registered as a peer.
      if (!this.peerCache.get(`fqdn:${key}`)) continue;
      if ('matchName' in sel || !sel.matchPattern.includes('*')) {
        const name = 'matchName' in sel ? sel.matchName : sel.matchPattern;
        this.exact.set(name, [...(this.exact.get(name) ?? []), key]);
      } else {
        this.patterns.push({ key, match: compileFqdnSelector(sel) });
      }
    }
  }

  private selectorsOf(name: string): readonly string[] {
    let keys = this.selectorsOfName.get(name);
    if (keys === undefined) {
      keys = [...(this.exact.get(name) ?? []), ...this.patterns.filter((p) => p.match(name)).map((p) => p.key)];
      this.selectorsOfName.set(name, keys);
    }
    return keys;
  }

  /** The labels an IP should have now, with the CIDR it stands in for; undefined: no entry. */
  private desired(ip: IpAddress): { labels: LabelSet; cidr: Cidr | undefined } | undefined {
    if (this.pods.byIp(ip.text)) return undefined;
    const names = this.cache.namesOf(ip.text);
    if (!names) return undefined;
    const keys = new Set<string>();
    for (const name of names.keys()) for (const k of this.selectorsOf(name)) keys.add(k);
    if (keys.size === 0) return undefined;
    const cidr = this.identities.cidrIdentityOf(ip).cidr;
    const labels: Label[] = [...keys].map((key) => ({ source: SOURCE_FQDN, key, value: '' }));
    if (cidr) labels.push({ source: SOURCE_CIDR, key: cidr.text, value: '' });
    return { labels: makeLabelSet([...labels, ...worldLabels(ip.family)]), cidr };
  }

  private reidentify(ip: IpAddress): void {
    const want = this.desired(ip);
    const current = this.identities.fqdnHost(ip.text);
    if (want && current && labelSetKey(current.labels) === labelSetKey(want.labels)) return;
    if (!want && !current) return;
    this.ctx.touchIpcacheHost(ip);
    const next = want ? this.identities.acquireFqdn(want.labels, want.cidr) : undefined;
    this.identities.setFqdnHost(ip, next);
    if (current) this.identities.release(current);
    this.ctx.onUndo(() => this.restore(ip, current, next));
  }

  private restore(ip: IpAddress, previous: IdentityRecord | undefined, next: IdentityRecord | undefined): void {
    const back = previous ? this.identities.acquireFqdn(previous.labels, previous.cidr) : undefined;
    this.identities.setFqdnHost(ip, back);
    if (next) this.identities.release(next);
  }
}
