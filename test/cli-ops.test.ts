import { mkdirSync, writeFileSync, existsSync, readdirSync, rmdirSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { cli, expectBadInput, tmpDir, tmpFile } from './cli-helpers.js';
import { runCli } from '../src/cli/main.js';

const STAR_WARS = 'fixtures/scenarios/cilium-docs/l7-star-wars.yaml';
const L4 = 'fixtures/scenarios/cilium-docs/l4.yaml';

const OPEN_DEATHSTAR = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: rule1, namespace: default}
spec:
  endpointSelector: {matchLabels: {org: empire, class: deathstar}}
  ingress:
    - fromEndpoints: [{matchLabels: {}}]
      toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`;

describe('the messages quoted in issue 19', () => {
  it('reach -f x.yaml: exit 2, one error line and a pointer to --help (not the whole help text)', () => {
    const r = cli('reach', '-f', 'x.yaml');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^error: [^\n]+\n\(run 'distill reach --help' for usage\)\n$/);
    expect(r.err).not.toContain('Options:');
    const missing = cli('reach');
    expect(missing.code).toBe(2);
    expect(missing.err).toBe("error: required option '--scenario <path...>' not specified\n(run 'distill reach --help' for usage)\n");
  });
  it('--version prints the version, exit 0', () => {
    const r = cli('--version');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^\d+\.\d+\.\d+/);
  });
  it('a mistyped option gets a suggestion, exit 2', () => {
    const r = cli('reach', '--scenario', L4, '--jsn');
    expect(r.code).toBe(2);
    expect(r.err).toContain('(Did you mean --json?)');
  });
  it('validate DIR, maps dump --scenario DIR and reach --scenario missing.yaml: one line naming the path', () => {
    const dir = tmpDir();
    expect(cli('validate', dir).code).toBe(0); // a directory of no manifests: nothing to check
    const dump = cli('maps', 'dump', '--scenario', dir, '--endpoint', 'a/b');
    expectBadInput(dump, dir);
    expect(dump.err).toBe(`error: ${dir}: is a directory, not a file\n`);
    const missing = cli('reach', '--scenario', join(dir, 'missing.yaml'));
    expect(missing.err).toBe(`error: ${join(dir, 'missing.yaml')}: no such file or directory\n`);
    expect(missing.code).toBe(2);
  });
  it('maps dump without --endpoint says how to list endpoints; --all dumps every map', () => {
    const r = cli('maps', 'dump', '--scenario', L4);
    expect(r.code).toBe(2);
    expect(r.err).toContain('distill maps list');
    const all = cli('maps', 'dump', '--scenario', L4, '--all');
    expect(all.code).toBe(0);
    expect(all.out.match(/^policy map of /gm)?.length).toBe(cli('maps', 'list', '--scenario', L4, '-o', 'json').out.match(/"endpoint"/g)?.length);
  });
  it('maps dump uses the columns of cilium bpf policy get and Hubble verdict words', () => {
    const r = cli('maps', 'dump', '--scenario', STAR_WARS, '--endpoint', 'default/deathstar');
    expect(r.out).toMatch(/^POLICY\s+DIRECTION\s+LABELS \(source:key=value\)\s+PORT\/PROTO\s+PROXY PORT\s+VERDICT$/m);
    expect(r.out).toMatch(/^Allow\s+Ingress\s+\S*k8s:class=tiefighter\S*\s+80\/TCP\s+1\d{4}\s+REDIRECTED$/m);
    expect(r.out).toMatch(/^Allow\s+Egress\s+ANY\s+ANY\s+NONE\s+FORWARDED$/m);
    const wide = cli('maps', 'dump', '--scenario', STAR_WARS, '--endpoint', 'default/deathstar', '-o', 'wide');
    expect(wide.out).toMatch(/IDENTITY.*PRECEDENCE/);
  });
  it('gen --profile small --scale 2 is refused (small has a fixed shape); --scale 0 and --churn 1.5 are refused', () => {
    const small = cli('gen', '--profile', 'small', '--scale', '2');
    expect(small.code).toBe(2);
    expect(small.err).toBe('error: --scale: profile small has a fixed shape and cannot be scaled (leave --scale out, or use another profile)\n');
    expect(small.out).toBe('');
    expect(cli('gen', '--profile', 'realistic', '--scale', '0').err).toContain('--scale: "0" is not a positive number');
    expect(cli('gen', '--profile', 'small', '--churn', '1.5').err).toContain('--churn: "1.5" is not a whole number');
    expect(cli('gen', '--profile', 'small', '--scale', '1', '--churn', '3').code).toBe(0);
  });
  it('replay --help names <dir>/replay, where replay writes', () => {
    const r = cli('replay', '--help');
    expect(r.code).toBe(0);
    expect(r.out).toContain('<dir>/replay');
    expect(r.out).not.toContain('<dir>/scenario');
  });
});

describe('kubectl habits', () => {
  it('validate -f FILE|DIR (recursing over .yaml/.yml/.json), repeatable, and kind: List', () => {
    const dir = tmpDir();
    mkdirSync(join(dir, 'sub'));
    tmpFile('a.yaml', OPEN_DEATHSTAR, dir);
    const list = { apiVersion: 'v1', kind: 'List', items: [parse(OPEN_DEATHSTAR) as unknown] };
    tmpFile('b.json', JSON.stringify(list), join(dir, 'sub'));
    tmpFile('notes.txt', 'not a manifest', dir);
    const r = cli('validate', '-f', dir, '-f', join(dir, 'a.yaml'));
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('sub/b.json: 1 policies');
    expect(r.out.split('\n').filter((l) => l.endsWith('valid')).length).toBe(3);
  });
  it('validate with nothing to read is a usage error', () => {
    const r = cli('validate');
    expect(r.code).toBe(2);
    expect(r.err).toContain('give manifest files');
  });
  it('-o yaml prints YAML of the same data as -o json', () => {
    const j = JSON.parse(cli('maps', 'list', '--scenario', L4, '-o', 'json').out) as unknown;
    expect(parse(cli('maps', 'list', '--scenario', L4, '-o', 'yaml').out)).toEqual(j);
  });
  it('-o on reach, verify and replay: json is --json (the conformance contract), yaml the same objects, wide is --explain', () => {
    const json = cli('reach', '--scenario', L4, '--json').out;
    expect(cli('reach', '--scenario', L4, '-o', 'json').out).toBe(json);
    expect(parse(cli('reach', '--scenario', L4, '-o', 'yaml').out)).toEqual(json.trim().split('\n').map((l) => JSON.parse(l) as unknown));
    expect(cli('reach', '--scenario', L4, '-o', 'wide').out).toBe(cli('reach', '--scenario', L4, '--explain').out);
    expect(parse(cli('verify', '--scenario', L4, '-o', 'yaml').out)).toEqual(JSON.parse(cli('verify', '--scenario', L4, '--json').out));
    const replay = parse(cli('replay', 'fixtures/traces/small.jsonl', '--limit', '5', '-o', 'yaml').out) as Record<string, unknown>;
    expect(replay).toMatchObject({ mode: 'incremental', churnEvents: 5 });
  });
  it('an unknown -o format is a usage error', () => {
    expect(cli('maps', 'list', '--scenario', L4, '-o', 'xml').code).toBe(2);
  });
});

describe('distill trace', () => {
  const base = ['trace', '--scenario', STAR_WARS, '--to', 'default/deathstar', '--port', '80/TCP'];
  it('an L7-refused request: REDIRECTED to the proxy port, L7 DROPPED, with the entry and rule', () => {
    const r = cli(...base, '--from', 'default/tiefighter', '--http-method', 'PUT', '--http-path', '/v1/exhaust-port');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^default\/tiefighter -> default\/deathstar 80\/TCP: REDIRECTED to proxy port 1\d{4} \(http\), L7 DROPPED$/m);
    expect(r.out).toContain('redirected by: CiliumNetworkPolicy/default/rule1 spec.ingress[0]');
    expect(r.out).toContain('default deny: yes, enforced by CiliumNetworkPolicy/default/rule1 spec');
  });
  it('an allowed request is FORWARDED by the proxy; a flow no entry allows is DROPPED', () => {
    const ok = JSON.parse(cli(...base, '--from', 'default/tiefighter', '--http-method', 'POST', '--http-path', '/v1/request-landing', '-o', 'json').out) as { verdict: string; allowed: boolean; sides: { l7?: { verdict: string } }[] };
    expect(ok.allowed).toBe(true);
    expect(ok.verdict).toMatch(/^REDIRECTED to proxy port \d+ \(http\), L7 FORWARDED$/);
    const drop = JSON.parse(cli(...base, '--from', 'default/xwing', '-o', 'json').out) as { verdict: string; sides: { direction: string; entry: unknown }[] };
    expect(drop.verdict).toBe('DROPPED');
    expect(drop.sides.find((s) => s.direction === 'ingress')?.entry).toBeNull();
  });
  it('a Kafka request: the proxy judges it by API key and topic', () => {
    const k = ['trace', '--scenario', 'fixtures/scenarios/cilium-docs/l7-kafka.yaml', '--from', 'default/empire-outpost', '--to', 'default/kafka', '--port', '9092/TCP'];
    expect(cli(...k, '--kafka-api-key', 'fetch', '--kafka-topic', 'empire-announce').out).toMatch(/^\S+ -> \S+ 9092\/TCP: REDIRECTED to proxy port \d+ \(kafka\), L7 FORWARDED$/m);
    expect(cli(...k, '--kafka-api-key', 'produce', '--kafka-topic', 'deathstar-plans').out).toMatch(/L7 DROPPED$/m);
    expect(cli(...k, '--kafka-api-key', 'nope').err).toContain('--kafka-api-key: "nope" is not a Kafka API key');
    expect(cli(...k, '--kafka-topic', 't', '--dns-name', 'x.com').code).toBe(2);
  });
  it('-f applies extra manifests first; a plain IP is an external peer', () => {
    const f = tmpFile('open.yaml', OPEN_DEATHSTAR);
    expect(JSON.parse(cli(...base, '--from', 'default/xwing', '-f', f, '-o', 'json').out)).toMatchObject({ verdict: 'FORWARDED', allowed: true });
    expect(JSON.parse(cli(...base, '--from', '192.0.2.7', '-f', f, '-o', 'json').out)).toMatchObject({ from: '192.0.2.7', verdict: 'DROPPED' });
    expect(JSON.parse(cli(...base, '--from', '10.244.0.22', '-f', f, '-o', 'json').out)).toMatchObject({ from: 'default/xwing', verdict: 'FORWARDED' });
  });
  it('bad input exits 2 naming what is wrong', () => {
    expect(cli(...base, '--from', 'nobody').err).toContain('--from: no pod or external named "nobody"');
    expect(cli('trace', '--scenario', STAR_WARS, '--from', 'default/xwing', '--to', 'default/deathstar', '--port', '80/XTP').code).toBe(2);
    expect(cli(...base, '--from', 'default/xwing', '--step', '5').err).toContain('--step 5 is not one of them');
    expect(cli('trace', '--scenario', STAR_WARS).code).toBe(2);
  });
});

describe('distill plan', () => {
  it('prints deltas per endpoint and verdict changes before -> after; writes nothing', () => {
    const f = tmpFile('open.yaml', OPEN_DEATHSTAR);
    const r = cli('plan', '--scenario', STAR_WARS, '-f', f);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^default\/deathstar\s+3\s+0\s+3\s+0\.03%$/m); // L7: the any-peer rows and the local host's allow-all row (allow-localhost)
    expect(r.out).toMatch(/^default\/xwing\s+default\/deathstar\s+80\/TCP\s+-\s+DROPPED\s+→ FORWARDED$/m);
    expect(r.out).toMatch(/^default\/tiefighter\s+default\/deathstar\s+80\/TCP\s+PUT \/v1\/exhaust-port\s+REDIRECTED, L7 DROPPED\s+→ FORWARDED$/m);
  });
  it('JSON: endpoints, verdictChanges, pressure; -o json lists the entries', () => {
    const j = JSON.parse(cli('plan', '--scenario', STAR_WARS, '--delete', 'CiliumNetworkPolicy/default/rule1', '-o', 'json').out) as { endpoints: Record<string, { upserts: unknown[]; deletes: unknown[]; l7: unknown[] }>; verdictChanges: unknown[]; pressure: Record<string, number>; refused?: unknown };
    expect(Object.keys(j.endpoints)).toEqual(['default/deathstar']);
    expect(j.endpoints['default/deathstar']?.upserts).toHaveLength(1);
    expect(j.endpoints['default/deathstar']?.deletes).toHaveLength(2);
    expect(j.verdictChanges).toContainEqual({ from: 'default/xwing', to: 'default/deathstar', port: 80, protocol: 'TCP', before: 'DROPPED', after: 'FORWARDED' });
    expect(Object.keys(j.pressure).sort()).toEqual(['default/deathstar', 'default/tiefighter', 'default/xwing']);
    expect(j.refused).toBeUndefined();
  });
  it('a change the engine refuses (conflicting L7 parsers) prints the reason and culprits, exit 1', () => {
    const kafka = OPEN_DEATHSTAR.replace('name: rule1', 'name: kafka').replace('toPorts: [{ports: [{port: "80", protocol: TCP}]}]', 'toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {kafka: [{topic: t}]}}]');
    const r = cli('plan', '--scenario', STAR_WARS, '-f', tmpFile('k.yaml', kafka), '-o', 'json');
    expect(r.code).toBe(1);
    const j = JSON.parse(r.out) as { refused: { reason: string; culprits: string[] } };
    expect(j.refused.reason).toContain('conflicting L7 parsers');
    expect(j.refused.culprits).toEqual(expect.arrayContaining([expect.stringContaining('CiliumNetworkPolicy/default/kafka'), expect.stringContaining('CiliumNetworkPolicy/default/rule1')]));
    expect(cli('plan', '--scenario', STAR_WARS, '-f', tmpFile('k.yaml', kafka)).out).toMatch(/^REFUSED: /);
  });
  it('a change whose state the maps cannot express (a networks /32 on one address of a dual-stack pod) is refused, exit 1', () => {
    // Finding 525: plan threw (exit 2) where the engine refuses the transaction and keeps its state.
    const sc = tmpFile('ds.yaml', ['namespaces: [{name: x}]', 'pods:', '  - {name: x/web, labels: {app: web}, ips: [10.244.0.11, "fd00::11"]}', '  - {name: x/cli, labels: {app: cli}, ip: 10.244.0.12}', 'policies: []', 'steps:', '  - probes: [{port: 80, protocol: TCP}]', ''].join('\n'));
    const cnp = tmpFile('net.yaml', ['apiVersion: policy.networking.k8s.io/v1alpha2', 'kind: ClusterNetworkPolicy', 'metadata: {name: deny-web}', 'spec:', '  tier: Admin', '  priority: 1', '  subject: {namespaces: {}}', '  egress:', '    - {action: Deny, to: [{networks: [10.244.0.11/32]}]}', ''].join('\n'));
    const r = cli('plan', '--scenario', sc, '-f', cnp, '-o', 'json');
    expect(r.code, r.err).toBe(1);
    const j = JSON.parse(r.out) as { refused: { reason: string; culprits: string[] } };
    expect(j.refused.reason).toContain('networks peer 10.244.0.11/32 with dual-stack pod x/web');
    const text = cli('plan', '--scenario', sc, '-f', cnp);
    expect(text.code).toBe(1);
    expect(text.out).toMatch(/^REFUSED: .*dual-stack pod x\/web/);
    expect(text.out).not.toContain('culprits');
  });
  it('--port adds ports; no change and bad --delete are usage errors', () => {
    const f = tmpFile('open.yaml', OPEN_DEATHSTAR.replace('"80"', '"443"'));
    const j = JSON.parse(cli('plan', '--scenario', STAR_WARS, '-f', f, '--port', '443/TCP', '-o', 'json').out) as { verdictChanges: { port: number; after: string }[] };
    expect(j.verdictChanges.some((c) => c.port === 443 && c.after === 'FORWARDED')).toBe(true);
    expect(cli('plan', '--scenario', STAR_WARS).code).toBe(2);
    expect(cli('plan', '--scenario', STAR_WARS, '--delete', 'Foo/x').err).toContain('--delete: "Foo/x" is not KIND/NAMESPACE/NAME');
    expect(cli('plan', '--scenario', STAR_WARS, '--delete', 'NetworkPolicy/default/none').err).toContain('policy NetworkPolicy/default/none does not exist');
  });
});

describe('views', () => {
  it('identities: ID, LABELS, ENDPOINTS/PODS, SCOPE', () => {
    const r = cli('identities', '--scenario', STAR_WARS);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^ID\s+LABELS\s+ENDPOINTS\/PODS\s+SCOPE$/m);
    expect(r.out).toMatch(/^2\s+reserved:world\s+-\s+reserved$/m);
    expect(r.out).toMatch(/^\d{3,}\s+\S*k8s:class=xwing\S*\s+default\/xwing\s+local$/m);
  });
  it('selectors: SELECTOR, LABELS, USERS, IDENTITIES, as cilium-dbg policy selectors', () => {
    const r = cli('selectors', '--scenario', STAR_WARS);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^SELECTOR\s+LABELS\s+USERS\s+IDENTITIES$/m);
    // org=empire in namespace default: deathstar and tiefighter, not xwing.
    const ids = JSON.parse(cli('identities', '--scenario', STAR_WARS, '-o', 'json').out) as { id: number; pods: string[] }[];
    const idOf = (pod: string): number | undefined => ids.find((i) => i.pods.includes(pod))?.id;
    expect(JSON.parse(cli('selectors', '--scenario', STAR_WARS, '-o', 'json').out)).toEqual([
      { selector: 'any:org=empire && k8s:io.kubernetes.pod.namespace=default', labels: ['CiliumNetworkPolicy/default/rule1'], users: 1, identities: [idOf('default/deathstar'), idOf('default/tiefighter')] },
    ]);
    const cidr = JSON.parse(cli('selectors', '--scenario', 'fixtures/scenarios/cilium-docs/cidr.yaml', '-o', 'json').out) as { selector: string; users: number; identities: number[] }[];
    expect(cidr.find((c) => c.selector === 'cidr:10.0.0.0/8 except 10.96.0.0/12')).toMatchObject({ users: 2, identities: [expect.any(Number)] });
  });
  it('maps list: endpoints, entries, pressure, redirects', () => {
    const rows = JSON.parse(cli('maps', 'list', '--scenario', STAR_WARS, '-o', 'json').out) as { endpoint: string; entries: number; redirects: number }[];
    expect(rows.find((r) => r.endpoint === 'default/deathstar')).toMatchObject({ entries: 4, redirects: 1 });
  });
  it.skipIf(process.getuid?.() !== 0 || !existsSync('/sys/fs/bpf'))('maps clean removes distill maps under the pin dir (its scenario/ too) and nothing else', () => {
    const pinDir = `/sys/fs/bpf/distill-clean-test-${process.pid}`;
    try {
      expect(cli('reach', '--scenario', L4, '--backend', 'bpf', '--pin-dir', pinDir).code).toBe(0);
      writeFileSync(join(pinDir, 'scenario', 'not-ours'), ''); // bpffs refuses plain files: ignore if so
    } catch {
      /* bpffs holds only bpf objects */
    }
    const r = cli('maps', 'clean', '--pin-dir', pinDir, '-o', 'json');
    expect(r.code, r.err).toBe(0);
    expect((JSON.parse(r.out) as { removed: string[] }).removed.length).toBeGreaterThan(0);
    expect(JSON.parse(cli('maps', 'clean', '--pin-dir', pinDir, '-o', 'json').out)).toEqual({ removed: [] });
    rmSync(pinDir, { recursive: true, force: true });
  });
  it.skipIf(process.getuid?.() !== 0 || !existsSync('/sys/fs/bpf'))('maps clean removes the ipcache pins too: the pin dir of a reach run can then be removed with rmdir', () => {
    const pinDir = `/sys/fs/bpf/distill-test-${randomBytes(6).toString('hex')}`;
    try {
      expect(cli('reach', '--scenario', L4, '--backend', 'bpf', '--pin-dir', pinDir).code).toBe(0);
      expect(readdirSync(join(pinDir, 'scenario'))).toEqual(expect.arrayContaining(['ipcache4', 'ipcache6']));
      const r = cli('maps', 'clean', '--pin-dir', pinDir, '-o', 'json');
      expect(r.code, r.err).toBe(0);
      expect((JSON.parse(r.out) as { removed: string[] }).removed).toEqual(expect.arrayContaining([`${join(pinDir, 'scenario')}: ipcache4`, `${join(pinDir, 'scenario')}: ipcache6`]));
      expect(readdirSync(join(pinDir, 'scenario'))).toEqual([]);
      rmdirSync(join(pinDir, 'scenario'));
      rmdirSync(pinDir);
    } finally {
      rmSync(pinDir, { recursive: true, force: true });
    }
  });
});

describe('runCli', () => {
  it('every command prints its help with exit 0', () => {
    for (const c of [['trace'], ['plan'], ['identities'], ['selectors'], ['maps', 'list'], ['maps', 'clean'], ['maps', 'dump']]) {
      let out = '';
      expect(runCli([...c, '--help'], { out: (s) => (out += s), err: () => undefined })).toBe(0);
      expect(out).toContain(`Usage: distill ${c.join(' ')}`);
    }
  });
});
