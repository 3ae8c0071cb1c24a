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
