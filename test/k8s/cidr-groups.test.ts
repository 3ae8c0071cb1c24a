import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../../src/engine/events.js';
import { Engine } from '../../src/engine/engine.js';
import { ClusterMirror, type MirrorOptions } from '../../src/k8s/mirror.js';
import { WatchStreamParser } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';

/**
 * The agent's CiliumCIDRGroup watch (docs/attack-findings-26g.md, 2040–2049): watch streams as the
 * API server sends them (one JSON watch event a line: ADDED, MODIFIED, DELETED, BOOKMARK, ERROR 410;
 * Lists as `CiliumCIDRGroupList`), objects with the metadata the API server sets.
 *
 * x/server is the subject of two policies: `allow-partners` admits ingress from the group
 * `partners` (cidrGroupRef), `deny-blocked` denies ingress from the group `blocked` (Cilium 1.19
 * pkg/policy/types/selector.go `newCIDRRuleSelector`: a cidrGroupRef selects the prefixes labelled
 * `cidrgroup:io.cilium.policy.cidrgroupname/<name>`; pkg/policy/k8s/cilium_cidr_group.go
 * `applyCIDRGroup` labels each `spec.externalCIDRs` prefix so). `blocked` lies inside `partners`,
 * so its deny shows: 198.51.100.7 is admitted, 198.51.100.200 denied.
 */
type Obj = Record<string, unknown>;
const line = (type: string, object: Obj): string => JSON.stringify({ type, object });
let uid = 0;
const created = '2026-12-02T10:00:00Z';
const md = (name: string, rv: number, extra: Obj = {}): Obj => ({
  name,
  uid: `6f1c2a4e-0000-4000-8000-${String(++uid).padStart(12, '0')}`,
  resourceVersion: String(rv),
  generation: 1,
  creationTimestamp: created,
  ...extra,
});
const group = (name: string, rv: number, cidrs: string[], apiVersion = 'cilium.io/v2', extra: { labels?: Obj; spec?: Obj } = {}): Obj => ({
  apiVersion,
  kind: 'CiliumCIDRGroup',
  metadata: md(name, rv, {
    ...(extra.labels ? { labels: extra.labels } : {}),
    managedFields: [{ manager: 'kubectl-client-side-apply', operation: 'Update', apiVersion, time: created, fieldsType: 'FieldsV1', fieldsV1: { 'f:spec': { '.': {}, 'f:externalCIDRs': {} } } }],
  }),
  spec: { externalCIDRs: cidrs, ...(extra.spec ?? {}) },
});
const namespace: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: md('x', 2, { labels: { 'kubernetes.io/metadata.name': 'x' } }), spec: { finalizers: ['kubernetes'] }, status: { phase: 'Active' } };
const server: Obj = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: md('server', 3, { namespace: 'x', labels: { app: 'server' } }),
  spec: { nodeName: 'n1', serviceAccountName: 'default', containers: [{ name: 'c', image: 'nginx', ports: [{ containerPort: 80, protocol: 'TCP' }] }] },
  status: { phase: 'Running', podIP: '10.0.0.1', podIPs: [{ ip: '10.0.0.1' }] },
};
const cnp = (name: string, rv: number, spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: md(name, rv, { namespace: 'x' }), spec });
const subject = { endpointSelector: { matchLabels: { app: 'server' } } };
const allowPartners = cnp('allow-partners', 10, { ...subject, ingress: [{ fromCIDRSet: [{ cidrGroupRef: 'partners' }] }] });
const denyBlocked = cnp('deny-blocked', 11, { ...subject, ingressDeny: [{ fromCIDRSet: [{ cidrGroupRef: 'blocked' }] }] });
const expired = line('ERROR', { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'too old resource version: 20 (40)', reason: 'Expired', code: 410 });
const bookmark = (rv: number, end = false): string =>
  line('BOOKMARK', { apiVersion: 'cilium.io/v2', kind: 'CiliumCIDRGroup', metadata: { resourceVersion: String(rv), ...(end ? { annotations: { 'k8s.io/initial-events-end': 'true' } } : {}) } });
const groupList = (rv: number, items: Obj[], apiVersion = 'cilium.io/v2'): string =>
  JSON.stringify({ apiVersion, kind: 'CiliumCIDRGroupList', metadata: { resourceVersion: String(rv) }, items: items.map(({ apiVersion: _a, kind: _k, ...rest }) => rest) });

function agent(options: Partial<MirrorOptions> = {}) {
  const mirror = new ClusterMirror({ nodeName: 'n1', ...options });
  const engine = new Engine();
  const parsers = new Map<string, WatchStreamParser>();
  const step = (source: string, ...lines: string[]): void => {
    const parser = parsers.get(source) ?? new WatchStreamParser(source);
    parsers.set(source, parser);
    for (const item of parser.push(lines.join('\n') + '\n')) mirror.observe(item, source);
    for (let i = 0; i < 50 && !mirror.idle; i++) {
      const b = mirror.flush();
      try {
        engine.apply(b.events as EngineEvent[]);
      } catch (e) {
        b.rollback();
        throw e;
      }
      b.commit();
    }
    expect(mirror.idle).toBe(true);
  };
  /** What x/server's maps do with a TCP packet to port 80 from `ip`: allow, deny, or none (no entry: dropped). */
  const verdict = (ip: string): string => {
    const hit = engine.lookup('x/server', engine.identityOfIp(parseIp(ip)), 'ingress', 6, 80);
    return hit === undefined ? 'none' : hit.entry.deny ? 'deny' : 'allow';
  };
  const base = (): void => {
    step('namespaces', line('ADDED', namespace));
    step('pods', line('ADDED', server));
  };
  return { step, verdict, base, engine, mirror };
}

const PARTNER = '198.51.100.7';
const BLOCKED = '198.51.100.200';
const OTHER = '192.0.2.5';

describe('CiliumCIDRGroup objects on the agent\'s watch streams (26g)', () => {
  it('groups listed before the policies: the allow admits the group, the deny denies the other group', () => {
    const a = agent();
    a.base();
    a.step('groups', groupList(20, [group('partners', 20, ['198.51.100.0/24']), group('blocked', 21, ['198.51.100.128/25'])]));
    a.step('policies', line('ADDED', allowPartners), line('ADDED', denyBlocked));
    expect([a.verdict(PARTNER), a.verdict(BLOCKED), a.verdict(OTHER)]).toEqual(['allow', 'deny', 'none']);
  });

  it('a group changed after the policy that references it: the allow follows it', () => {
    const a = agent();
    a.base();
    a.step('groups', line('ADDED', group('partners', 20, ['198.51.100.0/24'])), line('ADDED', group('blocked', 21, ['198.51.100.128/25'])));
    a.step('policies', line('ADDED', allowPartners), line('ADDED', denyBlocked));
    a.step('groups', line('MODIFIED', group('partners', 30, ['192.0.2.0/24', '198.51.100.192/26'])));
    expect([a.verdict(PARTNER), a.verdict(BLOCKED), a.verdict(OTHER)]).toEqual(['none', 'deny', 'allow']);
    // The same group read at v2alpha1 (still served) means the same.
    a.step('groups', line('MODIFIED', group('partners', 31, ['192.0.2.0/24', '198.51.100.192/26'], 'cilium.io/v2alpha1')));
    expect([a.verdict(PARTNER), a.verdict(BLOCKED), a.verdict(OTHER)]).toEqual(['none', 'deny', 'allow']);
  });

  it('a group deleted: its deny no longer applies, its allow admits nothing', () => {
    const a = agent();
    a.base();
    a.step('groups', line('ADDED', group('partners', 20, ['198.51.100.0/24'])), line('ADDED', group('blocked', 21, ['198.51.100.128/25'])));
    a.step('policies', line('ADDED', allowPartners), line('ADDED', denyBlocked));
    a.step('groups', line('DELETED', group('blocked', 40, ['198.51.100.128/25'])));
    expect([a.verdict(PARTNER), a.verdict(BLOCKED)]).toEqual(['allow', 'allow']);
    a.step('groups', line('DELETED', group('partners', 41, ['198.51.100.0/24'])));
    expect([a.verdict(PARTNER), a.verdict(BLOCKED)]).toEqual(['none', 'none']);
    // A replayed ADDED older than the delete is stale.
    a.step('groups', line('ADDED', group('partners', 20, ['198.51.100.0/24'])));
    expect(a.verdict(PARTNER)).toBe('none');
  });

  it('a relist after a 410: a List deletes the group it no longer lists; a watch-list ends at its bookmark', () => {
    const a = agent();
    a.base();
    a.step('groups', line('ADDED', group('partners', 20, ['198.51.100.0/24'])), line('ADDED', group('blocked', 21, ['198.51.100.128/25'])), bookmark(25));
    a.step('policies', line('ADDED', allowPartners), line('ADDED', denyBlocked));
    expect(a.verdict(BLOCKED)).toBe('deny');
    a.step('groups', expired, groupList(50, [group('partners', 45, ['198.51.100.0/24', '192.0.2.0/24'], 'cilium.io/v2alpha1')], 'cilium.io/v2alpha1'));
    expect([a.verdict(PARTNER), a.verdict(BLOCKED), a.verdict(OTHER)]).toEqual(['allow', 'allow', 'allow']);
    // A watch-list (sendInitialEvents) after another 410: blocked back, partners gone at the end bookmark.
    a.step('groups', expired, line('ADDED', group('blocked', 55, ['198.51.100.0/25'])));
    expect(a.verdict(PARTNER)).toBe('allow');
    a.step('groups', bookmark(60, true));
    expect([a.verdict(PARTNER), a.verdict(BLOCKED), a.verdict(OTHER)]).toEqual(['deny', 'none', 'none']);
  });

  it('a group arriving after the policy: the policy reads fail-closed until the groups are known to be watched', () => {
    const a = agent();
    a.base();
    a.step('policies', line('ADDED', allowPartners), line('ADDED', denyBlocked));
    // No group stream yet: the stand-in (the allow rule dropped, the deny rule denying every peer).
    expect([a.verdict(PARTNER), a.verdict(BLOCKED), a.verdict(OTHER)]).toEqual(['deny', 'deny', 'deny']);
    a.step('groups', line('ADDED', group('partners', 20, ['198.51.100.0/24'])));
    expect([a.verdict(PARTNER), a.verdict(BLOCKED), a.verdict(OTHER)]).toEqual(['allow', 'allow', 'none']);
    a.step('groups', line('ADDED', group('blocked', 21, ['198.51.100.128/25'])));
    expect([a.verdict(PARTNER), a.verdict(BLOCKED)]).toEqual(['allow', 'deny']);
  });

  it('with the groups watched from the start (--cidr-groups), a policy before its group selects nothing until it arrives', () => {
    const a = agent({ cidrGroups: true });
    a.base();
    a.step('policies', line('ADDED', allowPartners), line('ADDED', denyBlocked));
    expect([a.verdict(PARTNER), a.verdict(BLOCKED)]).toEqual(['none', 'none']);
    a.step('groups', line('ADDED', group('partners', 20, ['198.51.100.0/24'])), line('ADDED', group('blocked', 21, ['198.51.100.128/25'])));
    expect([a.verdict(PARTNER), a.verdict(BLOCKED)]).toEqual(['allow', 'deny']);
  });

  it('an empty typed List of groups says they are watched', () => {
    const a = agent();
    a.base();
    a.step('groups', groupList(5, []));
    a.step('policies', line('ADDED', allowPartners), line('ADDED', denyBlocked));
    expect([a.verdict(PARTNER), a.verdict(BLOCKED)]).toEqual(['none', 'none']);
  });
});

describe('a CiliumCIDRGroup that cannot be read never widens an allow nor narrows a deny (2040, 2041)', () => {
  /** A newer CRD's field distill does not read: Cilium reads the group, distill cannot. */
  const unreadable = (name: string, rv: number, cidrs: string[]): Obj => group(name, rv, cidrs, 'cilium.io/v2', { spec: { futureField: true } });

  it('2040. an update distill cannot read: every group peer reads fail-closed until a readable version', () => {
    const a = agent();
    a.base();
    a.step('groups', line('ADDED', group('partners', 20, ['198.51.100.0/24'])), line('ADDED', group('blocked', 21, ['198.51.100.128/25'])));
    a.step('policies', line('ADDED', allowPartners), line('ADDED', denyBlocked));
    // Cilium reads partners as 192.0.2.0/24 only: keeping the old version would admit 198.51.100.7.
    a.step('groups', line('MODIFIED', unreadable('partners', 30, ['192.0.2.0/24'])));
    expect(a.verdict(PARTNER)).not.toBe('allow');
    expect(a.verdict(BLOCKED)).toBe('deny');
    expect(a.verdict(OTHER)).not.toBe('allow');
    a.step('groups', line('MODIFIED', group('partners', 31, ['192.0.2.0/24'])));
    expect([a.verdict(PARTNER), a.verdict(BLOCKED), a.verdict(OTHER)]).toEqual(['none', 'deny', 'allow']);
  });

  it('2041. a new group distill cannot read whose labels name another group: the deny on that name still denies', () => {
    const a = agent();
    a.base();
    a.step('groups', line('ADDED', group('partners', 20, ['198.51.100.0/24', '192.0.2.0/24'])), line('ADDED', group('blocked', 21, ['198.51.100.128/25'])));
    a.step('policies', line('ADDED', allowPartners), line('ADDED', denyBlocked));
    expect(a.verdict(OTHER)).toBe('allow');
    // Cilium labels 192.0.2.0/24 with cidrgroup:io.cilium.policy.cidrgroupname/blocked too: deny-blocked denies it.
    const evil = group('evil', 30, ['192.0.2.0/24'], 'cilium.io/v2', { labels: { 'io.cilium.policy.cidrgroupname/blocked': '' }, spec: { futureField: true } });
    a.step('groups', line('ADDED', evil));
    expect(a.verdict(OTHER)).not.toBe('allow');
    // Once it is deleted (or relisted away) group peers read again.
    a.step('groups', line('DELETED', evil));
    expect([a.verdict(PARTNER), a.verdict(BLOCKED), a.verdict(OTHER)]).toEqual(['allow', 'deny', 'allow']);
  });

  it('2041. the same group readable: the label it carries makes deny-blocked deny its prefix', () => {
    const a = agent();
    a.base();
    a.step('groups', line('ADDED', group('partners', 20, ['198.51.100.0/24', '192.0.2.0/24'])), line('ADDED', group('blocked', 21, ['198.51.100.128/25'])));
    a.step('policies', line('ADDED', allowPartners), line('ADDED', denyBlocked));
    a.step('groups', line('ADDED', group('evil', 30, ['192.0.2.0/24'], 'cilium.io/v2', { labels: { 'io.cilium.policy.cidrgroupname/blocked': '' } })));
    expect(a.verdict(OTHER)).toBe('deny');
  });

  it('2045. a group at a cilium.io version distill does not know is a group it cannot read, not an ignored object', () => {
    const a = agent();
    a.base();
    a.step('groups', line('ADDED', group('partners', 20, ['198.51.100.0/24', '192.0.2.0/24'])), line('ADDED', group('blocked', 21, ['198.51.100.128/25'])));
    a.step('policies', line('ADDED', allowPartners), line('ADDED', denyBlocked));
    expect(a.verdict(OTHER)).toBe('allow');
    // A newer Cilium may read it, and its labels may name `blocked`.
    a.step('groups', line('ADDED', group('newer', 30, ['192.0.2.0/24'], 'cilium.io/v3', { labels: { 'io.cilium.policy.cidrgroupname/blocked': '' } })));
    expect(a.verdict(OTHER)).not.toBe('allow');
    expect(a.verdict(BLOCKED)).toBe('deny');
  });

  it('2040. a listed group distill cannot read (a relist) is as unknown as a watched one', () => {
    const a = agent();
    a.base();
    a.step('groups', groupList(20, [group('partners', 20, ['198.51.100.0/24']), group('blocked', 21, ['198.51.100.128/25'])]));
    a.step('policies', line('ADDED', allowPartners), line('ADDED', denyBlocked));
    a.step('groups', expired, groupList(40, [group('partners', 20, ['198.51.100.0/24']), unreadable('blocked', 35, ['198.51.100.0/24'])]));
    // Cilium denies all of 198.51.100.0/24 now.
    expect(a.verdict(PARTNER)).not.toBe('allow');
    expect(a.verdict(BLOCKED)).toBe('deny');
  });
});

describe('2043. a group turning unreadable while a refused batch is retried in halves', () => {
  // Two valid policies whose L7 parsers conflict on x/server's port 80 (the engine refuses them together, as Cilium's
  // mergePortProto "cannot merge conflicting L7 parsers" does): their batch is retried in halves. A group turning
  // unreadable meanwhile must not be deleted from the engine before the policies naming groups read as the stand-in.
  const l7 = (name: string, rv: number, rules: Obj): Obj =>
    cnp(name, rv, { ...subject, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }], rules }] }] });
  it('no committed state admits what both the old and the new reading deny', () => {
    const mirror = new ClusterMirror({ nodeName: 'n1' });
    const engine = new Engine();
    const parser = new WatchStreamParser('w');
    const feed = (...lines: string[]): void => {
      for (const item of parser.push(lines.join('\n') + '\n')) mirror.observe(item, 'w');
    };
    const blocked = (): string => {
      const hit = engine.lookup('x/server', engine.identityOfIp(parseIp(BLOCKED)), 'ingress', 6, 80);
      return hit === undefined ? 'none' : hit.entry.deny ? 'deny' : 'allow';
    };
    const seen: string[] = [];
    const flush = (): void => {
      const b = mirror.flush();
      try {
        engine.apply(b.events as EngineEvent[]);
        b.commit();
        seen.push(blocked());
      } catch {
        b.rollback();
      }
    };
    feed(line('ADDED', namespace), line('ADDED', server), line('ADDED', group('partners', 20, ['198.51.100.0/24'])), line('ADDED', group('blocked', 21, ['198.51.100.128/25'])), line('ADDED', allowPartners), line('ADDED', denyBlocked));
    flush();
    expect(blocked()).toBe('deny');
    feed(line('ADDED', l7('kafka', 30, { kafka: [{ topic: 'foo' }] })), line('ADDED', l7('http', 31, { http: [{ method: 'GET' }] })));
    flush(); // refused: retried in halves
    feed(line('MODIFIED', group('blocked', 32, ['198.51.100.0/24'], 'cilium.io/v2', { spec: { futureField: true } })));
    for (let i = 0; i < 20 && !mirror.idle; i++) flush();
    expect(seen.length).toBeGreaterThan(1);
    expect(seen.filter((v) => v === 'allow')).toEqual([]);
  });
});
