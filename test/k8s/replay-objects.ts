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

/** The objects (by name) after the first `n` events of `log`. */
export function stateAt(log: readonly { type: string; object: Obj }[], n: number): Map<string, Obj> {
  const m = new Map<string, Obj>();
  for (const e of log.slice(0, n)) {
    const name = String((e.object.metadata as Obj).name);
    if (e.type === 'DELETED') m.delete(name);
    else m.set(name, e.object);
  }
  return m;
}

/** Logs pod `p<i>` (at `ip`, on n2) changed at `rv` into `log` and `live`: deleted, or given its app; false if nothing to delete. */
export function podChange(log: { type: string; object: Obj; rv: number }[], live: Map<number, Obj>, op: { i: number; del: boolean; good: boolean }, rv: number, ip: string): boolean {
  const before = live.get(op.i);
  if (op.del && before === undefined) return false;
  const object = op.del ? { ...before!, metadata: { ...(before!.metadata as Obj), resourceVersion: String(rv) } } : pod(`p${op.i}`, rv, 'n2', op.good ? 'good' : 'bad', ip);
  log.push({ type: op.del ? 'DELETED' : before === undefined ? 'ADDED' : 'MODIFIED', object, rv });
  if (op.del) live.delete(op.i);
  else live.set(op.i, object);
  return true;
}

/** 2026-01-01T00:00:00Z: the expired-pod findings' clock start (3042, 3200). */
export const T0 = Date.parse('2026-01-01T00:00:00Z');
/** A Running pod of namespace `ns` at `ip` (x/server on n1, the others on n2), marked for deletion at `deleteAt`. */
export const at = (name: string, ns: string, rv: number, app: string, ip: string, deleteAt?: number): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: ns, resourceVersion: String(rv), labels: { app }, ...(deleteAt === undefined ? {} : { deletionTimestamp: new Date(deleteAt).toISOString(), deletionGracePeriodSeconds: 30 }) },
  spec: { nodeName: name === 'server' ? 'n1' : 'n2', containers: [{ name: 'c', image: 'i' }] },
  status: { phase: 'Running', podIP: ip },
});
export const namespace = (name: string, rv: number): Obj => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, resourceVersion: String(rv) } });
/** Ingress to app=server: app=evil denied, 10.0.0.0/8 (world addresses in it too) allowed. */
export const denyEvilAllowCidr: Obj = {
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumClusterwideNetworkPolicy',
  metadata: { name: 'p', resourceVersion: '3' },
  spec: { endpointSelector: { matchLabels: { app: 'server' } }, ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'evil' } }] }], ingress: [{ fromCIDR: ['10.0.0.0/8'] }] },
};

/** tmp added at `rv` and deleted at `rv + 1` on `send`: with `maxTombstones: 1` the tombstone before it is forgotten. */
export async function forgetLastTombstone(send: (type: string, object: Obj) => Promise<void>, rv: number): Promise<void> {
  await send('ADDED', pod('tmp', rv, 'n2', 'bad'));
  await send('DELETED', pod('tmp', rv + 1, 'n2', 'bad'));
}
