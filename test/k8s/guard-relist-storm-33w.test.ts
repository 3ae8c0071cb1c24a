import { describe, expect, it } from 'vitest';
import { mirrorAgent } from './mirror-agent.js';
import { recordedInformer } from './recorded-informer.js';
import { allowGood, ev, pod } from './replay-objects.js';

type Obj = Record<string, unknown>;

const server = (): Obj => pod('server', 1, 'n1', 'server', '10.0.0.1');
const g = (rv: string, uid: string, app: string): Obj => {
  const p = pod('g', 0, 'n2', app, '10.0.0.9');
  return { ...p, metadata: { ...(p.metadata as Obj), resourceVersion: rv, uid } };
};

describe('3921. guard, opaque versions: a replay repeated after the relist it forced does not force another', () => {
  // Before (4d9ba6e5): each repetition forced a List (`expected 4 to be 2`): a server replaying its history at each
  // watch start kept the informer listing for good, without an error.
  it('the List confirmed the held incarnation: the same replay is dropped', async () => {
    const a = mirrorAgent('n1');
    a.step('policies', ev('ADDED', allowGood));
    const live = g('a8', 'u2', 'bad');
    const inf = await recordedInformer(a.mirror, [[server(), live], [server(), live]], ['a9', 'a20'], undefined, true);
    for (let i = 0; i < 3; i++) await inf.send('ADDED', g('a4', 'u1', 'good'));
    expect(inf.lists()).toBe(2);
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('none');
    expect((inf.informer.get('g', 'x')?.metadata as Obj).uid).toBe('u2');
    // Another replay, or the held one changed since: a List again.
    await inf.send('MODIFIED', g('a5', 'u1', 'good'));
    expect(inf.lists()).toBe(3);
  });
  it('a ghost the guard passed is still replaced by the genuine incarnation', async () => {
    const a = mirrorAgent('n1');
    a.step('policies', ev('ADDED', allowGood));
    const inf = await recordedInformer(a.mirror, [[server()], [server(), g('a9', 'u2', 'bad')]], ['a3', 'a20'], undefined, true);
    await inf.send('ADDED', g('a4', 'u1', 'good'));
    for (let i = 0; i < 2; i++) await inf.send('ADDED', g('a9', 'u2', 'bad'));
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('none');
    expect(inf.lists()).toBe(2);
  });
});
