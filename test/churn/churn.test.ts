import { describe, expect, it } from 'vitest';
import { generateTrace, PROFILES } from '../../src/churn/profiles.js';
import { replay } from '../../src/churn/replay.js';
import { parseTrace } from '../../src/churn/trace.js';
import { ManifestError } from '../../src/policy/errors.js';

/** Each profile at a tiny scale: same shape, seconds to replay with a full check after every event. */
const TINY: Record<string, number> = { small: 1, realistic: 0.01, 'cilium-ci': 0.01, 'cilium-2019': 0.05, 'antrea-worst': 0.01 };

describe('trace format', () => {
  const header = '{"distillTrace": 1, "profile": "t"}';
  const ns = '{"type": "upsertNamespace", "name": "a", "labels": {"team": "x"}}';
  const pod = '{"type": "upsertPod", "pod": {"namespace": "a", "name": "p", "labels": {"app": "web"}, "ip": "10.0.0.1"}, "local": true, "tag": "pod-add"}';

  it('parses header, events, tags and phases', () => {
    const t = parseTrace([header, '{"type": "phase", "name": "initial"}', ns, pod, '', '{"type": "deletePod", "namespace": "a", "name": "p"}'].join('\n'), 't.jsonl');
    expect(t.header).toEqual({ distillTrace: 1, profile: 't' });
    expect(t.items.map((i) => (i.kind === 'phase' ? `phase:${i.name}@${i.line}` : `${i.event.type}/${i.tag}@${i.line}`))).toEqual([
      'phase:initial@2',
      'upsertNamespace/upsertNamespace@3',
      'upsertPod/pod-add@4',
      'deletePod/deletePod@6',
    ]);
  });

  it('a dual-stack pod carries ips, its first address pod.ip', () => {
    const ds = '{"type": "upsertPod", "pod": {"namespace": "a", "name": "d", "ip": "10.0.0.2", "ips": ["10.0.0.2", "fd00::2"]}}';
    const t = parseTrace([header, ns, ds].join('\n'), 't.jsonl');
    const ev = t.items[1];
    expect(ev?.kind === 'event' && ev.event.type === 'upsertPod' ? ev.event.pod.ips?.map((a) => a.text) : undefined).toEqual(['10.0.0.2', 'fd00::2']);
    const bad = '{"type": "upsertPod", "pod": {"namespace": "a", "name": "d", "ip": "10.0.0.3", "ips": ["10.0.0.2", "fd00::2"]}}';
    expect(() => parseTrace([header, ns, bad].join('\n'), 't.jsonl')).toThrow('t.jsonl:3 pod.ips[0]: must be pod.ip (10.0.0.3)');
    const twoV4 = '{"type": "upsertPod", "pod": {"namespace": "a", "name": "d", "ip": "10.0.0.2", "ips": ["10.0.0.2", "10.0.0.9"]}}';
    expect(() => parseTrace([header, ns, twoV4].join('\n'), 't.jsonl')).toThrow(/pod\.ips\[1\]: a second ipv4 address/);
  });

  it('a bad line fails the whole trace with its line number, before anything is replayed', () => {
    const bad = (line: string): string => {
      try {
        parseTrace([header, ns, pod, line, pod].join('\n'), 't.jsonl');
      } catch (e) {
        expect(e).toBeInstanceOf(ManifestError);
        return (e as Error).message;
      }
      throw new Error('no error');
    };
    expect(bad('{"type": "upsertPod", "pod": {"namespace": "a", "name": "q", "ip": "10.0.0.300"}}')).toBe('t.jsonl:4 pod.ip: "10.0.0.300" is not a valid IP address');
    expect(bad('{not json')).toMatch(/^t\.jsonl:4: is not valid JSON/);
    expect(bad('{"type": "upsertPods"}')).toMatch(/^t\.jsonl:4 type: "upsertPods" is not one of/);
    expect(bad('{"type": "deletePod", "namespace": "a", "name": "p", "extra": 1}')).toMatch(/^t\.jsonl:4 extra: /);
    expect(bad('{"type": "upsertPolicy", "manifest": {"kind": "NetworkPolicy"}}')).toMatch(/^t\.jsonl:4 manifest/);
    expect(() => parseTrace('{"distillTrace": 2}\n', 'v.jsonl')).toThrow('v.jsonl:1 distillTrace: must be 1');
    expect(() => parseTrace('', 'e.jsonl')).toThrow(/e\.jsonl:1: is empty/);
  });
});

describe('generators', () => {
  for (const p of PROFILES) {
    it(`${p.name}: the same seed gives the same trace, another seed another`, () => {
      const opts = { profile: p.name, scale: TINY[p.name] ?? 0.01, churnEvents: 40 };
      const a = generateTrace({ ...opts, seed: 7 });
      expect(generateTrace({ ...opts, seed: 7 })).toBe(a);
      expect(generateTrace({ ...opts, seed: 8 })).not.toBe(a);
      const t = parseTrace(a, `${p.name}.jsonl`);
      expect(t.header.profile).toBe(p.name);
      expect(t.items.filter((i) => i.kind === 'phase').map((i) => (i.kind === 'phase' ? i.name : ''))).toEqual(['initial', 'churn']);
    });
  }

  it('the published shapes are what the docs say (realistic at full scale)', () => {
    const t = parseTrace(generateTrace({ profile: 'realistic', seed: 1, churnEvents: 0 }), 'r.jsonl');
    const count = (type: string): number => t.items.filter((i) => i.kind === 'event' && i.event.type === type).length;
    expect(count('upsertNamespace')).toBe(604);
    expect(count('upsertPod')).toBe(5413);
    expect(count('upsertPolicy')).toBe(13678);
    const local = t.items.filter((i) => i.kind === 'event' && i.event.type === 'upsertPod' && i.event.local).length;
    expect(local).toBeGreaterThanOrEqual(100);
    expect(local).toBeLessThanOrEqual(120);
  });
});

describe('replay', () => {
  for (const p of PROFILES) {
    it(`${p.name}: with --verify-every 1 the engine matches a from-scratch recomputation after every event, and full mode gives the same deltas`, () => {
      const trace = parseTrace(generateTrace({ profile: p.name, seed: 3, scale: TINY[p.name] ?? 0.01, churnEvents: 60 }), `${p.name}.jsonl`);
      const inc = replay(trace, { mode: 'incremental', verifyEvery: 1 });
      expect(inc.verifications).toBe(inc.churnEvents);
      expect(inc.churnEvents).toBeGreaterThanOrEqual(60);
      const full = replay(trace, { mode: 'full' });
      expect({ deltas: full.deltas, l7Deltas: full.l7Deltas, mapEntries: full.mapEntries, endpoints: full.endpoints }).toEqual({
        deltas: inc.deltas,
        l7Deltas: inc.l7Deltas,
        mapEntries: inc.mapEntries,
        endpoints: inc.endpoints,
      });
      expect(Object.keys(inc.latencyUs).length).toBeGreaterThan(3);
      for (const l of Object.values(inc.latencyUs)) expect(l.p50).toBeLessThanOrEqual(l.max);
    });
  }
});
