/** Watch-stream lines and objects of the replay findings (2841, 2925/2960): pods in namespace x, an allow of app=good. */
type Obj = Record<string, unknown>;

export const ev = (type: string, object: Obj): string => JSON.stringify({ type, object });
export const podList = (rv: number, items: Obj[]): string => JSON.stringify({ apiVersion: 'v1', kind: 'PodList', metadata: { resourceVersion: String(rv) }, items });

/** A pod of namespace x on `node`: Running at `ip`, or Pending without one. */
export const pod = (name: string, rv: number, node: string, app: string, ip?: string): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'x', resourceVersion: String(rv), labels: { app } },
  spec: { nodeName: node, containers: [{ name: 'c', image: 'i' }] },
  status: ip === undefined ? { phase: 'Pending' } : { phase: 'Running', podIP: ip },
});

/** Ingress to app=server from app=good only. */
export const allowGood = { apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name: 'allow-good', resourceVersion: '3' }, spec: { endpointSelector: { matchLabels: { app: 'server' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'good' } }] }] } };

/** A watch's 410 Gone. */
export const expired = ev('ERROR', { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410 });
