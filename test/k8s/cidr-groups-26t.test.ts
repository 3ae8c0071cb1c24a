import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseIp } from '../../src/model/cidr.js';
import { rollingMirrorAgent } from './mirror-agent.js';

/**
 * Review 26t of the agent's CiliumCIDRGroup watch (docs/attack-findings-26t.md, 2170–2179).
 *
 * x/server: `allow-world` admits every world address (fromEntities: world), `deny-blocked` denies the
 * group `blocked` (Cilium 1.19 pkg/policy/types/selector.go `newCIDRRuleSelector`: a cidrGroupRef selects
 * the prefixes labelled `cidrgroup:io.cilium.policy.cidrgroupname/<name>`, pkg/policy/k8s/cilium_cidr_group.go
 * `applyCIDRGroup`). A deny wins over the allow (pkg/policy/mapstate.go, deny precedence).
 */
type Obj = Record<string, unknown>;
const line = (type: string, object: Obj): string => JSON.stringify({ type, object });
const md = (name: string, rv: number, extra: Obj = {}): Obj => ({ name, resourceVersion: String(rv), ...extra });
const group = (name: string, rv: number, cidrs: string[], spec: Obj = {}): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumCIDRGroup', metadata: md(name, rv), spec: { externalCIDRs: cidrs, ...spec } });
const namespace: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: md('x', 2) };
const pod = (name: string, ip: string, app: string): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: md(name, 3, { namespace: 'x', labels: { app } }),
  spec: { nodeName: 'n1', containers: [{ name: 'c', image: 'nginx', ports: [{ containerPort: 80, protocol: 'TCP' }] }] },
  status: { phase: 'Running', podIP: ip },
});
const cnp = (name: string, rv: number, spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: md(name, rv, { namespace: 'x' }), spec });
const subject = { endpointSelector: { matchLabels: { app: 'server' } } };
const l7From = (rules: Obj): Obj => ({ fromEndpoints: [{ matchLabels: { app: 'client' } }], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }], rules }] });
const allowWorld = cnp('allow-world', 10, { ...subject, ingress: [{ fromEntities: ['world'] }] });
const denyBlocked = (rv: number, extra: Obj = {}): Obj => cnp('deny-blocked', rv, { ...subject, ingressDeny: [{ fromCIDRSet: [{ cidrGroupRef: 'blocked' }] }], ...extra });
const BLOCKED = '198.51.100.200';

/** A mirror and an engine, every batch applied as the agent applies it (a refused batch rolled back); the verdict for BLOCKED recorded after each commit. */
function node() {
  const committed: string[] = [];
  const { feed, engine } = rollingMirrorAgent({}, {}, () => committed.push(verdict(BLOCKED)));
  const verdict = (ip: string): string => {
    const hit = engine.lookup('x/server', engine.identityOfIp(parseIp(ip)), 'ingress', 6, 80);
    return hit === undefined ? 'none' : hit.entry.deny ? 'deny' : 'allow';
  };
  return { feed, verdict, committed };
}

describe('2170. a group turning unreadable while a policy naming groups is refused by the engine', () => {
  it('the group is not removed from the engine while a held policy still reads groups: no committed state admits BLOCKED', () => {
    const n = node();
    n.feed(
      line('ADDED', namespace),
      line('ADDED', pod('server', '10.0.0.1', 'server')),
      line('ADDED', group('blocked', 20, ['198.51.100.128/25'])),
      line('ADDED', allowWorld),
      line('ADDED', denyBlocked(11)),
      line('ADDED', cnp('http', 12, { ...subject, ingress: [l7From({ http: [{ method: 'GET' }] })] })),
    );
    expect(n.verdict(BLOCKED)).toBe('deny');
    // deny-blocked gains a Kafka rule on the port the http policy gives an HTTP parser: the engine refuses it
    // (Cilium's mergePortProto "cannot merge conflicting L7 parsers"); the engine keeps its old version.
    n.feed(line('MODIFIED', denyBlocked(30, { ingress: [l7From({ kafka: [{ topic: 'foo' }] })] })));
    expect(n.verdict(BLOCKED)).toBe('deny');
    // Then `blocked` changes to a version distill cannot read: Cilium still denies BLOCKED (the old
    // version and, whatever the new one holds, the stand-in both deny it).
    n.feed(line('MODIFIED', group('blocked', 31, ['198.51.100.0/24'], { futureField: true })));
    expect(n.committed.filter((v) => v === 'allow')).toEqual([]);
    expect(n.verdict(BLOCKED)).toBe('deny');
  });

  it('once no held policy reads groups any more, the unreadable group leaves the engine', () => {
    const n = node();
    n.feed(
      line('ADDED', namespace),
      line('ADDED', pod('server', '10.0.0.1', 'server')),
      line('ADDED', group('blocked', 20, ['198.51.100.128/25'])),
      line('ADDED', allowWorld),
      line('ADDED', denyBlocked(11)),
      line('ADDED', cnp('http', 12, { ...subject, ingress: [l7From({ http: [{ method: 'GET' }] })] })),
    );
    n.feed(line('MODIFIED', denyBlocked(30, { ingress: [l7From({ kafka: [{ topic: 'foo' }] })] })));
    n.feed(line('MODIFIED', group('blocked', 31, ['198.51.100.0/24'], { futureField: true })));
    // The conflict goes: deny-blocked (its stand-in) commits, and with it the group's removal.
    n.feed(line('DELETED', cnp('http', 40, { ...subject, ingress: [l7From({ http: [{ method: 'GET' }] })] })));
    expect(n.verdict(BLOCKED)).toBe('deny');
    expect(n.verdict('192.0.2.5')).toBe('deny'); // the stand-in's deny-every-peer rule
    // A readable version: the deny reads the group again.
    n.feed(line('MODIFIED', group('blocked', 50, ['198.51.100.0/24'])));
    expect([n.verdict(BLOCKED), n.verdict('198.51.100.7'), n.verdict('192.0.2.5')]).toEqual(['deny', 'deny', 'allow']);
  });
});

describe('groups named or labelled like Object.prototype members (checked and held)', () => {
  it('a group named constructor, labelled toString/hasOwnProperty, selected by name and by label', () => {
    const n = node();
    n.feed(
      line('ADDED', namespace),
      line('ADDED', pod('server', '10.0.0.1', 'server')),
      line('ADDED', { ...group('constructor', 20, ['198.51.100.128/25']), metadata: md('constructor', 20, { labels: { toString: 'x', hasOwnProperty: '' } }) }),
      line('ADDED', allowWorld),
      line('ADDED', cnp('deny-ref', 11, { ...subject, ingressDeny: [{ fromCIDRSet: [{ cidrGroupRef: 'constructor' }] }] })),
    );
    expect([n.verdict(BLOCKED), n.verdict('198.51.100.7')]).toEqual(['deny', 'allow']);
    n.feed(line('DELETED', cnp('deny-ref', 12, {})), line('ADDED', cnp('deny-sel', 13, { ...subject, ingressDeny: [{ fromCIDRSet: [{ cidrGroupSelector: { matchLabels: { toString: 'x' } } }] }] })));
    expect([n.verdict(BLOCKED), n.verdict('198.51.100.7')]).toEqual(['deny', 'allow']);
    // A group named __proto__ is no DNS subdomain: the API server refuses it; distill holds it unreadable (stand-in).
    n.feed(line('ADDED', group('__proto__', 30, ['192.0.2.0/24'])));
    expect([n.verdict(BLOCKED), n.verdict('192.0.2.5')]).toEqual(['deny', 'deny']);
  });
});

describe('a group listing a pod address (checked and held)', () => {
  // The pod's ipcache entry is its endpoint's identity: Cilium's CIDR-group prefix for the same /32 is
  // metadata of source `generated`, below the endpoint's (pkg/source AllowOverwrite; pkg/ipcache/metadata.go
  // InjectLabels upserts it with that source), and a wider group prefix loses the longest-prefix match.
  // Newest metadata_test.go TestResolveIdentity case 3: "reserved identities must never get CIDR, CIDRGroup,
  // or FQDN labels". So a deny naming the group does not deny the pod; an allow naming it does not admit it.
  it('a cidrGroupRef deny over the pod\'s /32 and its /24 leaves the pod to the pod rules', () => {
    const n = node();
    n.feed(
      line('ADDED', namespace),
      line('ADDED', pod('server', '10.0.0.1', 'server')),
      line('ADDED', pod('client', '10.0.0.2', 'client')),
      line('ADDED', group('blocked', 20, ['10.0.0.2/32', '10.0.0.0/24', '198.51.100.128/25'])),
      line('ADDED', cnp('allow-client', 10, { ...subject, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }] }, { fromEntities: ['world'] }] })),
      line('ADDED', denyBlocked(11)),
    );
    expect([n.verdict('10.0.0.2'), n.verdict(BLOCKED), n.verdict('10.0.0.77')]).toEqual(['allow', 'deny', 'deny']);
  });
});

describe('2172. a group labelled io.kubernetes.pod.namespace (26p\'s residual of 2020, now reachable in the agent)', () => {
  // Cilium: `fromEndpoints: [{matchLabels: {io.kubernetes.pod.namespace: x}}]` is the selector
  // `any:io.kubernetes.pod.namespace=x` (no namespace requirement added: getEndpointSelector sees
  // podAnyPrefixLbl), and `any:` matches a label of every source (pkg/labels/array.go LabelArray.Has),
  // so it selects the CIDR identities of a group labelled `io.kubernetes.pod.namespace: x`
  // (applyCIDRGroup keeps every label but io.cilium.k8s*). distill reads the key as pods only.
  it('the deny on that namespace key also denies the group\'s prefixes', () => {
    const n = node();
    n.feed(
      line('ADDED', namespace),
      line('ADDED', pod('server', '10.0.0.1', 'server')),
      line('ADDED', { ...group('lookalike', 20, ['198.51.100.128/25']), metadata: md('lookalike', 20, { labels: { 'io.kubernetes.pod.namespace': 'x' } }) }),
      line('ADDED', allowWorld),
      line('ADDED', cnp('deny-ns', 11, { ...subject, ingressDeny: [{ fromEndpoints: [{ matchLabels: { 'io.kubernetes.pod.namespace': 'x' } }] }] })),
    );
    expect(n.verdict(BLOCKED)).toBe('deny');
  });
});

describe('2170. property: engine refusals mixed with group changes', () => {
  // `blocked` always holds 198.51.100.128/25 (whatever else it lists), and deny-blocked (each version)
  // denies it: Cilium denies BLOCKED in every state, whatever the unreadable versions hold. Refusals come
  // from an http policy and a Kafka version of deny-blocked on one port (conflicting L7 parsers).
  type Op = { kind: 'blocked'; extra: string[]; unreadable: boolean } | { kind: 'other'; unreadable: boolean; gone: boolean } | { kind: 'http'; on: boolean } | { kind: 'kafka'; on: boolean };
  const EXTRA = ['198.51.100.0/24', '192.0.2.0/24', '203.0.113.0/24'];
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant('blocked' as const), extra: fc.subarray(EXTRA), unreadable: fc.boolean() }),
    fc.record({ kind: fc.constant('other' as const), unreadable: fc.boolean(), gone: fc.boolean() }),
    fc.record({ kind: fc.constant('http' as const), on: fc.boolean() }),
    fc.record({ kind: fc.constant('kafka' as const), on: fc.boolean() }),
  );
  it('no committed state admits BLOCKED', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 14 }), (ops) => {
        let rv = 100;
        const n = node();
        const http = (): Obj => cnp('http', ++rv, { ...subject, ingress: [l7From({ http: [{ method: 'GET' }] })] });
        n.feed(line('ADDED', namespace), line('ADDED', pod('server', '10.0.0.1', 'server')), line('ADDED', group('blocked', ++rv, ['198.51.100.128/25'])), line('ADDED', allowWorld), line('ADDED', denyBlocked(++rv)));
        let other = false;
        let httpOn = false;
        for (const o of ops) {
          if (o.kind === 'blocked') n.feed(line('MODIFIED', group('blocked', ++rv, ['198.51.100.128/25', ...o.extra], o.unreadable ? { futureField: true } : {})));
          else if (o.kind === 'other') {
            if (o.gone && other) n.feed(line('DELETED', group('other', ++rv, [])));
            else if (!o.gone) n.feed(line(other ? 'MODIFIED' : 'ADDED', group('other', ++rv, ['192.0.2.0/24'], o.unreadable ? { futureField: true } : {})));
            other = other ? !o.gone : !o.gone;
          } else if (o.kind === 'http') {
            if (o.on !== httpOn) n.feed(line(o.on ? 'ADDED' : 'DELETED', http()));
            httpOn = o.on;
          } else n.feed(line('MODIFIED', denyBlocked(++rv, o.on ? { ingress: [l7From({ kafka: [{ topic: 'foo' }] })] } : {})));
        }
        expect(n.committed.filter((v) => v === 'allow')).toEqual([]);
      }),
      { numRuns: 200 },
    );
  });
});
