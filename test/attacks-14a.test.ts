import { describe, expect, it } from 'vitest';
import { replay } from '../src/churn/replay.js';
import { parseTrace } from '../src/churn/trace.js';
import { cli, tmpFile } from './cli-helpers.js';
import { ClusterMirror } from '../src/k8s/mirror.js';
import { WatchStreamParser } from '../src/k8s/watch.js';
import { parseCidr, parseIp } from '../src/model/cidr.js';

/** Round 14a (docs/attack-findings-14a.md): hostile traces, metrics and logs. */

const header = '{"distillTrace": 1}';
const ns = '{"type": "upsertNamespace", "name": "a", "labels": {}}';
const churn = '{"type": "phase", "name": "churn"}';
const podLine = (name: string, ip: string, tag: string): string =>
  JSON.stringify({ type: 'upsertPod', pod: { namespace: 'a', name, labels: { app: name }, ip }, tag });

describe('580. a trace tag is a key of the replay summary', () => {
  it('tags named after Object.prototype members are reported as any other tag', () => {
    const tags = ['__proto__', 'constructor', 'toString', 'hasOwnProperty'];
    const trace = parseTrace([header, ns, churn, ...tags.map((t, i) => podLine(`p${i}`, `10.0.0.${i + 1}`, t))].join('\n'), 't.jsonl');
    const r = replay(trace, { mode: 'incremental' });
    const json = JSON.parse(JSON.stringify(r)) as { latencyUs: Record<string, { count: number }> };
    expect(Object.keys(json.latencyUs).sort()).toEqual([...tags].sort());
    for (const t of tags) expect(Object.getOwnPropertyDescriptor(json.latencyUs, t)?.value).toMatchObject({ count: 1 });
    expect(Object.getPrototypeOf(r.latencyUs)).not.toHaveProperty('count');
  });
});

describe('581. a trace event the engine refuses is named by its line', () => {
  // A dual-stack pod and a ClusterNetworkPolicy `networks` peer on one of its addresses: the engine
  // refuses the state (finding 525), which checkTrace (the model's checks) does not foresee.
  const dual = '{"type": "upsertPod", "pod": {"namespace": "a", "name": "web", "labels": {"app": "web"}, "ip": "10.244.0.11", "ips": ["10.244.0.11", "fd00::11"]}, "local": true}';
  const cnp = JSON.stringify({ type: 'upsertPolicy', manifest: { apiVersion: 'policy.networking.k8s.io/v1alpha2', kind: 'ClusterNetworkPolicy', metadata: { name: 'n' }, spec: { tier: 'Admin', priority: 10, subject: { namespaces: {} }, egress: [{ action: 'Deny', to: [{ networks: ['10.244.0.11/32'] }] }] } } });
  const later = podLine('other', '10.244.0.12', 'pod-add');
  for (const mode of ['incremental', 'full']) {
    it(`a churn event (--mode ${mode}): exit 2 naming file:line`, () => {
      const f = tmpFile('t.jsonl', [header, ns, dual, churn, cnp, later].join('\n'));
      const r = cli('replay', f, '--mode', mode);
      expect(r.code, r.err).toBe(2);
      expect(r.err).toContain('t.jsonl:5: ');
      expect(r.err).toContain('both addresses of a pod share one identity');
    });
  }
  it('the initial phase: exit 2 naming the phase', () => {
    const f = tmpFile('t.jsonl', [header, ns, dual, cnp, churn, later].join('\n'));
    const r = cli('replay', f);
    expect(r.code, r.err).toBe(2);
    expect(r.err).toContain('t.jsonl: the initial phase (one transaction): ');
  });
});

describe('582. resourceVersions of millions of digits', () => {
  // The API server's resourceVersions are decimal integers (etcd revisions); the mirror compares
  // them to drop stale events. BigInt-parsing a 4-million-digit one took ~2 s of the event loop (2 million: 4 events here ~8 s).
  const nsObj = (rv: string, team: string): Record<string, unknown> => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: rv, labels: { team } } });
  const feed = (m: ClusterMirror, type: string, obj: Record<string, unknown>): void => {
    for (const item of new WatchStreamParser('w').push(`${JSON.stringify({ type, object: obj })}\n`)) m.observe(item, 'w');
  };
  const labelsAfter = (events: [string, Record<string, unknown>][]): unknown => {
    const m = new ClusterMirror({ nodeName: 'n1' });
    for (const [t, o] of events) feed(m, t, o);
    const ev = m.flush().events.find((e) => e.type === 'upsertNamespace');
    return ev?.type === 'upsertNamespace' ? ev.labels : undefined;
  };

  it('are compared in linear time', () => {
    const big = '7'.repeat(2_000_000);
    const m = new ClusterMirror({ nodeName: 'n1' });
    feed(m, 'ADDED', nsObj(big, 'a'));
    const t0 = performance.now();
    for (let i = 0; i < 4; i++) feed(m, 'MODIFIED', nsObj(big, 'b'));
    expect(performance.now() - t0).toBeLessThan(3000);
  });

  it('keep their order (leading zeros, lengths, equal values)', () => {
    expect(labelsAfter([['ADDED', nsObj('10', 'a')], ['MODIFIED', nsObj('9', 'b')]])).toEqual({ team: 'a' });
    expect(labelsAfter([['ADDED', nsObj('9', 'a')], ['MODIFIED', nsObj('10', 'b')]])).toEqual({ team: 'b' });
    expect(labelsAfter([['ADDED', nsObj('010', 'a')], ['MODIFIED', nsObj('9', 'b')]])).toEqual({ team: 'a' });
    expect(labelsAfter([['ADDED', nsObj('10', 'a')], ['MODIFIED', nsObj('0010', 'b')]])).toEqual({ team: 'a' });
    expect(labelsAfter([['ADDED', nsObj('10', 'a')], ['MODIFIED', nsObj('0011', 'b')]])).toEqual({ team: 'b' });
    expect(labelsAfter([['ADDED', nsObj('123456789012345678901234567890', 'a')], ['MODIFIED', nsObj('123456789012345678901234567889', 'b')]])).toEqual({ team: 'a' });
  });
});

describe('584. an IPv6 address written `::a.b.c.d` (RFC 4291 2.2, form 3)', () => {
  // ipaddr.js 2.5.0 parses exactly this form as the IPv4-mapped ::ffff:a.b.c.d; Go's netip (Cilium,
  // Kubernetes) as 0:0:0:0:0:0:a.b.c.d. A CIDR deny written so denied other addresses than its own.
  it('is the address whose low 32 bits are the IPv4 address, as any other IPv6 text form', () => {
    expect(parseIp('::10.0.0.1').text).toBe('::a00:1');
    expect(parseIp('::10.0.0.1').value).toBe(parseIp('0:0:0:0:0:0:10.0.0.1').value);
    expect(parseIp('::1.2.3.4').text).toBe('::102:304');
    expect(parseCidr('::10.0.0.0/104').text).toBe('::a00:0/104');
    expect(parseIp('::ffff:10.0.0.1').text).toBe('::ffff:a00:1');
    expect(parseIp('::a00:1').text).toBe('::a00:1');
  });
});
