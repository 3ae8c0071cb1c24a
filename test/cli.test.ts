import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bpfUnavailableReason } from '../src/backend/bpf.js';

// End to end through the built CLI (npm test builds dist/ first).
const CLI = join(process.cwd(), 'dist/cli/main.js');
/** The scenario corpus the engine runs: network-policy-api waits for tier support, fqdn (toFQDNs) for DNS-based peers. */
const ENGINE_CORPUS = ['fixtures/scenarios/k8s-e2e', 'fixtures/scenarios/cilium-docs'];
function distill(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
function tmpFile(name: string, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'distill-'));
  const f = join(dir, name);
  writeFileSync(f, text);
  return f;
}

describe('distill reach', () => {
  it('--json prints one object per probe result with the contract fields', () => {
    const r = distill('reach', '--scenario', 'fixtures/scenarios/k8s-e2e/default-deny-ingress-tcp.yaml', '--json');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(12);
    expect(Object.keys(lines[0]!)).toEqual(['step', 'probe', 'from', 'to', 'port', 'protocol', 'allowed', 'proxied']);
    expect(lines.find((l) => l.from === 'y/a' && l.to === 'x/b')).toMatchObject({ step: 0, probe: 0, port: 80, protocol: 'TCP', allowed: false, proxied: false });
    expect(lines.find((l) => l.from === 'x/a' && l.to === 'y/b')).toMatchObject({ allowed: true });
  });
  it('prints a truth table without --json, and reports proxied flows', () => {
    const r = distill('reach', '--scenario', 'fixtures/scenarios/cilium-docs/l7-http.yaml');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/default\/frontend\s+P/);
    expect(r.stdout).toMatch(/default\/other\s+X/);
  });
  it('L7 probes: the JSON keeps its fields and carries the proxies\' verdict; --explain says which proxy judged', () => {
    const r = distill('reach', '--scenario', 'fixtures/scenarios/cilium-docs/l7-star-wars.yaml', '--json', '--explain');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown> & { explain: { ingress: { l7?: unknown } } });
    const landing = lines.find((l) => l.probe === 0 && l.from === 'default/tiefighter')!;
    const exhaust = lines.find((l) => l.probe === 1 && l.from === 'default/tiefighter')!;
    expect(Object.keys(landing).filter((k) => k !== 'explain')).toEqual(['step', 'probe', 'from', 'to', 'port', 'protocol', 'allowed', 'proxied']);
    expect(landing).toMatchObject({ allowed: true, proxied: true });
    expect(exhaust).toMatchObject({ allowed: false, proxied: true });
    expect(exhaust.explain.ingress.l7).toEqual({ parser: 'http', allowed: false, allowedBy: [] });
    expect(landing.explain.ingress.l7).toEqual({ parser: 'http', allowed: true, allowedBy: ['CiliumNetworkPolicy/default/rule1 spec.ingress[0]'] });
    const text = distill('reach', '--scenario', 'fixtures/scenarios/cilium-docs/l7-star-wars.yaml', '--explain');
    expect(text.stdout).toContain('step 0, probe 1: 80/TCP PUT /v1/exhaust-port');
    expect(text.stdout).toContain('redirected to the http proxy by CiliumNetworkPolicy/default/rule1 spec.ingress[0], which denied the request (no rule matches it)');
    const bad = distill('reach', '--scenario', tmpFile('s.yaml', 'pods: [{name: a/b}]\nsteps: [{probes: [{port: 80, kafka: {apiKey: nope}}]}]\n'));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('steps[0].probes[0].kafka.apiKey: "nope" is not a Kafka API key name');
  });
  it('--explain names the rule that decided', () => {
    const r = distill('reach', '--scenario', 'fixtures/scenarios/cilium-docs/deny.yaml', '--json', '--explain');
    const line = r.stdout.split('\n').map((l) => JSON.parse(l || '{}') as { from?: string; to?: string; step?: number; explain?: { ingress?: { deniedBy: string[] } } })
      .find((l) => l.step === 0 && l.from === 'world-a');
    expect(line?.explain?.ingress?.deniedBy).toEqual(['CiliumNetworkPolicy/default/allow-all-but-world spec.ingressDeny[0]']);
  });
  it('the engine (default) and --naive print the same results over the whole corpus', () => {
    const viaEngine = distill('reach', '--scenario', ...ENGINE_CORPUS, '--json');
    const viaNaive = distill('reach', '--scenario', ...ENGINE_CORPUS, '--json', '--naive');
    expect(viaEngine.code).toBe(0);
    expect(viaNaive.code).toBe(0);
    expect(viaEngine.stdout.trim().split('\n').length).toBeGreaterThan(700);
    expect(viaEngine.stdout).toBe(viaNaive.stdout);
  });
  it('toFQDNs scenarios: the engine and --naive print the same results', () => {
    const viaEngine = distill('reach', '--scenario', 'fixtures/scenarios/fqdn', '--json');
    expect(viaEngine.code).toBe(0);
    const viaNaive = distill('reach', '--scenario', 'fixtures/scenarios/fqdn', '--json', '--naive');
    expect(viaNaive.code).toBe(0);
    expect(viaNaive.stdout).toContain('"to":"192.0.2.10"');
    expect(viaEngine.stdout).toBe(viaNaive.stdout);
  });
  it('exits 1 and says which pair differs when an expectation fails', () => {
    const f = tmpFile('s.yaml', `
pods: [{name: x/a, labels: {pod: a}}, {name: x/b, labels: {pod: b}}]
policies:
  - {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: deny, namespace: x}, spec: {podSelector: {}}}
steps:
  - probes: [{port: 80, protocol: TCP}]
    expect: [{probe: 0, deny: ["x/a->x/b"]}]
`);
    const r = distill('reach', '--scenario', f);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('x/b->x/a: expected allow, got deny');
  });
  it('a bad manifest exits 2 with the precise error and no stack trace', () => {
    const f = tmpFile('bad.yaml', `
pods: [{name: x/a}]
policies:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: p, namespace: x}
    spec:
      endpointSelector: {}
      ingress: [{toPorts: [{ports: [{port: "80", endPort: 70000}]}]}]
steps: [{probes: [{port: 80}]}]
`);
    const r = distill('reach', '--scenario', f);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`error: ${f}#policies[0] spec.ingress[0].toPorts[0].ports[0].endPort: 70000 is above 65535\n`);
  });
  it('a probe naming an unknown pod exits 2', () => {
    const f = tmpFile('s.yaml', 'pods: [{name: x/a}]\nsteps: [{probes: [{from: x/a, to: x/nope, port: 80}]}]\n');
    const r = distill('reach', '--scenario', f);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('steps[0].probes[0].to: no pod or external named "x/nope"');
    expect(r.stderr).not.toContain('    at ');
  });
  it('a missing file exits 2', () => {
    const r = distill('reach', '--scenario', 'does-not-exist.yaml');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error: .*does-not-exist\.yaml/);
  });
});

describe('distill validate', () => {
  it('accepts valid multi-document files and rejects bad ones naming the document', () => {
    const good = tmpFile('good.yaml', '---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a, namespace: x}\nspec: {podSelector: {}}\n---\n');
    expect(distill('validate', good)).toMatchObject({ code: 0 });
    const bad = tmpFile('bad.yaml', 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a}\nspec: {podSelector: {}}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: b}\nspec: {podSelector: {}, egress: [{ports: [{protocol: ICMP}]}]}\n');
    const r = distill('validate', bad);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`error: ${bad}#2 (NetworkPolicy b) spec.egress[0].ports[0].protocol: "ICMP" is not one of: TCP, UDP, SCTP\n`);
  });
});

describe('distill verify', () => {
  it('runs every scenario through the engine and the oracle and reports agreement', () => {
    const r = distill('verify', '--scenario', ...ENGINE_CORPUS, '--json');
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout) as { scenarios: number; results: number; disagreements: number };
    expect(summary.scenarios).toBeGreaterThanOrEqual(57);
    expect(summary.results).toBeGreaterThan(700);
    expect(summary.disagreements).toBe(0);
    expect(distill('verify', '--scenario', 'fixtures/scenarios/cilium-docs/deny.yaml').stdout).toMatch(/^1 scenarios, \d+ results, engine and naive evaluator agree on all/);
  });
  it('a bad scenario exits 2', () => {
    const f = tmpFile('bad.yaml', 'setup: [{op: bogus}]\n');
    const r = distill('verify', '--scenario', f);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error: /);
  });
});

describe('distill maps dump and --backend', () => {
  const bpfReason = bpfUnavailableReason();
  if (bpfReason && process.env.DISTILL_REQUIRE_BPF === '1') throw new Error(`DISTILL_REQUIRE_BPF=1 but ${bpfReason}`);
  const withBpf = bpfReason ? it.skip : it;
  const pinDir = `/sys/fs/bpf/distill-cli-test-${process.pid}`;

  it('prints an endpoint map in readable form, and as JSON', () => {
    const r = distill('maps', 'dump', '--scenario', 'fixtures/scenarios/cilium-docs/l4.yaml', '--endpoint', 'default/backend');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^policy map of default\/backend: 4 \/ 16384 entries \(0.02% full\), memory backend/);
    expect(r.stdout).toMatch(/Allow\s+Ingress\s+k8s:io.kubernetes.pod.namespace=default,k8s:role=frontend\s+80\/TCP\s+NONE\s+FORWARDED/);
    const j = JSON.parse(distill('maps', 'dump', '--scenario', 'fixtures/scenarios/cilium-docs/l4.yaml', '--endpoint', 'default/backend', '--json').stdout) as { entries: Record<string, unknown>[] };
    expect(j.entries).toContainEqual(expect.objectContaining({ direction: 'egress', protocol: 'any', ports: 'any', verdict: 'allow', identity: 0, labels: [] }));
    expect(j.entries).toContainEqual(expect.objectContaining({ direction: 'ingress', protocol: 'TCP', ports: { from: 80, to: 80 }, verdict: 'allow' }));
    // allow-localhost: the local host's ingress entry on every port.
    expect(j.entries).toContainEqual(expect.objectContaining({ direction: 'ingress', protocol: 'any', ports: 'any', verdict: 'allow', identity: 1 }));
  });
  it('shows what the L7 proxies are told, in text and JSON', () => {
    const r = distill('maps', 'dump', '--scenario', 'fixtures/scenarios/cilium-docs/l7-kafka.yaml', '--endpoint', 'default/kafka');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('ingress TCP/9092 -> kafka proxy on port 10000');
    expect(r.stdout).toMatch(/\{"role":"consume","topic":"empire-announce"\}\n\s+for \d+ k8s:app=empire-outpost/);
    const j = JSON.parse(distill('maps', 'dump', '--scenario', 'fixtures/scenarios/cilium-docs/l7-kafka.yaml', '--endpoint', 'default/kafka', '--json').stdout) as { l7: Record<string, unknown>[] };
    expect(j.l7).toHaveLength(4); // 3 rows of the rules, and the local host's allow-all row (allow-localhost)
    expect(j.l7[0]).toMatchObject({ direction: 'ingress', protocol: 'TCP', port: 9092, parser: 'kafka', proxyPort: 10000, peer: 1, allowAll: true });
    expect(j.l7[1]).toMatchObject({ direction: 'ingress', protocol: 'TCP', port: 9092, parser: 'kafka', proxyPort: 10000, allowAll: false });
  });
  it('an unknown endpoint exits 2 and lists the endpoints', () => {
    const r = distill('maps', 'dump', '--scenario', 'fixtures/scenarios/cilium-docs/l4.yaml', '--endpoint', 'default/nope');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no local endpoint "default\/nope" \(endpoints: default\/backend/);
  });
  withBpf('reach --backend bpf answers from real kernel maps exactly as the memory backend does', () => {
    try {
      kernelAgreesWithMemory();
    } finally {
      spawnSync('rm', ['-rf', pinDir]); // also when an assertion fails: no pin dir left behind
    }
  });
  function kernelAgreesWithMemory(): void {
    const viaKernel = distill('reach', '--scenario', ...ENGINE_CORPUS, '--json', '--backend', 'bpf', '--pin-dir', pinDir);
    const viaMemory = distill('reach', '--scenario', ...ENGINE_CORPUS, '--json', '--backend', 'memory');
    expect(viaKernel.code).toBe(0);
    expect(viaKernel.stdout).toBe(viaMemory.stdout);
    const dump = distill('maps', 'dump', '--scenario', 'fixtures/scenarios/cilium-docs/port-ranges.yaml', '--endpoint', 'default/backend', '--backend', 'bpf', '--pin-dir', pinDir, '--json');
    expect(dump.code).toBe(0);
    expect((JSON.parse(dump.stdout) as { backend: string }).backend).toBe('bpf');
    // replay writes every change set to kernel maps (a refused write would exit non-zero).
    const kernelReplay = JSON.parse(distill('replay', 'fixtures/traces/small.jsonl', '--json', '--backend', 'bpf', '--pin-dir', pinDir).stdout) as { deltas: number; mapEntries: number };
    const memoryReplay = JSON.parse(distill('replay', 'fixtures/traces/small.jsonl', '--json').stdout) as { deltas: number; mapEntries: number };
    expect({ deltas: kernelReplay.deltas, mapEntries: kernelReplay.mapEntries }).toEqual({ deltas: memoryReplay.deltas, mapEntries: memoryReplay.mapEntries });
  }
});

describe('distill gen and replay', () => {
  it('gen writes a trace that replay reads; --json has the stable fields', () => {
    const g = distill('gen', '--profile', 'cilium-2019', '--seed', '5', '--scale', '0.02', '--churn', '30');
    expect(g.code).toBe(0);
    const f = tmpFile('t.jsonl', g.stdout);
    const r = distill('replay', f, '--json', '--verify-every', '5');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as Record<string, unknown>;
    for (const k of ['events', 'eventsPerSec', 'latencyUs', 'deltas', 'mapEntries', 'peakHeapBytes']) expect(j).toHaveProperty(k);
    for (const l of Object.values(j.latencyUs as Record<string, Record<string, number>>)) expect(Object.keys(l)).toEqual(['count', 'p50', 'p90', 'p99', 'max']);
    expect(j.verifications).toBe(6);
  });
  it('gen into a pipe closed early (`| head -1`) exits 0 without an EPIPE stack', () => {
    const r = spawnSync('bash', ['-o', 'pipefail', '-c', `"${process.execPath}" "${CLI}" gen --profile cilium-ci --seed 1 --scale 0.05 --churn 500 | head -1`], { encoding: 'utf8' });
    expect(r.stderr).not.toMatch(/EPIPE|Unhandled/);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^\{"distillTrace":1/);
  });
  it('the bundled trace replays (npm start), readable summary', () => {
    const r = distill('replay', 'fixtures/traces/small.jsonl');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^incremental replay of profile small: \d+ events/);
    expect(r.stdout).toMatch(/latency per churn event/);
  });
  it('a trace with a bad line exits 2 naming the line, and replays nothing', () => {
    const f = tmpFile('bad.jsonl', '{"distillTrace": 1}\n{"type": "upsertNamespace", "name": "a"}\n{"type": "deletePod", "namespace": "a"}\n');
    const r = distill('replay', f, '--json');
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/bad\.jsonl:3 name: /);
  });
  it('an unknown profile is refused', () => {
    const r = distill('gen', '--profile', 'huge');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Allowed choices are small, realistic, cilium-ci, cilium-2019, antrea-worst/);
  });
});

describe('distill (the bin) reading stdin', () => {
  const run = (args: string[], input: string) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', input });
  it('validate - reads the manifests from stdin, bounded by --max-input-bytes', () => {
    const manifest = '{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: a, namespace: x}, spec: {podSelector: {}}}\n';
    const ok = run(['validate', '-'], manifest);
    expect(ok.status).toBe(0);
    expect(ok.stdout).toBe('<stdin>: 1 policies, 0 rules, valid\n');
    const big = run(['validate', '-', '--max-input-bytes', '16'], manifest);
    expect(big.status).toBe(2);
    expect(big.stderr).toBe('error: <stdin>: larger than the input limit of 16 bytes (raise it with --max-input-bytes)\n');
    const bad = run(['verify', '--scenario', '-'], 'pods: [{name: nope}]\n');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('error: <stdin> pods[0].name: "nope" is not namespace/name');
  });
});

describe('ClusterNetworkPolicy through the CLI', () => {
  const NPA = 'fixtures/scenarios/network-policy-api';
  it('reach --naive --explain names the tier, policy, priority and rule that decided', () => {
    const r = distill('reach', '--naive', '--explain', '--scenario', `${NPA}/admin-tier-integration.yaml`);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('denied by Admin tier: ClusterNetworkPolicy/pass-example priority 10 rule "deny-all-ingress-from-slytherin" (spec.ingress[0]): Deny');
  });
  it('verify (engine) agrees with the oracle on a Baseline scenario', () => {
    const v = distill('verify', '--scenario', `${NPA}/baseline-tier-ingress-tcp.yaml`);
    expect(v.code).toBe(0);
    expect(v.stdout).toContain('engine and naive evaluator agree on all');
  });
  it('verify (engine) agrees with the oracle on an Admin scenario with Pass rules', () => {
    const v = distill('verify', '--scenario', `${NPA}/admin-tier-ingress-tcp.yaml`);
    expect(v.code).toBe(0);
    expect(v.stdout).toContain('engine and naive evaluator agree on all');
  });
  it('verify (engine) agrees with the oracle on networks peers (identity splits)', () => {
    const v = distill('verify', '--scenario', `${NPA}/admin-tier-egress-inline-cidr-peers.yaml`);
    expect(v.code).toBe(0);
    expect(v.stdout).toContain('engine and naive evaluator agree on all');
  });
  it('reach --explain (engine) names the tier, policy, priority and rule that decided; verify agrees', () => {
    const r = distill('reach', '--explain', '--scenario', 'fixtures/scenarios/tiers-engine/admin-accept-deny.yaml');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('ingress of gryffindor/harry: denied by Admin tier: ClusterNetworkPolicy/house-rules priority 3 rule "deny-slytherin-80" (spec.ingress[0]): Deny');
    const v = distill('verify', '--scenario', 'fixtures/scenarios/tiers-engine');
    expect(v.code).toBe(0);
    expect(v.stdout).toContain('engine and naive evaluator agree on all');
  });
  it('reach --explain (engine) names a Pass as passed, not as the rule that denied', () => {
    const r = distill('reach', '--explain', '--scenario', 'fixtures/conformance/npapi/admin-pass-skips-rest-of-tier.yaml');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('ingress of x/a: denied: passed by Admin tier: ClusterNetworkPolicy/pass-y priority 1 rule "spec.ingress[0]" (spec.ingress[0]): Pass to the lower tiers, where default deny (isolated by NetworkPolicy/x/a-from-y-80 spec.policyTypes), no rule allows it');
    expect(r.stdout).not.toContain('denied by Admin tier: ClusterNetworkPolicy/pass-y');
  });
  it('validate warns about two policies of one tier with one priority', () => {
    const cnp = (name: string) => `apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: ${name}}\nspec: {tier: Baseline, priority: 3, subject: {namespaces: {}}}\n`;
    const r = distill('validate', tmpFile('cnp.yaml', `${cnp('a')}---\n${cnp('b')}`));
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('ClusterNetworkPolicy/b: has the same Baseline priority (3) as ClusterNetworkPolicy/a');
  });
});
