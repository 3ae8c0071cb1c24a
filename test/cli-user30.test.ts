import { spawnSync } from 'node:child_process';
import { cpSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, tmpDir, tmpFile } from './cli-helpers.js';

// Round 30u (docs/attack-findings-30u.md): a new operator following the README and docs/cli.md.

const SCENARIO = `pods:
  - {name: default/backend, labels: {role: backend}}
  - {name: default/svc, labels: {app: svc}}
policies:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: l4-rule, namespace: default}
    spec:
      endpointSelector: {matchLabels: {app: svc}}
      ingress:
        - toPorts: [{ports: [{port: '80', protocol: TCP}]}]
steps:
  - probes: [{port: 443}, {from: default/backend, port: 443, protocol: tcp}]
`;

describe('2940. plan --port naming a port the probes already use checks it once', () => {
  const s = tmpFile('s.yaml', SCENARIO);
  it('one verdict change per pair and port (was: the row twice, text and JSON)', () => {
    const r = cli('plan', '--scenario', s, '--delete', 'CiliumNetworkPolicy/default/l4-rule', '--port', '443/tcp', '-o', 'json');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.out) as { checkedPorts: string[]; verdictChanges: unknown[] };
    expect(out.checkedPorts).toEqual(['443/TCP']);
    expect(out.verdictChanges).toEqual([{ from: 'default/backend', to: 'default/svc', port: 443, protocol: 'TCP', before: 'DROPPED', after: 'FORWARDED' }]);
    const text = cli('plan', '--scenario', s, '--delete', 'CiliumNetworkPolicy/default/l4-rule', '--port', '443/TCP', '--port', '443/TCP');
    expect(text.out.split('\n').filter((l) => l.includes('443/TCP'))).toHaveLength(1);
  });
});

describe('2941. testbed without the built datapath (an installed package, a clone before bpf/build.sh) is a usage error', () => {
  it('exit 2 naming what to build (was: exit 70, "internal error: ... spawnSync .../build/bpf/probe ENOENT", after creating namespaces)', () => {
    // The package's layout: dist/ and no build/bpf/ beside it, as `npm install distill` leaves it.
    const pkg = tmpDir();
    cpSync('dist', join(pkg, 'dist'), { recursive: true });
    symlinkSync(resolve('node_modules'), join(pkg, 'node_modules'));
    writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'distill', version: '0.1.0', type: 'module' }));
    const r = spawnSync('node', [join(pkg, 'dist/cli/main.js'), 'testbed', '--scenario', 'fixtures/scenarios/cilium-docs/l4.yaml'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toBe(
      `error: testbed: ${join(pkg, 'build/bpf/datapath.o')} and ${join(pkg, 'build/bpf/probe')} not built: run 'bash bpf/build.sh' in a clone of distill (npm test runs it; the npm package does not ship the datapath)\n`,
    );
    expect(r.status).toBe(2);
  });
});

const IPBLOCK = `pods:
  - {name: default/db, labels: {role: db}, ip: 10.0.0.10}
  - {name: default/fe, labels: {role: frontend}, ip: 10.0.0.11}
policies:
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: test-network-policy, namespace: default}
    spec:
      podSelector: {matchLabels: {role: db}}
      policyTypes: [Ingress, Egress]
      ingress:
        - from: [{ipBlock: {cidr: 172.17.0.0/16, except: [172.17.1.0/24]}}]
          ports: [{protocol: TCP, port: 6379}]
      egress:
        - to: [{ipBlock: {cidr: 10.0.0.0/24}}]
          ports: [{protocol: TCP, port: 5978}]
steps: []
`;

describe('2942. trace names the identity it looked up when no map entry matches', () => {
  // Kubernetes' docs example: an address in the except, and a pod inside the ipBlock (Cilium selects no pod by CIDR).
  const s = tmpFile('ipblock.yaml', IPBLOCK);
  it('an address in an except: its CIDR identity (was: only "no map entry matches (default deny)")', () => {
    const r = cli('trace', '--scenario', s, '--from', '172.17.1.9', '--to', 'default/db', '--port', '6379/TCP');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain("ingress of default/db: DROPPED\n  no map entry matches (default deny) for the peer's identity 16777218 (cidr:172.17.1.0/24,reserved:world)\n");
  });
  it("a pod inside an ipBlock: the pod's identity, text and JSON", () => {
    const r = cli('trace', '--scenario', s, '--from', 'default/db', '--to', '10.0.0.11', '--port', '5978/TCP');
    expect(r.out).toContain("egress of default/db: DROPPED\n  no map entry matches (default deny) for the peer's identity 257 (k8s:io.kubernetes.pod.namespace=default,k8s:role=frontend)\n");
    const j = JSON.parse(cli('trace', '--scenario', s, '--from', 'default/db', '--to', 'default/fe', '--port', '5978/TCP', '-o', 'json').out) as { sides: { peer: unknown; entry: unknown }[] };
    expect(j.sides[0]?.entry).toBeNull();
    expect(j.sides[0]?.peer).toEqual({ identity: 257, labels: ['k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=default', 'k8s:io.cilium.k8s.policy.cluster=default', 'k8s:io.cilium.k8s.policy.serviceaccount=default', 'k8s:io.kubernetes.pod.namespace=default', 'k8s:role=frontend'] });
  });
});

describe('2943. docs/cli.md replay example has the lines replay prints (numbers that vary masked)', () => {
  // test/cli-docs.test.ts does not run `replay` (timings vary); the example had lost the warm-up part of the cold start line.
  it('same lines, same counts', () => {
    const doc = readFileSync('docs/cli.md', 'utf8');
    const m = /\$ distill gen --profile small --churn 20 > small\.jsonl\n\$ distill replay small\.jsonl --verify-every 5\n([\s\S]*?)```/.exec(doc);
    expect(m, 'the replay example of docs/cli.md').not.toBeNull();
    const trace = tmpFile('small.jsonl', cli('gen', '--profile', 'small', '--churn', '20').out);
    const r = cli('replay', trace, '--verify-every', '5');
    expect(r.code, r.err).toBe(0);
    const shape = (text: string): string[] =>
      text
        .trim()
        .split('\n')
        // A time in ms is printed as its number: whole at times (`warm-up: 483 ms`).
        .map((l) => l.replace(/\d+(\.\d+)? ms\b/g, 'F ms').replace(/\d+\.\d+/g, 'F').replace(/, (N|\d+) events\/s/, ', N events/s').replace(/ +/g, ' '));
    expect(shape(r.out)).toEqual(shape(m![1]!));
  });
});
