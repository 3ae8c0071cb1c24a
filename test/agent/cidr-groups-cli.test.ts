import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * `distill agent` fed a CiliumCIDRGroup watch stream (26g), on the memory backend. shop/web may reach the
 * world except the group `blocked` (egressDeny cidrGroupRef), and the group `partners` (egress cidrGroupRef).
 * On the base the groups were an unknown kind (ignored) and both rules the stand-in: every egress denied.
 */
const dir = mkdtempSync(join(tmpdir(), 'distill-agent-groups-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, items: unknown[]): string => {
  const p = join(dir, name);
  writeFileSync(p, items.map((i) => JSON.stringify(i)).join('\n') + '\n');
  return p;
};
const ns = file('ns.json', [{ type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } } }]);
const pods = file('pods.json', [{ type: 'ADDED', object: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', namespace: 'shop', resourceVersion: '2', labels: { app: 'web' } }, spec: { nodeName: 'n1', containers: [{ name: 'c', image: 'i' }] }, status: { phase: 'Running', podIP: '10.0.0.2' } } }]);
const cnp = file('cnp.json', [
  {
    type: 'ADDED',
    object: {
      apiVersion: 'cilium.io/v2',
      kind: 'CiliumNetworkPolicy',
      metadata: { name: 'p', namespace: 'shop', resourceVersion: '3' },
      spec: { endpointSelector: { matchLabels: { app: 'web' } }, egress: [{ toEntities: ['world'] }], egressDeny: [{ toCIDRSet: [{ cidrGroupRef: 'blocked' }] }] },
    },
  },
]);
const group = (name: string, rv: number, cidrs: string[]) => ({ type: 'ADDED', object: { apiVersion: 'cilium.io/v2alpha1', kind: 'CiliumCIDRGroup', metadata: { name, resourceVersion: String(rv) }, spec: { externalCIDRs: cidrs } } });

type Entry = { labels: string[]; direction: string; verdict: string };
function egress(...extra: string[]): string[] {
  const r = spawnSync('node', ['dist/cli/main.js', 'agent', '--node', 'n1', '--watch', ns, '--watch', pods, '--watch', cnp, ...extra, '--exit-at-eof', '--json', '--no-warm-up'], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  const out = JSON.parse(r.stdout) as { maps: { entries: Entry[] }[] };
  return out.maps.flatMap((m) => m.entries.filter((e) => e.direction === 'egress').map((e) => `${e.verdict} ${e.labels.join(',')}`)).sort();
}

describe('distill agent with a CiliumCIDRGroup stream', () => {
  it('the deny names the group\'s prefix; the world stays allowed', () => {
    const groups = file('groups.json', [group('blocked', 4, ['198.51.100.0/24'])]);
    // Single-stack (the agent's default, --enable-ipv6 false): the group's CIDR identity is world-labelled `reserved:world`;
    // dual-stack: `reserved:world-ipv4` (semantics.md "Identities and labels"; the expectation predated the stack-mode merge).
    expect(egress('--watch', groups)).toEqual(['allow reserved:world', 'allow reserved:world-ipv4', 'allow reserved:world-ipv6', 'deny cidr:198.51.100.0/24,reserved:world']);
    expect(egress('--watch', groups, '--enable-ipv6', 'true')).toEqual(['allow reserved:world', 'allow reserved:world-ipv4', 'allow reserved:world-ipv6', 'deny cidr:198.51.100.0/24,reserved:world-ipv4']);
  });
  it('without a group stream the deny is the stand-in (every peer denied); with --cidr-groups and no group it denies nothing', () => {
    expect(egress().every((e) => e.startsWith('deny'))).toBe(true);
    expect(egress('--cidr-groups')).toEqual(['allow reserved:world', 'allow reserved:world-ipv4', 'allow reserved:world-ipv6']);
  });
});
