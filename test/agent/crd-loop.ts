import { staleVeto } from '../../src/agent/agent.js';
import { Engine } from '../../src/engine/engine.js';
import { EngineEvent, MapCapacityError, TransactionVetoedError } from '../../src/engine/events.js';
import { ClusterMirror } from '../../src/k8s/mirror.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { cnp, fill, identity, pod, shop } from './crd-fixtures.js';

/**
 * The agent's CRD path (agent.ts `applyPending`) on maps of `cap` entries, as in stale-split-28b.property.test.ts:
 * web (300) and client (301) local, db (303) remote, client's egress to web, web's map full, then 303 turned
 * unreadable, which waits (no room for its deny in web's map). `first`: more items of the first settle, `filled`: the entries of web's map before 303's deny. `settle` observes the items and flushes until idle,
 * returning the transactions tried.
 */
export function waitingDb(cap: number, first: readonly WatchItem[] = [], filled = cap - 2): { mirror: ClusterMirror; engine: Engine; settle: (items: readonly WatchItem[]) => number } {
  const mirror = new ClusterMirror({ nodeName: 'n1', externalIdentities: true });
  const engine = new Engine({ identitySource: 'external', mapCapacity: cap });
  const settle = (items: readonly WatchItem[]): number => {
    for (const item of items) mirror.observe(item, 'test');
    let t = 0;
    for (let i = 0; i < 10000 && !mirror.idle; i++) {
      const b = mirror.flush();
      const veto = b.stale.size > 0 ? staleVeto(b.stale) : undefined;
      t++;
      try {
        engine.apply(b.events as EngineEvent[], veto);
      } catch (e) {
        if (!(e instanceof MapCapacityError || e instanceof TransactionVetoedError)) throw e;
        b.rollback(veto !== undefined && e instanceof TransactionVetoedError);
        continue;
      }
      b.commit();
    }
    return t;
  };
  settle([shop(), pod('web', 'web', 'n1', '10.0.0.2'), pod('client', 'client', 'n1', '10.0.0.3'), pod('db', 'db', 'n2', '10.0.1.4'), cnp('client-web', 'client', [{ toEndpoints: [{ matchLabels: { app: 'web' } }] }]), identity(300, 'web', 'ADDED'), identity(301, 'client', 'ADDED'), identity(303, 'db', 'ADDED'), identity(310, 'lonely', 'ADDED'), ...first]);
  settle([fill('fill-web', 'web', 1000, filled)]);
  settle([identity(303, null, 'MODIFIED')]);
  if (engine.unreadableIdentities().length > 0) throw new Error('the stand-in of 303 fit');
  return { mirror, engine, settle };
}
