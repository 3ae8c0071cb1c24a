import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { cli, tmpFile } from './cli-helpers.js';

// Round 27u (docs/attack-findings-27u.md): an operator's view of the agent's logs and of why a flow
// is allowed when the policies come from several manifest files.

const CLI = 'dist/cli/main.js';

const NS = { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default', resourceVersion: '1', labels: { 'kubernetes.io/metadata.name': 'default' } } } };
const POD = {
  type: 'ADDED',
  object: {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'web', namespace: 'default', resourceVersion: '2', labels: { app: 'web' } },
    spec: { nodeName: 'node-a', containers: [{ name: 'c' }] },
    status: { phase: 'Running', podIP: '10.0.0.1' },
  },
};

describe('2300. with --metrics-addr every line the agent logs on stderr is JSON', () => {
  // README "As a node agent": "Logs are JSON lines (pino) on stderr". The address line was plain text,
  // the first line a log shipper saw.
  it('the metrics address is a JSON log line (msg keeps "metrics on URL"), as are the lines around it', async () => {
    const child = spawn('node', [CLI, 'agent', '--node', 'node-a', '--watch', '-', '--metrics-addr', '127.0.0.1:0', '--no-warm-up'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const listening = new Promise<void>((resolve) => {
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (/metrics on http:\/\/127\.0\.0\.1:\d+\/metrics/.test(stderr) && /maps reconciled/.test(stderr)) resolve();
      });
    });
    child.stdin.write(`${JSON.stringify(NS)}\n${JSON.stringify(POD)}\n`);
    await Promise.race([listening, exited]);
    child.kill('SIGTERM');
    await exited;
    const lines = stderr.split('\n').filter((l) => l.trim() !== '');
    expect(lines.length, stderr).toBeGreaterThanOrEqual(2);
    for (const l of lines) expect(() => JSON.parse(l) as unknown, l).not.toThrow();
    const addr = lines.map((l) => JSON.parse(l) as { msg?: string; url?: string; level?: number }).find((o) => o.msg?.startsWith('metrics on') === true);
    expect(addr?.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    expect(addr?.level).toBe(30);
  }, 30_000);
});

const SCENARIO = `namespaces:
  - {name: default}
  - {name: shop, labels: {team: shop}}
pods:
  - {name: default/frontend, labels: {role: frontend}, ip: 10.0.1.1}
  - {name: default/backend, labels: {role: backend}, ip: 10.0.1.2}
  - {name: shop/web, labels: {app: web}, ip: 10.0.2.1}
  - {name: shop/db, labels: {app: db}, ip: 10.0.2.2, ports: [{name: pg, port: 5432, protocol: TCP}]}
steps:
  - probes: [{port: 5432}]
`;

// Cilium's examples/policies/l3/egress-deny/egress-deny.yaml (with a namespace), CRLF line endings.
const EGRESS_DENY = [
  'apiVersion: "cilium.io/v2"', 'kind: CiliumNetworkPolicy', 'metadata:', '  name: "deny-egress-example"', '  namespace: default', 'spec:',
  '  endpointSelector:', '    matchLabels:', '      role: frontend', '  egress:', '  - toEntities:', '    - all', '  egressDeny:',
  '  - toEndpoints:', '    - matchLabels:', '        role: backend', '',
].join('\r\n');

// A NetworkPolicy with a named port (kubectl get -o yaml: managedFields, status), then an Admin-tier
// ClusterNetworkPolicy deny, in one multi-document file.
const SHOP = `# shop
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: db-from-web
  namespace: shop
  managedFields: [{manager: kubectl, operation: Update}]
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: pg}]
status: {}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: admin-block}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {team: shop}}}
  ingress:
  - name: no-default-to-db
    action: Deny
    from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: default}}}]
    protocols: [{tcp: {destinationPort: {number: 5432}}}]
`;

describe('2301. trace/explain -f names the file and document of each policy its reasons name', () => {
  // With policies from several -f files the reasons said `ClusterNetworkPolicy/admin-block spec.ingress[0]`
  // and nothing said which file (or which document of a multi-document file) holds it.
  const args = (s: string, a: string, b: string): string[] => ['--scenario', s, '-f', a, '-f', b, '--from', 'default/frontend', '--to', 'shop/db', '--port', '5432/TCP'];
  it('text: a "read from (-f)" line with file#N for every policy named, in the order named', () => {
    const s = tmpFile('s.yaml', SCENARIO);
    const a = tmpFile('egress-deny.yaml', EGRESS_DENY);
    const b = tmpFile('shop.yaml', SHOP);
    const r = cli('explain', ...args(s, a, b));
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^default\/frontend -> shop\/db 5432\/TCP: DROPPED$/m);
    expect(r.out).toContain('denied by: ClusterNetworkPolicy/admin-block spec.ingress[0]');
    expect(r.out).toMatch(new RegExp(`^read from \\(-f\\): CiliumNetworkPolicy/default/deny-egress-example ${a}#1; NetworkPolicy/shop/db-from-web ${b}#1; ClusterNetworkPolicy/admin-block ${b}#2$`, 'm'));
  });
  it('-o json: sources [{policy, source}], the other fields as before; without -f no sources field', () => {
    const s = tmpFile('s.yaml', SCENARIO);
    const a = tmpFile('egress-deny.yaml', EGRESS_DENY);
    const b = tmpFile('shop.yaml', SHOP);
    const j = JSON.parse(cli('trace', ...args(s, a, b), '-o', 'json').out) as { verdict: string; sides: { deniedBy: string[] }[]; sources: unknown };
    expect(j.verdict).toBe('DROPPED');
    expect(j.sides[1]?.deniedBy).toEqual(['ClusterNetworkPolicy/admin-block spec.ingress[0]']);
    expect(j.sources).toEqual([
      { policy: 'CiliumNetworkPolicy/default/deny-egress-example', source: `${a}#1` },
      { policy: 'NetworkPolicy/shop/db-from-web', source: `${b}#1` },
      { policy: 'ClusterNetworkPolicy/admin-block', source: `${b}#2` },
    ]);
    const plain = JSON.parse(cli('trace', '--scenario', s, '--from', 'shop/web', '--to', 'shop/db', '--port', '5432/TCP', '-o', 'json').out) as Record<string, unknown>;
    expect('sources' in plain).toBe(false);
  });
  it('an item of a kind: List file is named by its place in the List', () => {
    const s = tmpFile('s.yaml', SCENARIO);
    const list = `apiVersion: v1\nkind: List\nitems:\n- ${SHOP.split('---')[0]!.replace(/^# shop\n/, '').split('\n').join('\n  ').trimEnd()}\n`;
    const f = tmpFile('list.yaml', list);
    const r = cli('trace', '--scenario', s, '-f', f, '--from', 'shop/web', '--to', 'shop/db', '--port', '5432/TCP');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('allowed by: NetworkPolicy/shop/db-from-web spec.ingress[0]');
    expect(r.out).toMatch(new RegExp(`^read from \\(-f\\): NetworkPolicy/shop/db-from-web ${f}#1\\.items\\[0\\]$`, 'm'));
  });
});

describe('2302. the package: parseManifestFile takes parseManifest\'s options', () => {
  // docs/embedding.md: parseManifest(doc, source, options?) reads cidrGroupRef peers with { cidrGroups: true },
  // but parseManifestFile (the way to read a file as kubectl does) had no options: such a file was refused.
  const CCNP = `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: web-from-corp}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromCIDRSet: [{cidrGroupRef: corp-nets}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
`;
  it('with { cidrGroups: true } a cidrGroupRef policy is read; without, refused naming file#N and field', async () => {
    const { parseManifestFile, ManifestError } = await import('../src/index.js');
    const file = `${SHOP}---\n${CCNP}`;
    expect(() => parseManifestFile(file, 'shop.yaml')).toThrow(ManifestError);
    expect(() => parseManifestFile(file, 'shop.yaml')).toThrow(/shop\.yaml#3 spec\.ingress\[0\]\.fromCIDRSet\[0\]\.cidrGroupRef/);
    const read = parseManifestFile(file, 'shop.yaml', { cidrGroups: true });
    expect(read.map((p) => `${p.ref.kind}/${p.ref.name}`)).toEqual(['NetworkPolicy/db-from-web', 'ClusterNetworkPolicy/admin-block', 'CiliumClusterwideNetworkPolicy/web-from-corp']);
  });
});

/** The agent on one namespace event, --exit-at-eof, with `args` and `env` added. */
function agentRun(args: readonly string[], env: Record<string, string> = {}): { code: number | null; err: string } {
  const r = spawnSync('node', [CLI, 'agent', '--node', 'node-a', '--watch', '-', '--exit-at-eof', '--no-warm-up', ...args], { encoding: 'utf8', input: `${JSON.stringify(NS)}\n`, env: { ...process.env, ...env } });
  return { code: r.status, err: r.stderr };
}

describe('2303. --metrics-addr errors name the option and the address', () => {
  it('a port above 65535 (was Node\'s "options.port should be >= 0 and < 65536")', () => {
    const r = agentRun(['--metrics-addr', '127.0.0.1:99999']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^error: --metrics-addr: "127\.0\.0\.1:99999": port 99999 is above 65535$/m);
  });
  it('an address in use (was "listen EADDRINUSE: ..." alone)', async () => {
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const port = (busy.address() as { port: number }).port;
    try {
      const r = agentRun(['--metrics-addr', `127.0.0.1:${port}`]);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(new RegExp(`^error: --metrics-addr: "127\\.0\\.0\\.1:${port}": listen EADDRINUSE`, 'm'));
    } finally {
      busy.close();
    }
  });
});

describe('2304. DISTILL_LOG_LEVEL is checked and named', () => {
  it('an unknown level says which variable and the levels (was "default level:verbose must be included in custom levels")', () => {
    const r = agentRun([], { DISTILL_LOG_LEVEL: 'verbose' });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^error: DISTILL_LOG_LEVEL: "verbose" is not a log level \(one of: trace, debug, info, warn, error, fatal, silent\)$/m);
  });
  it('a known level in capitals is that level (warn: no info lines)', () => {
    const r = agentRun([], { DISTILL_LOG_LEVEL: 'WARN' });
    expect(r.code, r.err).toBe(0);
    expect(r.err).not.toMatch(/"level":30/);
  });
});

describe('2305. trace/explain names a ClusterNetworkPolicy rule as reach --explain does: tier, priority, name, action', () => {
  // reach --explain said `Admin tier: ClusterNetworkPolicy/admin-block priority 10 rule "no-default-to-db" (spec.ingress[0]): Deny`;
  // trace said only `ClusterNetworkPolicy/admin-block spec.ingress[0]`, not the rule's name the operator wrote.
  const run = (...extra: string[]): ReturnType<typeof cli> => {
    const s = tmpFile('s.yaml', SCENARIO);
    const b = tmpFile('shop.yaml', SHOP);
    return cli('explain', '--scenario', s, '-f', b, '--from', 'default/frontend', '--to', 'shop/db', '--port', '5432/TCP', ...extra);
  };
  it('text: the deciding rule with its name', () => {
    const r = run();
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^ {2}ClusterNetworkPolicy\/admin-block spec\.ingress\[0\]: Admin tier, priority 10, rule "no-default-to-db": Deny$/m);
    const reach = cli('reach', '--scenario', tmpFile('full.yaml', `${SCENARIO.replace('steps:\n  - probes: [{port: 5432}]\n', '')}policies:\n${SHOP.split('---').map((d) => `- ${d.replace(/^# shop\n/, '').trim().split('\n').join('\n  ')}`).join('\n')}\nsteps:\n  - probes: [{from: default/frontend, to: shop/db, port: 5432}]\n`), '--explain');
    expect(reach.out, reach.err).toContain('denied by Admin tier: ClusterNetworkPolicy/admin-block priority 10 rule "no-default-to-db" (spec.ingress[0]): Deny');
  });
  it('-o json: tierRules on the side, the reasons unchanged; a side without tier rules has no tierRules', () => {
    const j = JSON.parse(run('-o', 'json').out) as { sides: { deniedBy: string[]; tierRules?: unknown }[] };
    expect(j.sides[1]?.deniedBy).toEqual(['ClusterNetworkPolicy/admin-block spec.ingress[0]']);
    expect(j.sides[1]?.tierRules).toEqual([{ reason: 'ClusterNetworkPolicy/admin-block spec.ingress[0]', tier: 'Admin', priority: 10, rule: 'no-default-to-db', action: 'Deny' }]);
    expect(j.sides[0] !== undefined && 'tierRules' in j.sides[0]).toBe(false);
  });
});

describe('2307. the outcome counters have their series from the start', () => {
  // README: `curl …/metrics | grep distill_policy_change_total`; before the first policy event prom-client
  // printed only the HELP and TYPE lines, so an alert on {outcome="failure"} had no series.
  it('InstrumentedEngine: policy_change_total and endpoint_regenerations_total at 0 for success and failure before any transaction', async () => {
    const { Engine, InstrumentedEngine } = await import('../src/index.js');
    const { Registry } = await import('prom-client');
    const registry = new Registry();
    new InstrumentedEngine(new Engine(), { registry });
    const text = await registry.metrics();
    for (const name of ['distill_policy_change_total', 'distill_endpoint_regenerations_total']) {
      for (const outcome of ['success', 'failure']) expect(text).toMatch(new RegExp(`^${name}\\{outcome="${outcome}"\\} 0$`, 'm'));
    }
  });
});
