import { describe, expect, it } from 'vitest';
import { watchInformer, type InformerLike } from '../src/k8s/informer.js';
import { mirrorAgent } from './k8s/mirror-agent.js';
import { allowGood, ev, expired, pod, podList } from './k8s/replay-objects.js';

type Obj = Record<string, unknown>;
const endAt = (rv: number): string => ev('BOOKMARK', { apiVersion: 'v1', kind: 'Pod', metadata: { resourceVersion: String(rv), annotations: { 'k8s.io/initial-events-end': 'true' } } });
const server = (): Obj => pod('server', 1, 'n1', 'server', '10.0.0.1');

/** 2841's gap (old ran at 10.0.0.9 at 4, was deleted at 5, evil took the address at 6), relisted at 10 by `relist`. */
function afterGap(relist: string[]): ReturnType<typeof mirrorAgent> {
  const a = mirrorAgent('n1', { maxTombstones: 1 });
  a.step('pods', ev('ADDED', server()), ev('ADDED', pod('old', 2, 'n2', 'good')));
  a.step('policies', ev('ADDED', allowGood));
  a.step('pods', expired, ...relist);
  expect(a.verdict('10.0.0.9')).toBe('none');
  // One more delete: with the bound at 1 its tombstone evicts old's.
  a.step('pods', ev('ADDED', pod('tmp', 11, 'n2', 'bad')), ev('DELETED', pod('tmp', 12, 'n2', 'bad')));
  return a;
}

describe('2960. a replayed older event of a deleted object whose tombstone was evicted stays dropped (2925)', () => {
  it('after a PodList at 10: old\'s Running event at 4 is older than the stream showed for pods', () => {
    const a = afterGap([podList(10, [server(), pod('evil', 6, 'n2', 'bad', '10.0.0.9')])]);
    const stale = a.mirror.counts.stale;
    a.step('pods', ev('MODIFIED', pod('old', 4, 'n2', 'good', '10.0.0.9')));
    expect(a.verdict('10.0.0.9')).toBe('none');
    expect(a.mirror.counts.stale).toBe(stale + 1);
  });
  it('after a watch-list\'s initial events ending at 10', () => {
    const a = afterGap([ev('ADDED', server()), ev('ADDED', pod('evil', 6, 'n2', 'bad', '10.0.0.9')), endAt(10)]);
    a.step('pods', ev('MODIFIED', pod('old', 4, 'n2', 'good', '10.0.0.9')));
    expect(a.verdict('10.0.0.9')).toBe('none');
  });
  it('on a watch past its first MODIFIED (no relist): a replayed ADDED older than the stream showed', () => {
    const a = mirrorAgent('n1', { maxTombstones: 1 });
    a.step('policies', ev('ADDED', allowGood));
    a.step('pods', ev('ADDED', server()), ev('ADDED', pod('old', 2, 'n2', 'good')), ev('MODIFIED', pod('old', 4, 'n2', 'good', '10.0.0.9')));
    a.step('pods', ev('DELETED', pod('old', 5, 'n2', 'good', '10.0.0.9')), ev('ADDED', pod('evil', 6, 'n2', 'bad', '10.0.0.9')));
    a.step('pods', ev('ADDED', pod('tmp', 7, 'n2', 'bad')), ev('DELETED', pod('tmp', 8, 'n2', 'bad')));
    a.step('pods', ev('ADDED', pod('old', 4, 'n2', 'good', '10.0.0.9')));
    expect(a.verdict('10.0.0.9')).toBe('none');
  });
});

/** On `source`: pods a and b deleted at 10 and 12: with the bound at 1, a's tombstone (at 10) is forgotten. */
function forgetting(a: ReturnType<typeof mirrorAgent>, source: string): void {
  a.step(source, ev('ADDED', pod('a', 8, 'n2', 'bad')), ev('ADDED', pod('b', 9, 'n2', 'bad')), ev('DELETED', pod('a', 10, 'n2', 'bad')), ev('DELETED', pod('b', 12, 'n2', 'bad')));
}

describe('2960. the same after an ERROR on a stream that showed a whole view', () => {
  it('a replayed ADDED among a watch-list\'s initial events stays dropped', () => {
    const a = forgot(podList(5, [server()]));
    a.step('pods', expired, ev('ADDED', server()), ev('ADDED', pod('a', 9, 'n2', 'good', '10.0.0.7')), endAt(30));
    expect(a.verdict('10.0.0.7')).toBe('none');
  });
});

/** allow-good, then on stream pods `first` (server) and `forgetting`. */
function forgot(first: string): ReturnType<typeof mirrorAgent> {
  const a = mirrorAgent('n1', { maxTombstones: 1 });
  a.step('policies', ev('ADDED', allowGood));
  a.step('pods', first);
  forgetting(a, 'pods');
  return a;
}

describe('2961. what the rule must not drop: an initial state comes in any order', () => {
  it('a watch-list\'s initial events after an ERROR, older than a forgotten tombstone, are all taken', () => {
    const a = forgot(ev('ADDED', server()));
    // The stream never showed a whole view (a watch started at a version): g, created at 4, is in its first one.
    a.step('pods', expired, ev('ADDED', server()), ev('ADDED', pod('g', 4, 'n2', 'good', '10.0.0.9')), endAt(30));
    expect(a.verdict('10.0.0.9')).toBe('allow');
  });
  it('a List\'s items are a snapshot: older items of objects the stream never showed are taken', () => {
    const a = forgot(ev('ADDED', server()));
    a.step('pods', expired, podList(30, [server(), pod('g', 4, 'n2', 'good', '10.0.0.9')]));
    expect(a.verdict('10.0.0.9')).toBe('allow');
  });
  it('a watch resumed after an ERROR: its held ADDED events are taken, then a replay is dropped again', () => {
    const a = forgot(ev('ADDED', server()));
    a.step('pods', expired, ev('ADDED', pod('g', 4, 'n2', 'good', '10.0.0.9')), ev('MODIFIED', pod('server', 22, 'n1', 'server', '10.0.0.1')));
    expect(a.verdict('10.0.0.9')).toBe('allow');
    a.step('pods', ev('MODIFIED', pod('a', 9, 'n2', 'good', '10.0.0.7')));
    expect(a.verdict('10.0.0.7')).toBe('none');
  });
  it('a new stream under the same name (the watch restarted after its end): its initial events are taken', () => {
    const a = forgot(podList(5, [server()]));
    a.mirror.endStream('pods');
    a.step('pods', ev('ADDED', server()), ev('ADDED', pod('g', 4, 'n2', 'good', '10.0.0.9')));
    expect(a.verdict('10.0.0.9')).toBe('allow');
  });
  it('another stream of the same kind (pods watched per namespace) has its own tombstones\' bound', () => {
    const a = forgot(ev('ADDED', server()));
    a.step('pods-y', ev('MODIFIED', pod('h', 3, 'n2', 'bad', '10.0.0.8')), ev('ADDED', pod('g', 4, 'n2', 'good', '10.0.0.9')));
    expect(a.verdict('10.0.0.9')).toBe('allow');
  });
  it('another kind on the same stream has its own (kubectl get pods,cnp interleaves two watches)', () => {
    const a = mirrorAgent('n1', { maxTombstones: 1 });
    a.step('w', ev('ADDED', server()));
    forgetting(a, 'w');
    a.step('w', ev('MODIFIED', { ...allowGood, metadata: { name: 'other', resourceVersion: '2' }, spec: { endpointSelector: { matchLabels: { app: 'other' } }, ingress: [{}] } }), ev('ADDED', allowGood), ev('ADDED', pod('g', 20, 'n2', 'good', '10.0.0.9')), ev('ADDED', pod('h', 21, 'n2', 'bad', '10.0.0.8')));
    // Without allow-good server enforces nothing: bad is admitted too.
    expect([a.verdict('10.0.0.9'), a.verdict('10.0.0.8')]).toEqual(['allow', 'none']);
  });
  it('an informer\'s relist gives updates and adds in any order: never dropped', () => {
    const a = mirrorAgent('n1', { maxTombstones: 1 });
    const handlers = new Map<string, (obj: object) => void>();
    const informer = { on: (verb: string, cb: (obj: object) => void): void => void handlers.set(verb, cb) } as InformerLike;
    watchInformer(informer, a.mirror, { kind: 'Pod', apiVersion: 'v1' });
    const emit = (verb: string, obj: Obj): void => handlers.get(verb)!(obj);
    a.step('policies', ev('ADDED', allowGood));
    emit('add', server());
    for (const [verb, p] of [['add', pod('a', 8, 'n2', 'bad')], ['add', pod('b', 9, 'n2', 'bad')], ['delete', pod('a', 10, 'n2', 'bad')], ['delete', pod('b', 12, 'n2', 'bad')]] as const) emit(verb, p);
    // The relist after a 410: an update and an add, in the order of its List. g was created in the watch's gap: newer
    // than what the informer gave before (one older would be a replay, 3040), older than the update before it.
    emit('update', pod('server', 30, 'n1', 'server', '10.0.0.1'));
    emit('add', pod('g', 25, 'n2', 'good', '10.0.0.9'));
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('allow');
  });
  it('versions that are not integers are not compared', () => {
    const a = forgot(ev('ADDED', server()));
    a.step('pods', ev('MODIFIED', pod('server', 30, 'n1', 'server', '10.0.0.1')), ev('ADDED', { ...pod('g', 0, 'n2', 'good', '10.0.0.9'), metadata: { name: 'g', namespace: 'x', resourceVersion: 'abc', labels: { app: 'good' } } }));
    expect(a.verdict('10.0.0.9')).toBe('allow');
  });
});
