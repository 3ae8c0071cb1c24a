import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { cli, tmpFile } from './cli-helpers.js';

// Round 21u (docs/attack-findings-21u.md): a Kubernetes/Cilium user's first runs of distill on real manifests.

const STAR_WARS = 'fixtures/scenarios/cilium-docs/l7-star-wars.yaml';

describe('1600. a mistyped required option is named as unknown, with a suggestion', () => {
  it('reach --scenaro FILE: unknown option, did you mean --scenario', () => {
    const r = cli('reach', '--scenaro', STAR_WARS);
    expect(r.code).toBe(2);
    expect(r.err).toBe("error: unknown option '--scenaro'\n(Did you mean --scenario?)\n(run 'distill reach --help' for usage)\n");
  });
  it('trace --form POD: unknown option, did you mean --from', () => {
    const r = cli('trace', '--scenario', STAR_WARS, '--form', 'default/xwing', '--to', 'default/deathstar', '--port', '80/TCP');
    expect(r.code).toBe(2);
    expect(r.err).toBe("error: unknown option '--form'\n(Did you mean --from?)\n(run 'distill trace --help' for usage)\n");
  });
  it('a required option really missing (and nothing unknown) is still reported as missing', () => {
    const r = cli('trace', '--scenario', STAR_WARS, '--to', 'default/deathstar', '--port', '80/TCP');
    expect(r.code).toBe(2);
    expect(r.err).toBe("error: required option '--from <peer>' not specified\n(run 'distill trace --help' for usage)\n");
  });
});

describe('1601. validate reports every refused document of a file, as kubectl apply -f does', () => {
  // Three mistakes in one file (policyTypes "egress", a CNP port above 65535, a List item with the same) and two good policies.
  const FILE = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np1, namespace: shop}
spec: {podSelector: {}, policyTypes: [Ingress, egress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: good, namespace: shop}
spec: {podSelector: {}}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: cnp1, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress: [{toPorts: [{ports: [{port: "70000", protocol: TCP}]}]}]
---
apiVersion: v1
kind: List
items:
  - {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: ok-in-list, namespace: shop}, spec: {podSelector: {}}}
  - {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: bad-in-list, namespace: shop}, spec: {podSelector: {}, ingress: [{ports: [{port: 70000}]}]}}
`;
  it('text: one error line per refused document, exit 2', () => {
    const f = tmpFile('app.yaml', FILE);
    const r = cli('validate', f);
    expect(r.code).toBe(2);
    const lines = r.err.trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toBe(`error: ${f}#1 (NetworkPolicy shop/np1) spec.policyTypes[1]: "egress" is not one of: Ingress, Egress`);
    expect(lines[1]).toMatch(new RegExp(`^error: ${f}#3 \\(CiliumNetworkPolicy shop/cnp1\\) spec\\.ingress\\[0\\]\\.toPorts\\[0\\]\\.ports\\[0\\]\\.port: `));
    expect(lines[2]).toBe(`error: ${f}#4.items[1] (NetworkPolicy shop/bad-in-list) spec.ingress[0].ports[0].port: 70000 is above 65535`);
  });
  it('json: error stays the first, errors lists them all', () => {
    const f = tmpFile('app.yaml', FILE);
    const r = cli('validate', '-o', 'json', f);
    expect(r.code).toBe(2);
    const [res] = JSON.parse(r.out) as { valid: boolean; error: string; errors: string[] }[];
    expect(res!.valid).toBe(false);
    expect(res!.errors).toHaveLength(3);
    expect(res!.error).toBe(res!.errors[0]);
  });
  it('a YAML syntax error still stops its file; the next file is read', () => {
    const bad = tmpFile('bad.yaml', 'kind: [\n');
    const good = tmpFile('good.yaml', 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a}\nspec: {podSelector: {}}\n');
    const r = cli('validate', bad, good);
    expect(r.code).toBe(2);
    expect(r.err.trim().split('\n').filter((l) => l.startsWith('error: '))).toHaveLength(1);
    expect(r.out).toMatch(new RegExp(`${good}: 1 policies, \\d+ rules, valid`));
  });
});

describe('1602. matchName with a wildcard points to matchPattern', () => {
  it('toFQDNs matchName "*.example.com": refused, and the message says where a wildcard goes', () => {
    const f = tmpFile('fqdn.yaml', `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: to-fqdn, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: test-app}}
  egress: [{toFQDNs: [{matchName: "*.example.com"}]}]
`);
    const r = cli('validate', f);
    expect(r.code).toBe(2);
    expect(r.err).toContain('spec.egress[0].toFQDNs[0].matchName: "*.example.com" is not a valid DNS name');
    expect(r.err).toContain('a wildcard is written in matchPattern');
  });
});

describe('1603. docs/cli.md "JSON output" gives the shape of reach, verify, replay and agent --json', () => {
  const page = readFileSync('docs/cli.md', 'utf8');
  const section = page.slice(page.indexOf('## JSON output'), page.indexOf('## Usage errors'));
  /** The `{a, b?, c}` key lists of the bullet for `command`, in order. */
  const shapes = (command: string): string[][] => {
    const bullet = section.split('\n- ').find((b) => b.startsWith(`\`${command}\``)) ?? '';
    return [...bullet.matchAll(/\{([a-zA-Z0-9?, ]+)\}/g)].map((m) => m[1]!.split(',').map((k) => k.trim()));
  };
  /** Keys `obj` has agree with the documented list: every required one present, nothing undocumented. */
  const agrees = (documented: string[] | undefined, obj: object): void => {
    expect(documented, JSON.stringify(obj)).toBeDefined();
    const all = documented!.map((k) => k.replace(/\?$/, ''));
    expect(Object.keys(obj).filter((k) => !all.includes(k))).toEqual([]);
    expect(documented!.filter((k) => !k.endsWith('?') && !(k in obj))).toEqual([]);
  };
  it('reach --json: one object per probe result, not a document', () => {
    const lines = cli('reach', '--scenario', STAR_WARS, '--json').out.trim().split('\n');
    expect(lines.length).toBeGreaterThan(1);
    for (const l of lines) agrees(shapes('reach')[0], JSON.parse(l) as object);
  });
  it('verify --json: one summary object (the doc said one object per probe result)', () => {
    const r = cli('verify', '--scenario', STAR_WARS, '--json');
    expect(r.code).toBe(0);
    expect(r.out.trim().split('\n')).toHaveLength(1);
    agrees(shapes('verify')[0], JSON.parse(r.out) as object);
  });
  it('replay --json: the summary, latency per event type, cold start', () => {
    const r = cli('replay', 'fixtures/traces/small.jsonl', '--json');
    expect(r.code, r.err).toBe(0);
    const d = JSON.parse(r.out) as { latencyUs: Record<string, object>; coldStart: object };
    const [top, latency, cold] = shapes('replay');
    agrees(top, d);
    for (const stats of Object.values(d.latencyUs)) agrees(latency, stats);
    agrees(cold, d.coldStart);
  });
  it('agent --exit-at-eof --json: the summary with every local endpoint map', () => {
    const ev = (object: unknown): string => JSON.stringify({ type: 'ADDED', object });
    const stream = tmpFile('events.json', [
      ev({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } }),
      ev({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'a', namespace: 'shop', resourceVersion: '2', labels: { app: 'a' } }, spec: { nodeName: 'node-a', containers: [{ name: 'c' }] }, status: { phase: 'Running', podIP: '10.0.0.2' } }),
    ].join('\n'));
    const r = spawnSync('node', ['dist/cli/main.js', 'agent', '--node', 'node-a', '--watch', stream, '--exit-at-eof', '--json'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const d = JSON.parse(r.stdout) as { maps: object[] };
    agrees(shapes('agent')[0], d);
    expect(d.maps).toHaveLength(1);
    agrees(shapes('maps dump')[0], d.maps[0]!);
  }, 60_000);
});

describe('1604. the agent says when a watch stream ends (without --exit-at-eof it keeps serving a state that no longer follows the cluster)', () => {
  it('a stream that ends: one warning naming it (was: silence)', async () => {
    const ev = JSON.stringify({ type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } } });
    const stream = tmpFile('ns.json', `${ev}\n`);
    const child = spawn('node', ['dist/cli/main.js', 'agent', '--node', 'node-a', '--watch', stream], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    const warned = await new Promise<boolean>((resolve) => {
      const give = setTimeout(() => resolve(false), 30_000); // the agent runs until stopped: on the base nothing ever comes
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString('utf8');
        if (stderr.includes('watch stream ended')) clearTimeout(give), resolve(true);
      });
      child.on('exit', () => (clearTimeout(give), resolve(false)));
    });
    child.kill('SIGTERM');
    expect(warned, stderr).toBe(true);
    const line = JSON.parse(stderr.split('\n').find((l) => l.includes('watch stream ended'))!) as { level: number; stream: string };
    expect(line).toMatchObject({ level: 40, stream });
  }, 60_000);
});

describe('1606. trace on an L7 DROPPED shows the L7 rules the proxy applied', () => {
  it('Cilium\'s l7-policy.yaml: GET /private is dropped, and the rule it missed (GET /public) is printed', () => {
    const scenario = tmpFile('app.yaml', `namespaces: [{name: default}]
pods:
  - {name: default/web, labels: {id: web-server}}
  - {name: default/good, labels: {id: goodclient}}
`);
    // cilium/cilium examples/policies/getting-started/l7-policy.yaml, as published (no namespace: kubectl's default).
    const policy = tmpFile('l7-policy.yaml', `apiVersion: "cilium.io/v2"
kind: CiliumNetworkPolicy
metadata:
  name: "l7-rule"
spec:
  endpointSelector:
    matchLabels:
      id: web-server
  ingress:
  - fromEndpoints:
    - matchLabels:
        id: goodclient
    toPorts:
    - ports:
      - port: '8181'
        protocol: TCP
      rules:
        http:
        - method: GET
          path: "/public"
`);
    const args = ['trace', '--scenario', scenario, '-f', policy, '--from', 'default/good', '--to', 'default/web', '--port', '8181/TCP', '--http-path', '/private'];
    const text = cli(...args);
    expect(text.code, text.err).toBe(0);
    expect(text.out).toContain('http proxy: DROPPED (no rule matches the request)\n  http rules for this peer and port: {"method":"GET","path":"/public"}\n');
    const json = JSON.parse(cli(...args, '-o', 'json').out) as { sides: { l7?: { allowAll: boolean; rules: unknown[] } }[] };
    expect(json.sides[1]!.l7).toMatchObject({ allowAll: false, rules: [{ method: 'GET', path: '/public' }] });
  });
});
