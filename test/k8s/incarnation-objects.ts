import { mirrorAgent } from './mirror-agent.js';
import { ev, pod } from './replay-objects.js';

type Obj = Record<string, unknown>;

/** `o` at the opaque resourceVersion `rv`, of incarnation `uid`. */
export const at = (o: Obj, rv: string, uid: string): Obj => ({ ...o, metadata: { ...(o.metadata as Obj), resourceVersion: rv, uid } });
const ccnp = (name: string, spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name }, spec });
const toServer = { matchLabels: { app: 'server' } };
/** allow-x's first incarnation allows app=bad, its second app=good only. */
export const allowXBad = ccnp('allow-x', { endpointSelector: toServer, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'bad' } }] }] });
export const allowXGood = ccnp('allow-x', { endpointSelector: toServer, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'good' } }] }] });

/** Isolates x/server (allows app=good only): without allow-x, app=bad is denied ('none'). */
export const isolate = at(ccnp('isolate', { endpointSelector: toServer, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'good' } }] }] }), 'z1', 'i1');

/** The 3920 conflict: ghost p1 (allows app=bad) replayed onto its tombstone, then the genuine p2's ADDED and DELETED dropped. */
export function conflictedAgent(): ReturnType<typeof mirrorAgent> {
  const a = mirrorAgent('n1');
  a.step('pods', ev('ADDED', pod('server', 1, 'n1', 'server', '10.0.0.1')), ev('ADDED', pod('b', 2, 'n2', 'bad', '10.0.0.7')));
  a.step('policies', ev('ADDED', isolate), ev('ADDED', at(allowXBad, 'z4', 'p1')), ev('DELETED', at(allowXBad, 'z5', 'p1')));
  a.step('policies', ev('ADDED', at(allowXBad, 'z4', 'p1')));
  a.step('policies', ev('ADDED', at(allowXGood, 'z8', 'p2')), ev('DELETED', at(allowXGood, 'z9', 'p2')));
  return a;
}
