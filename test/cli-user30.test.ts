import { describe, expect, it } from 'vitest';
import { cli, tmpFile } from './cli-helpers.js';

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
