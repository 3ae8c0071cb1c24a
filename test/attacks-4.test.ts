import { describe, expect, it } from 'vitest';
import { cli } from './cli-helpers.js';

/**
 * Attack round 4 (CLI): `trace` (and `identities`/`selectors`) built a fresh engine from the
 * scenario's cluster after --step, while `reach` takes the engine through every step. The
 * engine's state depends on its history: a DNS answer is judged by the policy in force when it
 * arrives (Cilium's DNS proxy, pkg/fqdn/dnsproxy ServeDNS / CheckAllowed) and the IP it taught
 * stays while the answer lives. After a step that deletes the policy that allowed the answer,
 * a fresh engine re-judged the old answer under the new policy: trace said DROPPED for a flow
 * `reach` (and Cilium) allow.
 */
const FQDN = 'fixtures/scenarios/fqdn/query-judged-as-a-flow.yaml';

describe('trace agrees with reach on a history-dependent flow', () => {
  it('a learned FQDN IP that outlives the policy that taught it', () => {
    const reach = cli('reach', '--scenario', FQDN, '--json');
    const r = reach.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { step: number; probe: number; allowed: boolean })
      .find((o) => o.step === 1 && o.probe === 0);
    expect(r?.allowed).toBe(true);
    const trace = cli('trace', '--scenario', FQDN, '--step', '1', '--from', 'default/app', '--to', '93.184.216.34', '--port', '443/TCP', '-o', 'json');
    expect(trace.code).toBe(0);
    expect((JSON.parse(trace.out) as { allowed: boolean; verdict: string }).verdict).toBe('FORWARDED');
    // The last step is the default.
    const last = cli('trace', '--scenario', FQDN, '--from', 'default/app', '--to', '93.184.216.34', '--port', '443/TCP', '-o', 'json');
    expect((JSON.parse(last.out) as { allowed: boolean }).allowed).toBe(true);
  });
});

describe('trace resolves peers as reach does', () => {
  it('an external at a pod address is that pod (the ipcache), not an error', () => {
    const f = 'fixtures/scenarios/attacks-2/external-at-a-pod-address.yaml';
    const t = cli('trace', '--scenario', f, '--step', '0', '--from', 'x/client', '--to', 'same-as-server', '--port', '443/TCP', '-o', 'json');
    expect(t.code).toBe(0);
    const o = JSON.parse(t.out) as { allowed: boolean; sides: { endpoint: string }[] };
    expect(o.allowed).toBe(false);
    expect(o.sides.map((s) => s.endpoint)).toEqual(['x/client', 'x/server']);
  });
  it('node peers (`node:<name>`, as scenario probes name them)', () => {
    const t = cli('trace', '--scenario', 'fixtures/scenarios/nodes/node-identities.yaml', '--step', '0', '--from', 'node:n1', '--to', 'default/web', '--port', '80/TCP', '-o', 'json');
    expect(t.code).toBe(0);
    const reach = cli('reach', '--scenario', 'fixtures/scenarios/nodes/node-identities.yaml', '--json')
      .out.trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { step: number; probe: number; allowed: boolean })
      .find((o) => o.step === 0 && o.probe === 0);
    expect((JSON.parse(t.out) as { allowed: boolean }).allowed).toBe(reach?.allowed);
  });
});
