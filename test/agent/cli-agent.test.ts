import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

/** `distill agent` as a user runs it, on the memory backend (needs dist/, built by npm test). */
const dir = mkdtempSync(join(tmpdir(), 'distill-agent-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const agent = (args: string[], input?: string) => spawnSync('node', ['dist/cli/main.js', 'agent', ...args], { encoding: 'utf8', ...(input !== undefined ? { input } : {}) });
const file = (name: string, items: unknown[]): string => {
  const p = join(dir, name);
  writeFileSync(p, items.map((i) => JSON.stringify(i)).join('\n'));
  return p;
};
const ns = { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } } };
const pod = (name: string, node: string, rv: number) => ({ type: 'ADDED', object: { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'shop', resourceVersion: String(rv), labels: { app: name } }, spec: { nodeName: node, containers: [{ name: 'c', image: 'i' }] }, status: { phase: 'Running', podIP: `10.0.0.${rv}` } } });
const svc = { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Service', metadata: { name: 's', namespace: 'shop', resourceVersion: '9' }, spec: {} } };

describe('distill agent (CLI)', () => {
  it('prints a summary at EOF: local endpoints only, unknown kinds ignored', () => {
    const r = agent(['--node', 'node-a', '--watch', file('ns.json', [ns]), '--watch', file('pods.json', [pod('a', 'node-a', 2), pod('b', 'node-b', 3), svc]), '--exit-at-eof']);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('1 endpoints, 3 map entries, 1 transactions, 0 refused, 0 stale events dropped, 1 objects of unknown kinds ignored\n');
  });
  it('--json: each local endpoint map with peer labels', () => {
    const r = agent(['--node', 'node-a', '--watch', '-', '--exit-at-eof', '--json'], [ns, pod('a', 'node-a', 2)].map((x) => JSON.stringify(x)).join(''));
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { maps: { endpoint: string; backend: string; entries: unknown[] }[] };
    // egress and ingress allow-all, and the local host's ingress entry (allow-localhost, default always = Cilium's auto under Kubernetes).
    expect(out.maps.map((m) => [m.endpoint, m.backend, m.entries.length])).toEqual([['shop/a', 'memory', 3]]);
    const policy = agent(['--node', 'node-a', '--watch', '-', '--exit-at-eof', '--json', '--allow-localhost', 'policy'], [ns, pod('a', 'node-a', 2)].map((x) => JSON.stringify(x)).join(''));
    expect(policy.status).toBe(0);
    expect((JSON.parse(policy.stdout) as typeof out).maps.map((m) => m.entries.length)).toEqual([2]);
    expect(agent(['--node', 'node-a', '--watch', '-', '--exit-at-eof', '--allow-localhost', 'never'], '').status).not.toBe(0);
  });
  it('--identities external: map keys are the CiliumIdentity numbers; a pod without one is default deny', () => {
    const labelsOf = (app: string): Record<string, string> => ({
      'k8s:app': app,
      'k8s:io.kubernetes.pod.namespace': 'shop',
      'k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name': 'shop',
      'k8s:io.cilium.k8s.policy.serviceaccount': 'default',
      'k8s:io.cilium.k8s.policy.cluster': 'default',
    });
    const identity = (id: number, app: string, rv: number) => ({ type: 'ADDED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumIdentity', metadata: { name: String(id), resourceVersion: String(rv) }, 'security-labels': labelsOf(app) } });
    const allow = { type: 'ADDED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p', namespace: 'shop', resourceVersion: '20' }, spec: { endpointSelector: { matchLabels: { app: 'a' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'b' } }], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }] } } };
    type Out = { maps: { endpoint: string; entries: { identity: number; direction: string; ports: unknown }[] }[] };
    const run = (items: unknown[]): Out => {
      const r = agent(['--node', 'node-a', '--watch', '-', '--identities', 'external', '--exit-at-eof', '--json'], items.map((x) => JSON.stringify(x)).join(''));
      expect(r.status, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as Out;
    };
    const known = run([ns, pod('a', 'node-a', 2), pod('b', 'node-b', 3), allow, identity(31000, 'a', 4), identity(32000, 'b', 5)]);
    const entries = known.maps.find((m) => m.endpoint === 'shop/a')?.entries ?? [];
    expect(entries.filter((e) => e.direction === 'ingress').map((e) => [e.identity, e.ports])).toEqual([[1, 'any'], [32000, { from: 80, to: 80 }]]);
    const pending = run([ns, pod('a', 'node-a', 2), pod('b', 'node-b', 3), allow, identity(32000, 'b', 5)]);
    expect(pending.maps.find((m) => m.endpoint === 'shop/a')?.entries).toEqual([]);
  });
  it('Cilium\'s boolean agent flags as Cilium takes them (--flag=false): enable-non-default-deny-policies=false ignores enableDefaultDeny', () => {
    const defaultAllow = { type: 'ADDED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p', namespace: 'shop', resourceVersion: '20' }, spec: { endpointSelector: { matchLabels: { app: 'a' } }, enableDefaultDeny: { ingress: false }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'b' } }], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }] } } };
    const input = [ns, pod('a', 'node-a', 2), pod('b', 'node-b', 3), defaultAllow].map((x) => JSON.stringify(x)).join('');
    const ingressOf = (flags: string[]): unknown[] => {
      const r = agent(['--node', 'node-a', '--watch', '-', '--exit-at-eof', '--json', '--allow-localhost', 'policy', ...flags], input);
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as { maps: { entries: { direction: string; ports: unknown }[] }[] };
      return (out.maps[0]?.entries ?? []).filter((e) => e.direction === 'ingress').map((e) => e.ports);
    };
    expect(ingressOf([])).toEqual(['any', { from: 80, to: 80 }]);
    expect(ingressOf(['--enable-non-default-deny-policies=false'])).toEqual([{ from: 80, to: 80 }]);
    expect(ingressOf(['--enable-non-default-deny-policies', 'true'])).toEqual(['any', { from: 80, to: 80 }]);
    expect(agent(['--node', 'node-a', '--watch', '-', '--exit-at-eof', '--enable-l7-proxy=no'], '').status).not.toBe(0);
  });
  it('2050. --enable-ipv4/--enable-ipv6 set the stack mode: one world label on CIDR identities and the ipcache\'s world identity, by IsDualStack()', () => {
    const cidr = { type: 'ADDED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p', namespace: 'shop', resourceVersion: '20' }, spec: { endpointSelector: { matchLabels: { app: 'a' } }, ingress: [{ fromCIDR: ['203.0.113.0/24'] }] } } };
    const input = [ns, pod('a', 'node-a', 2), cidr].map((x) => JSON.stringify(x)).join('');
    type Out = { maps: { entries: { direction: string; labels: string[] }[] }[]; ipcache: Record<string, number> };
    const run = (flags: string[]): Out => {
      const r = agent(['--node', 'node-a', '--watch', '-', '--exit-at-eof', '--json', '--allow-localhost', 'policy', ...flags], input);
      expect(r.status, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as Out;
    };
    const view = (o: Out) => ({ labels: o.maps[0]?.entries.filter((e) => e.direction === 'ingress').map((e) => e.labels), v4: o.ipcache['0.0.0.0/0'], v6: o.ipcache['::/0'] });
    // Default: Cilium's default install (Helm ipv4.enabled true, ipv6.enabled false), single-stack.
    const single = { labels: [['cidr:203.0.113.0/24', 'reserved:world']], v4: 2, v6: 2 };
    expect(view(run([]))).toEqual(single);
    expect(view(run(['--enable-ipv4=false', '--enable-ipv6=true']))).toEqual(single);
    expect(view(run(['--enable-ipv6=true']))).toEqual({ labels: [['cidr:203.0.113.0/24', 'reserved:world-ipv4']], v4: 9, v6: 10 });
    const none = agent(['--node', 'node-a', '--watch', '-', '--exit-at-eof', '--enable-ipv4=false', '--enable-ipv6=false'], '');
    expect(none.status).toBe(2);
    expect(none.stderr).toMatch(/one address family must be enabled/);
    // 2103: a pod of both families under the single-stack default is warned about, once; not when dual-stack.
    const dualPod = { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'd', namespace: 'shop', resourceVersion: '4', labels: { app: 'd' } }, spec: { nodeName: 'node-b', containers: [{ name: 'c', image: 'i' }] }, status: { phase: 'Running', podIP: '10.0.0.4', podIPs: [{ ip: '10.0.0.4' }, { ip: 'fd00::4' }] } } };
    const warned = (flags: string[]): number => {
      const r = agent(['--node', 'node-a', '--watch', '-', '--exit-at-eof', ...flags], [ns, pod('a', 'node-a', 2), dualPod].map((x) => JSON.stringify(x)).join(''));
      expect(r.status, r.stderr).toBe(0);
      return r.stderr.split('\n').filter((l) => l.includes('runs single-stack')).length;
    };
    expect(warned([])).toBe(1);
    expect(warned(['--enable-ipv6=true'])).toBe(0);
  });
  it('exits 2 naming the stream that cannot be read', () => {
    const missing = agent(['--node', 'n', '--watch', join(dir, 'missing.json'), '--exit-at-eof']);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/missing\.json.*watch stream failed/);
    const cut = agent(['--node', 'n', '--watch', '-', '--exit-at-eof'], '{"type":"ADDED"');
    expect(cut.status).toBe(2);
    expect(cut.stderr).toMatch(/<stdin>#1: the stream ended inside a JSON value/);
  });
  /**
   * 1341: a recorded stream that ends after a watch ERROR (kubectl exits on one), or after a page
   * of a paged List without the rest, ends without the relist that recovers what the gap lost:
   * /healthz says so (503) on a running agent, and on de39223 `--exit-at-eof` exited 0 as if the
   * maps held the streams' state.
   */
  it('1341. --exit-at-eof exits 2 naming a stream that ended awaiting a relist (after an ERROR, inside a paged List)', () => {
    const gone = { type: 'ERROR', object: { apiVersion: 'v1', kind: 'Status', status: 'Failure', reason: 'Expired', code: 410 } };
    const page = { kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: '20', continue: 'next' }, items: [pod('a', 'node-a', 2).object] };
    const afterError = file('error.json', [pod('a', 'node-a', 2), gone]);
    const r = agent(['--node', 'node-a', '--watch', file('ns1.json', [ns]), '--watch', afterError, '--exit-at-eof']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`error: ${afterError}: ended after a watch ERROR`);
    // What the stream gave before its ERROR may be part of its objects: no transaction ran (1753).
    expect(r.stdout).toMatch(/^0 endpoints, 0 map entries, 0 transactions/);
    const cut = file('cut.json', [pod('a', 'node-a', 2), page]);
    expect(agent(['--node', 'node-a', '--watch', file('ns2.json', [ns]), '--watch', cut, '--exit-at-eof']).status).toBe(2);
    // Relisted after the ERROR: done.
    const relisted = file('relisted.json', [pod('a', 'node-a', 2), gone, { ...page, metadata: { resourceVersion: '20' } }]);
    expect(agent(['--node', 'node-a', '--watch', file('ns3.json', [ns]), '--watch', relisted, '--exit-at-eof']).status).toBe(0);
  });
  it('requires --node and --watch', () => {
    expect(agent(['--watch', '-']).status).toBe(2);
    expect(agent(['--node', 'n']).status).toBe(2);
  });
});
