import { execFileSync } from 'node:child_process';
import { rmSync, mkdirSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeIpcacheKey, KernelIpcache } from '../../src/backend/ipcache.js';
import { ipcacheContent } from '../../src/datapath/testbed.js';
import { Engine } from '../../src/engine/engine.js';
import { EngineDecider } from '../../src/harness/engine-decider.js';
import { EMPTY_CLUSTER } from '../../src/model/cluster.js';
import { parseCidr } from '../../src/model/cidr.js';
import { RESERVED_IDENTITIES } from '../../src/model/identity.js';
import { parseScenario } from '../../src/scenario/format.js';
import { runScenario } from '../../src/scenario/run.js';
import { readFileSync } from 'node:fs';
import { kernel } from './gate.js';

const PIN = `/sys/fs/bpf/distill-test-ipcache-${process.pid}`;
afterAll(() => rmSync(PIN, { recursive: true, force: true }));

describe('ipcache key', () => {
  it('is the prefix length (host order) then the network address in network order', () => {
    const b = Buffer.alloc(20);
    encodeIpcacheKey(parseCidr('10.244.1.0/24'), b);
    expect(b.subarray(0, 8).toString('hex')).toBe('180000000af40100');
    encodeIpcacheKey(parseCidr('2001:db8::/32'), b);
    expect(b.subarray(0, 20).toString('hex')).toBe('2000000020010db8000000000000000000000000');
  });
});

describe('ipcache content', () => {
  it('maps every pod and external address, CIDR identities by prefix, and world by default', () => {
    const scenario = parseScenario(readFileSync('fixtures/scenarios/cilium-docs/cidr.yaml', 'utf8'), 'cidr.yaml');
    const engine = new Engine();
    const decider = new EngineDecider(engine);
    const run = runScenario(scenario, decider.decide);
    const content = ipcacheContent(engine, run.finalState);
    // Single-stack (the default): every outside address is world (2), pkg/identity GetWorldIdentityFromIP.
    expect(content.get('0.0.0.0/0')).toBe(RESERVED_IDENTITIES.world);
    expect(content.get('::/0')).toBe(RESERVED_IDENTITIES.world);
    // Dual-stack: the family's world identity (9 / 10).
    const dual = ipcacheContent(new Engine({ stack: 'dual' }), EMPTY_CLUSTER);
    expect(dual.get('0.0.0.0/0')).toBe(RESERVED_IDENTITIES['world-ipv4']);
    expect(dual.get('::/0')).toBe(RESERVED_IDENTITIES['world-ipv6']);
    for (const [key, pod] of run.finalState.pods) expect(content.get(`${pod.ip.text}/32`)).toBe(engine.identityOfPod(key));
    for (const ext of run.finalState.externals.values()) expect(content.get(`${ext.ip.text}/${ext.ip.family === 'ipv4' ? 32 : 128}`)).toBe(engine.identityOfIp(ext.ip));
    const cidrIds = [...content.entries()].filter(([c]) => !c.endsWith('/32') && !c.endsWith('/0'));
    expect(cidrIds.length).toBeGreaterThan(0);
  });
});

kernel('ipcache kernel maps', () => {
  it('full sync and deltas leave exactly the wanted entries, as bpftool reads them', () => {
    mkdirSync(PIN, { recursive: true });
    const m = KernelIpcache.fresh(PIN);
    try {
      expect(m.sync(new Map([['10.0.0.0/8', 300], ['10.1.2.3/32', 301], ['fd00::/64', 302]]))).toBe(3);
      m.apply([{ op: 'delete', prefix: '10.1.2.3/32', identity: 301 }, { op: 'upsert', prefix: '10.0.0.0/8', identity: 303, previous: 300 }, { op: 'upsert', prefix: '192.168.0.0/16', identity: 304 }]);
      expect(m.sync(new Map([['10.0.0.0/8', 303], ['192.168.0.0/16', 304]]))).toBe(1); // fd00::/64 goes
      const dump = (f: string): unknown[] => JSON.parse(execFileSync('bpftool', ['-j', 'map', 'dump', 'pinned', `${PIN}/${f}`], { encoding: 'utf8' })) as unknown[];
      expect(dump('ipcache4')).toHaveLength(2);
      expect(dump('ipcache6')).toHaveLength(0);
      expect([...m.entries()].sort()).toEqual([['10.0.0.0/8', 303], ['192.168.0.0/16', 304]]);
    } finally {
      m.close();
    }
  });
});
