import type { IpAddress } from '../model/cidr.js';
import type { Pod } from '../model/cluster.js';
import type { ContainerPort } from '../model/ports.js';
import type { LabelSet } from '../model/labels.js';
import type { LookupResult } from '../model/policy-map.js';
import type { EngineEvent, MapDelta, MapSnapshot } from './events.js';

type Labels = Readonly<Record<string, string>>;

/**
 * The engine's own copies of what a caller's events carry (findings 300, 303): the engine keeps
 * pods, labels and addresses past `apply` (the model a rebuild replays; pod-table's memo compares
 * label maps by identity), so a caller changing its object afterwards would change the engine's
 * state with no event. Cilium copies likewise (pkg/k8s converters build new objects). Policies
 * need no copy: the manifest reader freezes them (finding 302). Runs after validation.
 */
export class BoundaryCopier {
  /** The last label map given and its copy: replicas share one labels object, and keep sharing one copy. */
  private lastGiven: Labels | null = null;
  private lastCopy: Labels | null = null;

  events(events: readonly EngineEvent[]): EngineEvent[] {
    const out = new Array<EngineEvent>(events.length);
    for (let i = 0; i < events.length; i++) out[i] = this.event(events[i] as EngineEvent);
    return out;
  }

  private event(e: EngineEvent): EngineEvent {
    switch (e.type) {
      case 'upsertNamespace':
        return { type: e.type, name: e.name, labels: this.labels(e.labels) };
      case 'upsertPod':
        return e.local === undefined ? { type: e.type, pod: this.pod(e.pod) } : { type: e.type, pod: this.pod(e.pod), local: e.local };
      case 'upsertIdentity':
        return { type: e.type, id: e.id, labels: this.labels(e.labels) };
      case 'upsertNode': {
        const { name, ips, local, health, ingress, labels } = e;
        return {
          type: e.type, name, ips: ipList(ips),
          ...(local === undefined ? {} : { local }), ...(health === undefined ? {} : { health: ipList(health) }),
          ...(ingress === undefined ? {} : { ingress: ipList(ingress) }), ...(labels === undefined ? {} : { labels: this.labels(labels) }),
        };
      }
      case 'setApiServer':
        return { type: e.type, addresses: ipList(e.addresses) };
      case 'dnsResponse': {
        const { endpoint, name, ttl, server } = e;
        return { type: e.type, endpoint, name, ips: ipList(e.ips), ttl, ...(server === undefined ? {} : { server: Object.freeze({ ip: ip(server.ip), port: server.port }) }) };
      }
      default:
        // Deletes and clock steps hold strings and numbers only; policies are frozen.
        return e;
    }
  }

  private pod(p: Pod): Pod {
    const copy: Pod = {
      namespace: p.namespace, name: p.name, labels: this.labels(p.labels), ip: ip(p.ip),
      ...(p.ips === undefined ? {} : { ips: ipList(p.ips) }), serviceAccount: p.serviceAccount, ports: Object.freeze(p.ports.map(port)),
    };
    return Object.freeze(copy);
  }

  private labels(given: Labels): Labels {
    if (given === this.lastGiven && sameLabels(given, this.lastCopy as Labels)) return this.lastCopy as Labels;
    const copy: Record<string, string> = {};
    for (const k of Object.keys(given)) copy[k] = given[k] as string;
    this.lastGiven = given;
    return (this.lastCopy = Object.freeze(copy));
  }
}

function sameLabels(given: Labels, copy: Labels): boolean {
  const keys = Object.keys(given);
  if (keys.length !== Object.keys(copy).length) return false;
  for (const k of keys) if (!Object.hasOwn(copy, k) || copy[k] !== given[k]) return false;
  return true;
}

function ip(a: IpAddress): IpAddress {
  return Object.freeze({ family: a.family, value: a.value, text: a.text });
}

function ipList(list: readonly IpAddress[]): readonly IpAddress[] {
  return Object.freeze(list.map(ip));
}

function port(p: ContainerPort): ContainerPort {
  return Object.freeze(p.name === undefined ? { port: p.port, protocol: p.protocol } : { name: p.name, port: p.port, protocol: p.protocol });
}

/**
 * Finding 303: what the engine returns shares objects with its own state (map records and their
 * keys, identity label sets): they are frozen before they leave, so a caller changing one (a
 * backend normalising a key in place) cannot change what the engine holds and later deletes.
 */
export function frozenRecord<T extends { readonly key: object; readonly entry: object }>(r: T): T {
  if (Object.isFrozen(r)) return r;
  Object.freeze(r.key);
  Object.freeze(r.entry);
  return Object.freeze(r);
}

export function freezeDeltas(deltas: readonly MapDelta[]): void {
  for (let i = 0; i < deltas.length; i++) {
    const d = deltas[i] as MapDelta;
    if (d.previous !== undefined) Object.freeze(d.previous);
    frozenRecord(d);
  }
  Object.freeze(deltas);
}

export function frozenSnapshot(m: MapSnapshot): MapSnapshot {
  const out = new Map<string, LookupResult>();
  for (const [k, r] of m) out.set(k, frozenRecord(r));
  return out;
}

export function frozenLabels(labels: LabelSet | undefined): LabelSet | undefined {
  if (labels === undefined || Object.isFrozen(labels)) return labels;
  for (const l of labels) Object.freeze(l);
  return Object.freeze(labels);
}
