import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

/**
 * Finding 2220 (docs/attack-findings-27c.md) through `distill agent` as a user runs it (needs dist/): recorded watch
 * streams, one per kind as `kubectl get <kind> -A --watch --output-watch-events -o json` prints them
 * (fixtures/streams/cilium-endpoint-27c/). client was relabelled (rev=2) before its new label set had a CiliumIdentity:
 * its CiliumEndpoint still names 301 (app=client), which Cilium's ipcache holds for its address
 * (pkg/k8s/watchers/cilium_endpoint.go `endpointUpdated`), so web's `fromEndpoints: app=client` admits it. stranger's
 * endpoint names 999, which no CiliumIdentity holds, and ghost's endpoint (no such pod) lists stranger's address with
 * 300: stranger keeps the fail-closed 255.
 */
const S = 'fixtures/streams/cilium-endpoint-27c';
const KINDS = ['namespaces', 'ciliumidentities', 'pods', 'ciliumendpoints', 'ciliumnetworkpolicies'];
type Out = { ipcache: Record<string, number>; refusals: number; ignored: number; maps: { endpoint: string; entries: { direction: string; identity: number }[] }[] };

function run(identities: string): Out {
  const args = ['dist/cli/main.js', 'agent', '--node', 'n1', '--identities', identities, '--exit-at-eof', '--json', '--no-warm-up', ...KINDS.flatMap((k) => ['--watch', `${S}/${k}.json`])];
  const r = spawnSync('node', args, { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Out;
}

describe('2220. distill agent --identities external reads CiliumEndpoint streams', () => {
  it('a relabelled remote pod takes its endpoint\'s number and web admits it; a hostile endpoint changes nothing', () => {
    const out = run('external');
    expect(out.refusals).toBe(0);
    expect(out.ignored).toBe(0);
    expect(out.ipcache['10.0.1.3/32']).toBe(301);
    expect(out.ipcache['10.0.1.4/32']).toBe(255);
    const web = out.maps.find((m) => m.endpoint === 'shop/web');
    expect(web?.entries.some((e) => e.direction === 'ingress' && e.identity === 301)).toBe(true);
  });
});
