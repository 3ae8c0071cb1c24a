import { spawnSync } from 'node:child_process';
import { cpSync, symlinkSync, writeFileSync } from 'node:fs';
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
