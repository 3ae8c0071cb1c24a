import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Agent } from '../src/agent/agent.js';
import { MemoryBackend } from '../src/backend/memory.js';
import { apiPages, feedHarness, netpol, pod, type Obj } from './k8s/paged-wire.js';

/*
 * Round 10g attacks: hostile paged Lists. A page sequence that is not one List's must not make a
 * relist of part of the cluster (which deletes the rest), nor apply half of one.
 */

const ns: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } };
const ev = (type: string, object: Obj): string => JSON.stringify({ type, object });
const NP = ['NetworkPolicy', 'networking.k8s.io/v1'] as const;

/** A mirror holding namespace shop and policies a (isolating app a) and b. */
function held() {
  const h = feedHarness();
  h.feed([ev('ADDED', ns), ev('ADDED', netpol('a', 2, 'a')), ev('ADDED', netpol('b', 3, 'b'))].join('\n'));
  h.flush();
  return h;
}

describe('10g-1. a page that repeats another page\'s items', () => {
  it('counts each object once, as its last listing; what no page listed is still deleted', () => {
    const h = held();
    const pages = apiPages(...NP, [netpol('a', 2, 'a'), netpol('c', 12, 'c')], 1, '20');
    // The second page lists a again (changed) instead of c; a third page lists c.
    const page2 = JSON.stringify({ kind: 'NetworkPolicyList', apiVersion: NP[1], metadata: { resourceVersion: '20', continue: 'page-2' }, items: [{ ...netpol('a', 14, 'a-changed'), kind: undefined, apiVersion: undefined }] });
    h.feed(pages[0]!);
    h.feed(page2);
    h.feed(pages[1]!);
    const events = h.flush();
    expect(events.map((e) => e.type).sort()).toEqual(['deletePolicy', 'upsertPolicy', 'upsertPolicy']);
    const a = events.find((e) => e.type === 'upsertPolicy' && e.policy.ref.name === 'a');
    expect(JSON.stringify(a)).toContain('a-changed');
  });
});

describe('10g-2. a `continue` that never ends', () => {
  it('never completes: nothing applied or deleted, the stream is reported, and repeated pages hold one copy of their objects', () => {
    const h = held();
    const page = (n: number): string => JSON.stringify({ kind: 'NetworkPolicyList', apiVersion: NP[1], metadata: { resourceVersion: '20', continue: `loop-${n}`, remainingItemCount: 1 }, items: [{ metadata: { name: 'x', namespace: 'shop', resourceVersion: '15' }, spec: { podSelector: {}, policyTypes: ['Ingress'] } }] });
    for (let n = 0; n < 2000; n++) h.feed(page(n));
    expect(h.flush()).toEqual([]);
    expect(h.mirror.counts.relists).toBe(0);
    expect(h.mirror.listsInProgress()).toEqual(['s']);
    h.mirror.endStream('s');
    const cut = h.warnings.find((w) => w.startsWith('List cut short'));
    expect(cut).toContain('"pages":2000');
    expect(cut).toContain('"items":1');
    expect(h.mirror.streamsAwaitingRelist()).toEqual(['s']);
  });

  it('the agent answers not ready while the List is read, and its first transaction waits for the last page', async () => {
    const work = mkdtempSync(join(tmpdir(), 'distill-att10g-'));
    try {
      const pods = Array.from({ length: 30 }, (_, i) => pod(`p${i}`, 10 + i, `10.0.0.${i + 1}`));
      const nsFile = join(work, 'ns.json');
      writeFileSync(nsFile, ev('ADDED', ns));
      const full = join(work, 'pods.json');
      const pages = apiPages('Pod', 'v1', pods, 7, '50');
      writeFileSync(full, pages.join('\n'));
      const cut = join(work, 'cut.json');
      writeFileSync(cut, pages.slice(0, 3).join('\n'));
      const run = async (file: string): Promise<Agent> => {
        const agent = new Agent({ node: 'node-b', watch: [nsFile, file], backend: new MemoryBackend(), logger: pino({ level: 'silent' }), registry: new Registry(), exitAtEof: true });
        await agent.run();
        await agent.stop();
        return agent;
      };
      const whole = await run(full);
      expect(whole.summary.transactions).toBe(1);
      expect(whole.mirror.localEndpoints()).toHaveLength(30);
      expect(whole.notReady).toBeUndefined();
      const short = await run(cut);
      expect(short.mirror.localEndpoints()).toEqual([]);
      expect(short.notReady).toMatch(/List cut short.*cut\.json/);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});

describe('10g-3. a page of another kind in the middle', () => {
  it('breaks the List: neither it nor the List\'s pages are applied, and the List\'s tail is not taken for a whole List', () => {
    const h = held();
    const pages = apiPages(...NP, [netpol('a', 2, 'a'), netpol('b', 3, 'b'), netpol('c', 12, 'c')], 1, '20');
    h.feed(pages[0]!);
    // A PodList page listing nothing, without `continue`: a List of pods that would delete every pod.
    h.feed(JSON.stringify({ kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: '20' }, items: [] }));
    h.feed(pages[1]!);
    // The tail: one page listing only c, without `continue`. Taken for a whole List it would delete a and b.
    h.feed(pages[2]!);
    expect(h.flush()).toEqual([]);
    expect(h.mirror.streamsAwaitingRelist()).toEqual(['s']);
    expect(h.warnings.some((w) => w.includes('a page of PodList v1 in a List of NetworkPolicyList'))).toBe(true);
    // The next List is whole again.
    for (const p of apiPages(...NP, [netpol('a', 2, 'a'), netpol('c', 12, 'c')], 1, '30')) h.feed(p);
    expect(h.mirror.streamsAwaitingRelist()).toEqual([]);
    expect(h.flush().map((e) => e.type).sort()).toEqual(['deletePolicy', 'upsertPolicy']);
  });

  it('a page at another resourceVersion (not the snapshot the continue token names) breaks the List too', () => {
    const h = held();
    const pages = apiPages(...NP, [netpol('a', 2, 'a'), netpol('c', 12, 'c')], 1, '20');
    h.feed(pages[0]!);
    h.feed(pages[1]!.replace('"resourceVersion":"20"', '"resourceVersion":"21"'));
    expect(h.flush()).toEqual([]);
    expect(h.mirror.counts.relists).toBe(0);
    expect(h.mirror.streamsAwaitingRelist()).toEqual(['s']);
  });

  it('a streamed item of another kind in a typed List is skipped, not listed', () => {
    const h = held();
    h.feed(`{"kind":"NetworkPolicyList","apiVersion":"networking.k8s.io/v1","metadata":{"resourceVersion":"20"},"items":[${JSON.stringify(netpol('a', 2, 'a'))},${JSON.stringify({ ...pod('p', 3, '10.0.0.9'), metadata: { name: 'b', namespace: 'shop' } })}]}`);
    // b was not listed (the Pod named b is no NetworkPolicy): b is deleted, no pod appears.
    expect(h.flush().map((e) => e.type)).toEqual(['deletePolicy']);
  });
});

describe('10g-4. remainingItemCount that lies', () => {
  it('0 on a page with `continue` does not end the List; a large count on a page without one does not keep it open', () => {
    const h = held();
    const meta = (extra: Obj): Obj => ({ resourceVersion: '20', ...extra });
    const item = (name: string, app: string): Obj => ({ metadata: { name, namespace: 'shop', resourceVersion: '12' }, spec: { podSelector: { matchLabels: { app } }, policyTypes: ['Ingress'] } });
    h.feed(JSON.stringify({ kind: 'NetworkPolicyList', apiVersion: NP[1], metadata: meta({ continue: 'x', remainingItemCount: 0 }), items: [item('a', 'a')] }));
    expect(h.flush()).toEqual([]);
    expect(h.mirror.counts.relists).toBe(0);
    h.feed(JSON.stringify({ kind: 'NetworkPolicyList', apiVersion: NP[1], metadata: meta({ remainingItemCount: 100000 }), items: [item('c', 'c')] }));
    expect(h.mirror.counts.relists).toBe(1);
    expect(h.mirror.listsInProgress()).toEqual([]);
    expect(h.flush().map((e) => e.type).sort()).toEqual(['deletePolicy', 'upsertPolicy']);
  });
});

describe('10g-5. Lists the item-by-item reader refuses', () => {
  it('an object with two `items` keys (an escaped one included), or an `items` array that is no List', () => {
    const item = JSON.stringify(netpol('x', 9, 'x'));
    expect(() => feedHarness().feed(`{"kind":"NetworkPolicyList","apiVersion":"networking.k8s.io/v1","items":[${item}],"\\u0069tems":[]}`)).toThrow('s#1 items: appears twice');
    expect(() => feedHarness().feed(`{"type":"ADDED","object":${item},"items":[${item}]}`)).toThrow('must be a List');
    expect(() => feedHarness().feed(`{"kind":"NetworkPolicyList","items":[${item} ${item}]}`)).toThrow('s#1 items[1]: unexpected "{" after an item');
    expect(() => feedHarness().feed(`{"kind":"NetworkPolicyList","items":[1]}`)).toThrow('s#1 items[0]: is not an object');
  });

  it('an item refused half-way through a List leaves nothing of it applied once the stream is closed', () => {
    const h = held();
    expect(() => h.feed(`{"kind":"NetworkPolicyList","apiVersion":"networking.k8s.io/v1","metadata":{},"items":[${JSON.stringify(netpol('c', 9, 'c'))},7]}`)).toThrow('is not an object');
    h.mirror.endStream('s');
    expect(h.flush()).toEqual([]);
    expect(h.mirror.streamsAwaitingRelist()).toEqual(['s']);
  });
});
