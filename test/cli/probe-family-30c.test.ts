import { describe, expect, it } from 'vitest';
import { cli, expectBadInput, tmpFile } from '../cli-helpers.js';

/*
 * Finding 2691 (docs/attack-findings-29i.md; 2740 in docs/attack-findings-30c.md): a flow between two
 * addresses of different families is no packet, so trace and scenario probes refuse it; an end
 * named by name (pod, external, node) is judged against either family (2741). Finding 2633 (2742): a Pass rule is not an allower.
 */

const PODS = [
  'namespaces: [{name: x, labels: {team: x}}, {name: y, labels: {team: y}}]',
  'pods:',
  '  - {name: x/a, labels: {pod: a}, ip: 10.244.30.10}',
  '  - {name: x/d, labels: {pod: d}, ips: [10.244.30.11, "fd00:30::11"]}',
  '  - {name: y/s, labels: {pod: s}, ip: "fd00:30::12"}',
  'externals: [{name: ext6, ip: "2001:db8::6"}]',
];

function scenario(probes: string[]): string {
  return [...PODS, 'steps:', '  - probes:', ...probes.map((p) => `      - ${p}`), ''].join('\n');
}

const STAR_WARS = 'fixtures/scenarios/cilium-docs/l7-star-wars.yaml';

describe('2740: a probe between two addresses of different families is refused', () => {
  it('trace: two addresses of different families (an IPv4-mapped IPv6 text is IPv6)', () => {
    const r = cli('trace', '--scenario', STAR_WARS, '--from', '10.244.0.1', '--to', '::ffff:10.244.0.2', '--port', '80');
    expectBadInput(r, '10.244.0.1 is IPv4, ::ffff:10.244.0.2 is IPv6');
    expect(r.out).toBe('');
  });

  it('trace: addresses of different families are refused, a pod named by name is judged against either (2741)', () => {
    const file = tmpFile('fam.yaml', scenario([]));
    expectBadInput(cli('trace', '--scenario', file, '--from', '10.244.30.10', '--to', '2001:db8::1', '--port', '80'), '10.244.30.10 is IPv4, 2001:db8::1 is IPv6');
    expectBadInput(cli('trace', '--scenario', file, '--from', 'fd00:30::12', '--to', '192.0.2.1', '--port', '80'), 'fd00:30::12 is IPv6, 192.0.2.1 is IPv4');
    for (const [from, to] of [['x/a', '2001:db8::1'], ['192.0.2.1', 'y/s'], ['x/a', 'y/s']] as const) {
      const r = cli('trace', '--scenario', file, '--from', from, '--to', to, '--port', '80', '-o', 'json');
      expect(r.code, `${from} -> ${to}: ${r.err}`).toBe(0);
    }
  });

  it('trace: a dual-stack pod takes either family by name, one by its address', () => {
    const file = tmpFile('fam.yaml', scenario([]));
    for (const to of ['2001:db8::1', '192.0.2.1', 'x/a', 'y/s']) {
      const r = cli('trace', '--scenario', file, '--from', 'x/d', '--to', to, '--port', '80', '-o', 'json');
      expect(r.code, `${to}: ${r.err}`).toBe(0);
    }
    expect(cli('trace', '--scenario', file, '--from', 'fd00:30::11', '--to', '2001:db8::1', '--port', '80').code).toBe(0);
    expectBadInput(cli('trace', '--scenario', file, '--from', '10.244.30.11', '--to', '2001:db8::1', '--port', '80'), '10.244.30.11 is IPv4, 2001:db8::1 is IPv6');
  });

  it('reach and verify: a probe whose two ends are addresses of different families is refused, naming the probe', () => {
    for (const probe of ['{from: {ip: 10.244.30.10}, to: {ip: "2001:db8::1"}, port: 80}', '{from: {ip: 10.0.0.1}, to: {ip: "::ffff:192.0.2.1"}, port: 80}']) {
      const file = tmpFile('fam.yaml', scenario([probe]));
      for (const cmd of [['reach'], ['reach', '--json'], ['verify'], ['verify', '--json']]) {
        const r = cli(...cmd, '--scenario', file);
        expectBadInput(r, 'steps[0].probes[0]');
        expect(r.err).toContain('no packet goes between them');
      }
    }
  });

  it('reach: a pod named by name is judged against an address or pod of either family (2741), as plan does', () => {
    const file = tmpFile('fam.yaml', scenario(['{port: 80}', '{from: {ip: "2001:db8::1"}, port: 80}', '{from: x/a, to: {ip: "2001:db8::1"}, port: 80}']));
    const r = cli('reach', '--scenario', file, '--json');
    expect(r.code, r.err).toBe(0);
    const pairs = r.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { probe: number; from: string; to: string })
      .map((p) => `${p.probe} ${p.from}->${p.to}`);
    expect(pairs.sort()).toEqual(
      ['0 x/a->x/d', '0 x/a->y/s', '0 x/d->x/a', '0 x/d->y/s', '0 y/s->x/a', '0 y/s->x/d', '1 2001:db8::1->x/a', '1 2001:db8::1->x/d', '1 2001:db8::1->y/s', '2 x/a->2001:db8::1'].sort(),
    );
  });
});

interface Side {
  direction: string;
  verdict: string;
  allowedBy: string[];
  passedBy: string[];
  alsoAllowedBy: string[];
}

describe('2742: a Pass rule is listed as passing, not allowing', () => {
  const FIXTURE = 'fixtures/conformance/npapi-diff/baseline-pass-then-deny.yaml';
  const args = ['trace', '--scenario', FIXTURE, '--step', '0', '--from', 'y/a', '--to', 'x/a', '--port', '80/TCP'];

  it('json: passedBy names the Baseline Pass, allowedBy nothing (the default allows it)', () => {
    const r = cli(...args, '-o', 'json');
    expect(r.code, r.err).toBe(0);
    const s = (JSON.parse(r.out) as { sides: Side[] }).sides.find((x) => x.direction === 'ingress') as Side;
    expect(s.verdict).toBe('FORWARDED');
    expect(s.allowedBy).toEqual([]);
    expect(s.passedBy).toEqual(['ClusterNetworkPolicy/pass-y spec.ingress[0]']);
    expect(s.alsoAllowedBy).toEqual([]);
  });

  it('text: "passed by ... allowed by default", no "allowed by" line', () => {
    const r = cli(...args);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('passed by: ClusterNetworkPolicy/pass-y spec.ingress[0] (to the lower tiers, where nothing decides it: allowed by default)');
    expect(r.out).not.toMatch(/^ {2}allowed by:/m);
  });

  it('a flow the Pass does not take is still denied by the rule below', () => {
    const r = cli('trace', '--scenario', FIXTURE, '--step', '0', '--from', 'z/a', '--to', 'x/a', '--port', '80/TCP');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('denied by: ClusterNetworkPolicy/deny-rest spec.ingress[0]');
  });
});
