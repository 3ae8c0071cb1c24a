import { describe, expect, it } from 'vitest';
import { replay, ReplayDivergence } from '../../src/churn/replay.js';
import { parseTrace } from '../../src/churn/trace.js';
import { Engine } from '../../src/engine/engine.js';

// Finding 585 (docs/attack-findings-14a.md, fixed in 15x as 730): `replay --verify-every` compared the
// policy maps and L7 tables only, so an engine whose ipcache (address → identity) went wrong passed.

const lines = (events: object[]): string =>
  [{ distillTrace: 1, profile: 'test', seed: 1, description: 'ipcache verification' }, ...events].map((e) => JSON.stringify(e)).join('\n') + '\n';

const pod = (name: string, ip: string, app: string, local: boolean, tag = 'pod-add'): object => ({
  type: 'upsertPod',
  pod: { namespace: 'shop', name, labels: { app }, ip, ports: [] },
  local,
  tag,
});

const TRACE = lines([
  { type: 'phase', name: 'initial' },
  { type: 'upsertNamespace', name: 'shop', labels: {}, tag: 'namespace-add' },
  pod('web', '10.0.0.1', 'web', true),
  pod('db', '10.0.0.2', 'db', false),
  { type: 'phase', name: 'churn' },
  pod('cache', '10.0.0.3', 'cache', false),
  pod('queue', '10.0.0.4', 'queue', false),
]);

/** An engine whose ipcache loses the remote pod `cache` once it is there: its maps stay right (no policy selects anything). */
class IpcacheLosingEngine extends Engine {
  override ipcache(): { prefix: string; identity: number }[] {
    return super.ipcache().filter((e) => e.prefix !== '10.0.0.3/32');
  }
}

describe('replay --verify-every compares the ipcache (585)', () => {
  it('an engine diverging only in its ipcache is reported, naming the prefix', () => {
    const trace = parseTrace(TRACE, 'broken.jsonl');
    let thrown: unknown;
    try {
      replay(trace, { mode: 'incremental', verifyEvery: 1, newEngine: (o) => new IpcacheLosingEngine(o) });
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(ReplayDivergence);
    expect((thrown as Error).message).toMatch(/^broken\.jsonl:7: after this event the engine's ipcache diverges from a from-scratch recomputation \(prefix 10\.0\.0\.3\/32: engine \(none\), recomputed .*app=cache/);
  });

  it('the same trace with a sound engine verifies clean at every event', () => {
    const r = replay(parseTrace(TRACE, 'ok.jsonl'), { mode: 'incremental', verifyEvery: 1 });
    expect(r.verifications).toBe(2);
  });

  it('an update moves a claimant of a shared address last: it owns the address in the model as in the engine (730)', () => {
    const trace = lines([
      { type: 'phase', name: 'initial' },
      { type: 'upsertNamespace', name: 'shop', labels: {}, tag: 'namespace-add' },
      pod('web', '10.0.0.1', 'web', true),
      pod('far', '10.0.0.2', 'far', false),
      pod('db', '10.0.0.2', 'db', false),
      { type: 'phase', name: 'churn' },
      pod('far', '10.0.0.2', 'far2', false, 'pod-relabel'),
      pod('cache', '10.0.0.3', 'cache', false),
    ]);
    expect(replay(parseTrace(trace, 'update.jsonl'), { mode: 'incremental', verifyEvery: 1 }).verifications).toBe(2);
  });

  it("an address its owner left (finding 524's documented divergence from a fresh engine) is not reported", () => {
    // db and far both claim 10.0.0.2; db (written last) owns it, then db is deleted: nobody owns it
    // (src/model/cluster.ts `ipOwner`), while a fresh engine gives it to far.
    const trace = lines([
      { type: 'phase', name: 'initial' },
      { type: 'upsertNamespace', name: 'shop', labels: {}, tag: 'namespace-add' },
      pod('web', '10.0.0.1', 'web', true),
      pod('far', '10.0.0.2', 'far', false),
      { type: 'phase', name: 'churn' },
      pod('db', '10.0.0.2', 'db', false),
      { type: 'deletePod', namespace: 'shop', name: 'db', tag: 'pod-remove' },
      pod('cache', '10.0.0.3', 'cache', false),
    ]);
    expect(replay(parseTrace(trace, 'collide.jsonl'), { mode: 'incremental', verifyEvery: 1 }).verifications).toBe(3);
  });
});
