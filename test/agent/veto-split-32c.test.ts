import { describe, expect, it } from 'vitest';
import type { WatchItem } from '../../src/k8s/watch.js';
import { DEFAULT_MAP_CAPACITY } from '../../src/model/policy-map.js';
import { parseIp } from '../../src/model/cidr.js';
import { cnp, deleted, identity, meta, pod } from './crd-fixtures.js';
import { crdAgent, full } from './stale-agent.js';

/**
 * Finding 3032 (31b), fixed in 32c (3360). CRD identities; 303 (db) turns unreadable and waits (filler's map has no
 * room for its deny). client's egress is isolated (`iso`: app=zzz) and may reach app=web (`client-web`). One step
 * relabels a remote pod q (10.0.1.9) from app=other to app=web, adds a remote pod r, deletes `client-web` and adds
 * `client-db`: before the step q is not web (denied), after it no rule lets client reach web (denied). The batch opens
 * 303 (`client-db`), so the agent vetoes it, and the base halved it without the held phase: client-db vetoed alone,
 * then {q, r} committed while `client-web` was still in, and client → 10.0.1.9 was allowed.
 */
const Q = '10.0.1.9';
const q = (app: string, type: 'ADDED' | 'MODIFIED'): WatchItem => ({ type, object: { apiVersion: 'v1', kind: 'Pod', metadata: meta('q', { namespace: 'shop', labels: { app } }), spec: { nodeName: 'n2', containers: [] }, status: { phase: 'Running', podIP: Q } } });

describe('3360 (31b, 3032): a vetoed batch retried in parts', { timeout: 240_000 }, () => {
  it('never commits a part allowing what the inputs before and after the step deny', () => {
    const { a, settle } = crdAgent();
    const filler = full(DEFAULT_MAP_CAPACITY - 2);
    const clientWeb = cnp('client-web', 'client', [{ toEndpoints: [{ matchLabels: { app: 'web' } }] }]);
    settle([cnp('iso', 'client', [{ toEndpoints: [{ matchLabels: { app: 'zzz' } }] }]), clientWeb, q('other', 'ADDED'), identity(305, 'other', 'ADDED'), filler]);
    const toQ = (): string => {
      const hit = a.engine.lookup('shop/client', a.engine.identityOfIp(parseIp(Q)), 'egress', 6, 80);
      return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
    };
    expect(a.mirror.refusedObjects()).toEqual([]);
    expect(toQ()).toBe('deny');
    settle([identity(303, null, 'MODIFIED')]);
    expect(a.mirror.refusedObjects()).toEqual(['CiliumIdentity//303']);
    const verdicts: string[] = [];
    let vetoed = 0;
    const apply = a.instrumented.apply.bind(a.instrumented);
    a.instrumented.apply = (events, veto) => {
      const out = apply(events, veto);
      if (out.ok) verdicts.push(toQ());
      else if (out.error.name === 'TransactionVetoedError') vetoed++;
      return out;
    };
    settle([q('web', 'MODIFIED'), pod('r', 'other', 'n2', '10.0.1.10'), deleted(clientWeb), cnp('client-db', 'client', [{ toEndpoints: [{ matchLabels: { app: 'db' } }] }])]);
    expect(vetoed).toBeGreaterThan(0);
    expect(verdicts.length).toBeGreaterThan(0);
    expect(verdicts.filter((v) => v !== 'deny')).toEqual([]);
    expect(a.engine.identityOfPod('shop/q')).toBe(300);
    expect(toQ()).toBe('deny');
    // Liveness: room for 303's deny, everything commits.
    settle([deleted(filler)]);
    expect(a.mirror.refusedObjects()).toEqual([]);
  });
});
