import { describe, expect, it } from 'vitest';
import { applyChangeSet, MapBackend } from '../../src/backend/backend.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import { Engine } from '../../src/engine/engine.js';
import type { ChangeSet, EngineEvent, IpcacheDelta } from '../../src/engine/events.js';
import { steppedBackend } from './stepped-backend.js';
import { parseIp } from '../../src/model/cidr.js';
import { parseManifest } from '../../src/policy/manifest.js';

/*
 * A pod that changes identity moves in the ipcache and in the policy maps in one transaction.
 * Every state a datapath can see on the way, one operation at a time, must allow no flow that both
 * the old and the new state deny (docs/semantics.md, "Failure modes"). Here a remote pod P is
 * relabelled from app=x to app=y; endpoint A allows port 80 from everyone and denies app in (x, y).
 * Its deny for P's old identity is deleted and one for the new identity added: were the ipcache
 * written after the policy maps, P would meet A's map under its old identity with no deny left,
 * and the identity-0 allow would let it in.
 */
const POLICY = parseManifest(
  {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: { name: 'a', namespace: 'ns' },
    spec: {
      endpointSelector: { matchLabels: { app: 'a' } },
      ingress: [{ fromEntities: ['all'], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }],
      ingressDeny: [{ fromEndpoints: [{ matchExpressions: [{ key: 'app', operator: 'In', values: ['x', 'y'] }] }] }],
    },
  },
  'policy.yaml',
);
const P_IP = '10.0.9.9';
const pod = (name: string, app: string, ip: string, local: boolean): EngineEvent => ({
  type: 'upsertPod',
  pod: { namespace: 'ns', name, labels: { app }, ip: parseIp(ip), serviceAccount: 'default', ports: [] },
  local,
});

/** Policy maps and an ipcache written one operation at a time, checking P → A:80 after each. */
class SteppedNode {
  readonly maps = new MemoryBackend();
  readonly ipcache = new Map<string, number>();
  /** P → A:80 allowed, after each operation. */
  readonly seen: boolean[] = [];

  readonly stepped: MapBackend = steppedBackend(this.maps, () => this.check());

  writeIpcache(deltas: readonly IpcacheDelta[]): void {
    for (const d of deltas) {
      if (d.op === 'delete') this.ipcache.delete(d.prefix);
      else this.ipcache.set(d.prefix, d.identity);
      this.check();
    }
  }

  allowed(): boolean {
    const peer = this.ipcache.get(`${P_IP}/32`) ?? 2; // world when P has no entry
    const v = backendLookup(this.maps, 'ns/a', peer, 'ingress', 6, 80);
    return v !== undefined && !v.entry.deny;
  }

  private check(): void {
    this.seen.push(this.allowed());
  }
}

function relabel(order: 'between phases' | 'after the maps'): SteppedNode {
  const engine = new Engine();
  const node = new SteppedNode();
  const write = (cs: ChangeSet): void => {
    if (order === 'between phases') applyChangeSet(node.stepped, cs, () => node.writeIpcache(cs.ipcache));
    else {
      applyChangeSet(node.stepped, cs);
      node.writeIpcache(cs.ipcache);
    }
  };
  write(engine.apply([{ type: 'upsertNamespace', name: 'ns', labels: {} }, pod('a', 'a', '10.0.0.1', true), pod('p', 'x', P_IP, false), { type: 'upsertPolicy', policy: POLICY }]));
  expect(node.allowed(), 'P (app=x) is denied before').toBe(false);
  node.seen.length = 0;
  const before = engine.identityOfPod('ns/p');
  write(engine.apply([pod('p', 'y', P_IP, false)]));
  expect(engine.identityOfPod('ns/p')).not.toBe(before);
  expect(node.allowed(), 'P (app=y) is denied after').toBe(false);
  return node;
}

describe('the ipcache is written between the policy maps’ tighten and loosen phases', () => {
  it('a pod changing identity is denied in every intermediate state (policy ops and ipcache ops, one at a time)', () => {
    const node = relabel('between phases');
    expect(node.seen.length).toBeGreaterThanOrEqual(3);
    expect(node.seen).not.toContain(true);
  });

  it('the same check catches the ipcache written after the maps: the old identity meets the identity-0 allow', () => {
    const node = relabel('after the maps');
    expect(node.seen).toContain(true);
  });
});
