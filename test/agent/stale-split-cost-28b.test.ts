import { describe, expect, it } from 'vitest';
import { staleVeto } from '../../src/agent/agent.js';
import { Engine } from '../../src/engine/engine.js';
import { EngineEvent, MapCapacityError, TransactionVetoedError } from '../../src/engine/events.js';
import { ClusterMirror } from '../../src/k8s/mirror.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { cnp, fill, identity, pod, shop } from './crd-fixtures.js';
/*
 * Finding 2440's cost (docs/architecture.md, CRD identities): while 303's stand-in waits (no room for its deny), one flush of n
 * pods of which k are local pods no policy selects (their default allow opens 303) and the rest remote web pods (they
 * open nothing). The loop is the agent's CRD path as in stale-split-28b.property.test.ts. Every remote pod commits in
 * that flush; the split takes at most k(2⌈log2 n⌉ + 4) + 2 transactions and the retry of what waits, at the next
 * commit that empties the backlog, at most 3k + 2 (the bounds docs/architecture.md gives, measured here).
 */
const CAP = 24;

function run(n: number, k: number, spread: boolean): { tried: number; retry: number; committed: number } {
  const mirror = new ClusterMirror({ nodeName: 'n1', externalIdentities: true });
  const engine = new Engine({ identitySource: 'external', mapCapacity: CAP });
  const settle = (items: readonly WatchItem[]): number => {
    for (const item of items) mirror.observe(item, 'test');
    let t = 0;
    for (let i = 0; i < 10000 && !mirror.idle; i++) {
      const b = mirror.flush();
      const veto = b.stale.size > 0 ? staleVeto(b.stale) : undefined;
      t++;
      try { engine.apply(b.events as EngineEvent[], veto); } catch (e) {
        if (!(e instanceof MapCapacityError || e instanceof TransactionVetoedError)) throw e;
        b.rollback(veto !== undefined && e instanceof TransactionVetoedError);
        continue;
      }
      b.commit();
    }
    return t;
  };
  settle([shop(), pod('web', 'web', 'n1', '10.0.0.2'), pod('client', 'client', 'n1', '10.0.0.3'), pod('db', 'db', 'n2', '10.0.1.4'), cnp('client-web', 'client', [{ toEndpoints: [{ matchLabels: { app: 'web' } }] }]), identity(300, 'web', 'ADDED'), identity(301, 'client', 'ADDED'), identity(303, 'db', 'ADDED'), identity(310, 'lonely', 'ADDED'), fill('fill-web', 'web', 1000, CAP - 2)]);
  settle([identity(303, null, 'MODIFIED')]);
  if (engine.unreadableIdentities().length > 0) throw new Error('the stand-in of 303 fit');
  const items: WatchItem[] = [];
  const step = spread ? Math.floor(n / k) : 1;
  let opened = 0;
  for (let i = 0; i < n; i++) {
    if (opened < k && i % step === step - 1) { items.push(pod(`lonely${i}`, 'lonely', 'n1', `10.0.0.${i + 10}`)); opened++; }
    else items.push(pod(`web${i}`, 'web', 'n2', `10.0.2.${i + 1}`));
  }
  const tried = settle(items);
  const committed = [...Array(n).keys()].filter((i) => engine.identityOfPod(`shop/web${i}`) === 300).length;
  // One unrelated commit: the refused objects are retried.
  const retry = settle([pod('extra', 'web', 'n2', '10.0.3.1')]);
  return { tried, retry, committed };
}

describe('28b: the cost of splitting a vetoed batch', () => {
  it('every remote pod commits in the flush, within the documented number of transactions', () => {
    for (const n of [2, 4, 8, 16, 32, 64, 128])
      for (const k of [1, 2, 4, 8])
        for (const spread of [false, true]) {
          if (k >= n) continue;
          const r = run(n, k, spread);
          const at = `n=${n} k=${k} ${spread ? 'spread' : 'first'}`;
          expect(r.committed, at).toBe(n - k);
          expect(r.tried, at).toBeLessThanOrEqual(k * (2 * Math.ceil(Math.log2(n)) + 4) + 2);
          expect(r.retry, at).toBeLessThanOrEqual(3 * k + 2);
        }
  });
});
