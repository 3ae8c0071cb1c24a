import { describe, expect, it } from 'vitest';
import { applyChangeSet } from '../../src/backend/backend.js';
import { BarrierMemory } from '../../src/backend/ipcache.js';
import { kernelIpcacheContent, kernelIpcacheDeltas, localEndpointAddresses } from '../../src/backend/ipcache-content.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import { parseTrace } from '../../src/churn/trace.js';
import { generateTrace } from '../../src/churn/profiles.js';
import { Engine } from '../../src/engine/engine.js';
import { hostCidr, parseCidr, parseIp } from '../../src/model/cidr.js';
import { reconcile } from '../../src/node/restart.js';

/**
 * What the ipcache's transition barrier costs in writes (fix1120b): a gen trace written as the agent
 * writes it (the cold start through `reconcile` with the ipcache synced between the phases, then one
 * `applyChangeSet` per churn event), the ipcache a model driven by `BarrierMemory` as `KernelIpcache`
 * drives it. Every transaction writes each delta once unless two or more addresses of local endpoints
 * whose maps it keeps (or that local endpoints held before it) change identity in one family; the cold
 * start (every endpoint new) writes each entry once. The held fix (fix1120) wrote every entry twice.
 */

/** The identity an ipcache (prefix text → identity) gives an address: longest prefix. */
function lpm(cache: ReadonlyMap<string, number>, ip: string): number | undefined {
  for (let len = ip.includes(':') ? 128 : 32; len >= 0; len--) {
    const id = cache.get(parseCidr(`${ip}/${len}`).text);
    if (id !== undefined) return id;
  }
  return undefined;
}

const addressesOf = (engine: Engine, endpoints: Iterable<string>): string[] => [...endpoints].flatMap((ep) => engine.endpointAddresses(ep).map((ip) => ip.text));

function replay(profile: string, churnEvents: number) {
  const text = generateTrace({ profile, seed: 7, churnEvents });
  const trace = parseTrace(text, 'gen', { manifests: false });
  const firstChurn = trace.items.findIndex((i) => i.kind === 'phase' && i.name !== 'initial');
  const initial = trace.items.slice(0, firstChurn).flatMap((i) => (i.kind === 'event' ? [i.event] : []));
  const churn = trace.items.slice(firstChurn).flatMap((i) => (i.kind === 'event' ? [i.event] : []));
  const engine = new Engine();
  const backend = new MemoryBackend();
  const barrier = new BarrierMemory();
  const ipcache = new Map<string, number>();
  const write = (deltas: Parameters<BarrierMemory['order']>[0], local: ReturnType<typeof localEndpointAddresses>): number => {
    const writes = barrier.order(deltas, ipcache, local);
    for (const d of writes) {
      if (d.op === 'upsert') ipcache.set(d.prefix, d.identity);
      else ipcache.delete(d.prefix);
    }
    barrier.written(local);
    return writes.length;
  };
  const out = { coldEntries: 0, coldWrites: 0, txns: 0, deltas: 0, writes: 0, barriers: 0 };
  engine.apply(initial);
  reconcile(engine, backend, () => {
    const wanted = kernelIpcacheContent(engine);
    const deltas = [...wanted].map(([prefix, identity]) => ({ op: 'upsert' as const, prefix, identity }));
    out.coldEntries = deltas.length;
    out.coldWrites = write(deltas, localEndpointAddresses(engine, new Set(engine.endpoints())));
  });
  for (const e of churn) {
    const beforeCache = new Map(ipcache);
    const before = new Set(engine.endpoints());
    const guardedBefore = addressesOf(engine, before);
    const cs = engine.apply([e]);
    const created = new Set(cs.endpointsAdded);
    let writes = 0;
    applyChangeSet(backend, cs, () => (writes = write(kernelIpcacheDeltas(cs.ipcache), localEndpointAddresses(engine, created))));
    const kept = addressesOf(engine, engine.endpoints().filter((ep) => !created.has(ep)));
    const moving = [...new Set([...guardedBefore, ...kept])].filter((ip) => lpm(beforeCache, ip) !== lpm(ipcache, ip));
    const perFamily = Math.max(moving.filter((ip) => ip.includes(':')).length, moving.filter((ip) => !ip.includes(':')).length);
    if (perFamily < 2) expect(writes, `${e.type}: ${moving.join(' ')}`).toBe(cs.ipcache.length);
    else out.barriers++;
    out.txns++;
    out.deltas += cs.ipcache.length;
    out.writes += writes;
  }
  expect(ipcache).toEqual(kernelIpcacheContent(engine));
  // The guard's addresses are host prefixes of the engine's own texts.
  expect(addressesOf(engine, engine.endpoints()).every((ip) => ipcache.has(hostCidr(parseIp(ip)).text))).toBe(true);
  return out;
}

describe('the ipcache barrier costs writes only where two local endpoints move', () => {
  for (const [profile, churn] of [['small', 400], ['realistic', 150]] as const) {
    it(`${profile}: cold start one write per entry; a churn transaction writes each delta once unless two guarded addresses move`, () => {
      const r = replay(profile, churn);
      process.stdout.write(`ipcache barrier cost (${profile}): ${JSON.stringify(r)}\n`);
      expect(r.coldWrites).toBe(r.coldEntries);
      expect(r.writes).toBeGreaterThanOrEqual(r.deltas);
    }, 300_000);
  }
});
