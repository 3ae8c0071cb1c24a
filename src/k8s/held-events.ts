import type { EngineEvent } from '../engine/events.js';
import { nodeEndpointsOf, type NodeHold } from '../model/cluster.js';
import type { IpAddress } from '../model/cidr.js';
import type { Held } from './held.js';
import type { IdentityEvent, NodeAddresses } from './objects.js';

/** What an agent feeds its engine: engine events, and identity events (external identities). */
export type AgentEvent = EngineEvent | IdentityEvent;

/**
 * The events from what the engine holds (`held`) to `next` (key → what it should hold; undefined:
 * nothing), in batch order (`rank`); a node's objects make one node event, the API server's slices one. `resend`:
 * objects the engine holds, upserted again as they are.
 */
export function eventsFor(held: ReadonlyMap<string, Held>, next: ReadonlyMap<string, Held | undefined>, resend: readonly Held[] = []): AgentEvent[] {
  const order: AgentEvent[][] = [[], [], [], [], [], []];
  const nodes = new Set<string>();
  let apiServer = false;
  const deletedIds = new Set<number>();
  let remaining: ReadonlyMap<number, readonly [string, Held & { kind: 'Identity' }][]> | undefined;
  for (const [key, want] of next) {
    const had = held.get(key);
    if ((want ?? had)?.kind === 'ApiServer') apiServer = true;
    else if ((want ?? had)?.kind === 'Node') nodes.add(key.slice(key.lastIndexOf('/') + 1));
    else if (want !== undefined) order[rank(want, true)]!.push(upsertOf(want));
    else if (had?.kind === 'Identity') {
      const e = identityDeleteEvent(key, had, held, next, (remaining ??= remainingIdentities(held, next)));
      // Two objects of one number deleted together: one delete (the engine refuses a second, the batch with it).
      if (e?.type === 'deleteIdentity' && deletedIds.has(e.id)) continue;
      if (e?.type === 'deleteIdentity') deletedIds.add(e.id);
      if (e) order[rank(had, e.type === 'upsertIdentity')]!.push(e);
    } else if (had !== undefined) order[rank(had, false)]!.push(deleteOf(had));
  }
  // Written again as they are held, after the pods' upserts and deletes (finding 3362).
  for (const h of resend) order[3]!.push(upsertOf(h));
  for (const name of nodes) {
    const e = nodeEvent(name, held, next);
    if (e) order[e.type === 'upsertNode' ? 0 : 5]!.push(e);
  }
  if (apiServer) order[0]!.push(apiServerEvent(held, next));
  return order.flat();
}

/**
 * A CiliumIdentity object deleted while another object names the same number (`0303` and `303`: both
 * strconv.ParseUint to 303). Cilium's cache drops the number on either delete (pkg/allocator/cache.go
 * `OnDelete` deletes by id, whatever the key), a restarted agent reads the remaining object's labels: the
 * number is held as the remaining object's fail-closed stand-in (denied by every local map), never deleted
 * (a deleted number met only wildcard entries, `fromEntities: [all]` admitted it past a deny on the remaining
 * object's labels: review 27v, finding 2325). The remaining object's own upsert in this batch, when there is one, stands.
 */
function identityDeleteEvent(
  key: string,
  had: Held & { kind: 'Identity' },
  held: ReadonlyMap<string, Held>,
  next: ReadonlyMap<string, Held | undefined>,
  remaining: ReadonlyMap<number, readonly [string, Held & { kind: 'Identity' }][]>,
): AgentEvent | undefined {
  const others = (remaining.get(had.id) ?? []).filter(([k]) => k !== key);
  if (others.length === 0) return deleteOf(had);
  if (others.some(([k]) => next.get(k) !== undefined && held.get(k) !== next.get(k))) return undefined;
  const [, h] = others[0]!;
  return { type: 'upsertIdentity', id: h.id, labels: h.labels, unreadable: true };
}

/** The identity objects held after this batch, by number. */
function remainingIdentities(held: ReadonlyMap<string, Held>, next: ReadonlyMap<string, Held | undefined>): Map<number, [string, Held & { kind: 'Identity' }][]> {
  const out = new Map<number, [string, Held & { kind: 'Identity' }][]>();
  for (const k of new Set([...held.keys(), ...next.keys()])) {
    const h = next.has(k) ? next.get(k) : held.get(k);
    if (h?.kind !== 'Identity') continue;
    let list = out.get(h.id);
    if (list === undefined) out.set(h.id, (list = []));
    list.push([k, h]);
  }
  return out;
}

/**
 * The API server's addresses: those of every EndpointSlice of default/kubernetes together, as
 * Cilium lists the Service's backends (pkg/ipcache/cell/apiserver_watcher.go). None left (all
 * deleted) is an empty set, not an unknown one: Cilium then removes the label from every address.
 */
function apiServerEvent(held: ReadonlyMap<string, Held>, next: ReadonlyMap<string, Held | undefined>): AgentEvent {
  const keys = new Set([...held.keys(), ...next.keys()]);
  const addresses: IpAddress[] = [];
  const heldIps: IpAddress[] = [];
  const add = (to: IpAddress[], ip: IpAddress): void => void (to.some((o) => o.text === ip.text) || to.push(ip));
  for (const k of keys) {
    const h = next.has(k) ? next.get(k) : held.get(k);
    if (h?.kind !== 'ApiServer') continue;
    for (const ip of h.addresses) add(addresses, ip);
    for (const ip of h.held ?? []) add(heldIps, ip);
  }
  // A slice held fail-closed (`failClosedSlice`): its changing addresses.
  return { type: 'setApiServer', addresses, ...(heldIps.length > 0 ? { held: heldIps } : {}) };
}

/**
 * One engine node per name, with the addresses of its Node and its CiliumNode object together
 * (Cilium's node manager takes every address of either into the ipcache).
 */
function nodeEvent(name: string, held: ReadonlyMap<string, Held>, next: ReadonlyMap<string, Held | undefined>): AgentEvent | undefined {
  const keys = [`Node//${name}`, `CiliumNode//${name}`];
  const nodeOfKey = (h: Held | undefined): NodeAddresses | undefined => (h?.kind === 'Node' ? h.node : undefined);
  const after = keys.map((k) => nodeOfKey(next.has(k) ? next.get(k) : held.get(k))).filter((n): n is NodeAddresses => n !== undefined);
  const ips = after.flatMap((n) => n.ips).filter((ip, i, all) => all.findIndex((o) => o.text === ip.text) === i);
  const endpoints = nodeEndpointsOf({ health: after.flatMap((n) => n.health ?? []), ingress: after.flatMap((n) => n.ingress ?? []) });
  // The labels of the Node object, else of the CiliumNode (`nodes` peers select on them).
  // One of its objects held fail-closed (`failClosedNode`) holds the node so; in the strictest form one is held in.
  const hold = (['addresses', 'allPorts', true] as const).find((form: NodeHold) => after.some((n) => n.failClosed === form));
  const failClosed = hold === undefined ? {} : { failClosed: hold };
  if (ips.length > 0) return { type: 'upsertNode', name, ips, local: after[0]!.local, ...endpoints, labels: after[0]!.labels, ...failClosed };
  return keys.some((k) => held.has(k)) ? { type: 'deleteNode', name } : undefined;
}

/** Batch position: identities, namespaces, nodes, CIDR groups, policies, pods and CiliumEndpoints (upserts) then pod and endpoint, policy, node, group, namespace deletes. */
export function rank(h: Held, upsert: boolean): number {
  if (h.kind === 'Identity' || h.kind === 'Node' || h.kind === 'ApiServer') return upsert ? 0 : 5;
  if (h.kind === 'Namespace' || h.kind === 'CidrGroup') return upsert ? 0 : 5;
  if (h.kind === 'Policy') return upsert ? 1 : 4;
  return upsert ? 2 : 3;
}

function upsertOf(h: Held): AgentEvent {
  switch (h.kind) {
    case 'Namespace':
      return { type: 'upsertNamespace', name: h.name, labels: h.labels };
    case 'Pod':
      return { type: 'upsertPod', pod: h.pod, local: h.local, ...(h.node !== undefined ? { node: h.node } : {}) };
    case 'Policy':
      return { type: 'upsertPolicy', policy: h.policy };
    case 'Identity':
      return { type: 'upsertIdentity', id: h.id, labels: h.labels, ...(h.unreadable ? { unreadable: true } : {}) };
    case 'Node':
      return { type: 'upsertNode', name: h.node.name, ips: h.node.ips, local: h.node.local, ...nodeEndpointsOf(h.node), labels: h.node.labels, ...(h.node.failClosed !== undefined ? { failClosed: h.node.failClosed } : {}) };
    case 'CidrGroup':
      if (h.group === undefined) throw new Error('internal: a CIDR group that cannot be read is never sent (EngineBatches.wanted)');
      return { type: 'upsertCidrGroup', group: h.group };
    case 'Endpoint':
      return { type: 'upsertEndpoint', ...h.endpoint };
    case 'ApiServer':
      throw new Error('internal: API server slices make one setApiServer event (apiServerEvent)');
  }
}

function deleteOf(h: Held): AgentEvent {
  switch (h.kind) {
    case 'Namespace':
      return { type: 'deleteNamespace', name: h.name };
    case 'Pod':
      return { type: 'deletePod', namespace: h.pod.namespace, name: h.pod.name };
    case 'Policy':
      return { type: 'deletePolicy', ref: h.policy.ref };
    case 'Identity':
      return { type: 'deleteIdentity', id: h.id };
    case 'Node':
      return { type: 'deleteNode', name: h.node.name };
    case 'CidrGroup':
      return { type: 'deleteCidrGroup', name: h.name };
    case 'Endpoint':
      return { type: 'deleteEndpoint', namespace: h.endpoint.namespace, name: h.endpoint.name };
    case 'ApiServer':
      throw new Error('internal: API server slices make one setApiServer event (apiServerEvent)');
  }
}
