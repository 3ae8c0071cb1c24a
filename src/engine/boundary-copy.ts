import { KeyedPod, type Pod } from '../model/cluster.js';
import type { IpAddress } from '../model/cidr.js';
import type { ContainerPort } from '../model/ports.js';
import type { LabelSet } from '../model/labels.js';
import type { LookupResult } from '../model/policy-map.js';
import { frozenIp as ip, frozenPort as port, isSealedPod } from '../model/sealed-pod.js';
import { EngineError, type MapDelta, type MapSnapshot } from './events.js';

type Rec = Record<string, unknown>;

function isRecord(v: unknown): v is Rec {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isPlain(v: unknown): v is Rec {
  if (!isRecord(v)) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** `{...}` without the absent keys (exact optional properties). */
function opt<K extends string>(k: K, v: unknown): Partial<Record<K, unknown>> {
  return v === undefined ? {} : ({ [k]: v } as Record<K, unknown>);
}

/**
 * The engine's own copies of what a caller's events carry (findings 300, 304), made before
 * validation so that what is checked is what is kept: every field is read once. The engine keeps
 * pods, labels and addresses past `apply` (the model a rebuild replays; pod-table's memo compares
 * label maps by identity), so a caller changing its object afterwards (or a getter answering
 * differently on a second read) would change the engine's state with no event. Cilium copies
 * likewise (pkg/k8s converters build new objects). What is not of the expected shape is kept as
 * given, for validation to refuse; policies are frozen by the reader (finding 302).
 */
export class BoundaryCopier {
  /**
   * Each label map or port list given and its copy: replicas share one labels object (a trace's
   * reader, an informer's template) and keep sharing one copy, which pod-table's memo compares by
   * identity and which costs the heap once. Weak, so it holds no more than the caller does; a hit
   * is checked against the copy field by field, so a caller that changed its object gets a new copy.
   */
  private readonly labelCopies = new WeakMap<object, Rec>();
  private readonly portCopies = new WeakMap<object, readonly unknown[]>();

  /** Throws an EngineError naming the event when reading one throws (a hostile getter or Proxy). */
  events(given: readonly unknown[]): unknown[] {
    const n = given.length;
    const out = new Array<unknown>(n);
    let i = 0;
    try {
      for (; i < n; i++) out[i] = this.event(given[i]);
    } catch (err) {
      const e = given[i];
      const type = isRecord(e) && typeof e.type === 'string' ? e.type : 'unknown';
      throw new EngineError(i, type, `malformed event: ${err instanceof Error ? err.message : String(err)}`);
    }
    return out;
  }

  private event(e: unknown): unknown {
    if (!isRecord(e)) return e;
    const type = e.type;
    switch (type) {
      case 'upsertNamespace':
        return { type, name: e.name, labels: this.labels(e.labels) };
      case 'deleteNamespace':
      case 'deleteNode':
        return { type, name: e.name };
      case 'upsertPod': {
        const local = e.local;
        return local === undefined ? { type, pod: this.pod(e.pod) } : { type, pod: this.pod(e.pod), local };
      }
      case 'deletePod':
        return { type, namespace: e.namespace, name: e.name };
      case 'upsertPolicy':
        return { type, policy: e.policy };
      case 'deletePolicy': {
        const r = e.ref;
        return { type, ref: isRecord(r) ? Object.freeze({ kind: r.kind, name: r.name, ...opt('namespace', r.namespace) }) : r };
      }
      case 'upsertIdentity':
        return { type, id: e.id, labels: this.labels(e.labels), ...opt('unreadable', e.unreadable) };
      case 'deleteIdentity':
        return { type, id: e.id };
      case 'upsertNode':
        return {
          type, name: e.name, ips: ipList(e.ips), ...opt('local', e.local), ...opt('health', ipList(e.health)),
          ...opt('ingress', ipList(e.ingress)), ...opt('labels', e.labels === undefined ? undefined : this.labels(e.labels)), ...opt('failClosed', e.failClosed),
        };
      case 'setApiServer':
        return { type, addresses: ipList(e.addresses), ...opt('held', ipList(e.held)) };
      case 'dnsResponse': {
        const sv = e.server;
        return { type, endpoint: e.endpoint, name: e.name, ips: ipList(e.ips), ttl: e.ttl, ...opt('server', isRecord(sv) ? Object.freeze({ ip: ip(sv.ip), port: sv.port, ...opt('protocol', sv.protocol) }) : sv) };
      }
      case 'advanceTime':
        return { type, seconds: e.seconds };
      case 'upsertCidrGroup':
        return { type, group: cidrGroup(e.group) };
      case 'deleteCidrGroup':
        return { type, name: e.name };
      case 'upsertEndpoint':
        return { type, namespace: e.namespace, name: e.name, identity: e.identity, ips: ipList(e.ips) };
      case 'deleteEndpoint':
        return { type, namespace: e.namespace, name: e.name };
      default:
        return e;
    }
  }

  private pod(p: unknown): unknown {
    // Built frozen by distill's own reader, of fields copied as below (src/model/sealed-pod.ts).
    if (isSealedPod(p)) return p;
    if (!isRecord(p)) return p;
    const { namespace, name, labels, ips, serviceAccount, ports } = p;
    const a = ip(p.ip);
    const l = this.labels(labels);
    const ps = Array.isArray(ports) ? this.ports(ports) : ports;
    // A KeyedPod (fields as a plain pod's, in the same order): the stages and the model store look
    // the pod up by one key string built once, not one concatenated and flattened per stage. Built
    // from the fields, not from a temporary pod object (one object of garbage a pod in a cold start).
    const copy = new KeyedPod(namespace as string, name as string, l as Pod['labels'], a as IpAddress, ips === undefined ? undefined : (ipList(ips) as readonly IpAddress[]), serviceAccount as string, ps as readonly ContainerPort[], p.failClosed);
    return Object.freeze(copy);
  }

  private labels(given: unknown): unknown {
    if (!isPlain(given)) return given;
    const known = this.labelCopies.get(given);
    if (known !== undefined && sameLabels(given, known)) return known;
    // Spread defines own data properties (CreateDataProperty): a `__proto__` key stays a label, no setter runs.
    const copy: Rec = Object.freeze({ ...given });
    this.labelCopies.set(given, copy);
    return copy;
  }

  private ports(given: readonly unknown[]): readonly unknown[] {
    if (given.length === 0) return NO_PORTS;
    const known = this.portCopies.get(given);
    if (known !== undefined && samePorts(given, known)) return known;
    const copy = Object.freeze(Array.from(given, port));
    this.portCopies.set(given, copy);
    return copy;
  }
}

/** Whether a port list given equals a copy made of it earlier (holes read as undefined, as in the copy). */
function samePorts(given: readonly unknown[], copy: readonly unknown[]): boolean {
  const n = given.length;
  if (n !== copy.length) return false;
  for (let i = 0; i < n; i++) {
    const g = given[i];
    const c = copy[i];
    if (!isRecord(g) || !isRecord(c)) {
      if (g !== c) return false;
    } else if (g.port !== c.port || g.protocol !== c.protocol || g.name !== c.name) return false;
  }
  return true;
}

function sameLabels(given: Rec, copy: Rec): boolean {
  const keys = Object.keys(given);
  if (keys.length !== Object.keys(copy).length) return false;
  for (const k of keys) if (!Object.hasOwn(copy, k) || copy[k] !== given[k]) return false;
  return true;
}

/** A CiliumCIDRGroup's fields read once into a new Map and frozen CIDRs: the group table, its prefix index and the model store keep them (review of 1980). */
function cidrGroup(g: unknown): unknown {
  if (!isRecord(g)) return g;
  const { name, labels, cidrs, failClosed } = g;
  return Object.freeze({
    name,
    labels: labels instanceof Map ? new Map<unknown, unknown>(labels) : labels,
    cidrs: Array.isArray(cidrs) ? Object.freeze(Array.from(cidrs, cidrCopy)) : cidrs,
    ...(failClosed === undefined ? {} : { failClosed }),
  });
}

function cidrCopy(c: unknown): unknown {
  if (!isRecord(c)) return c;
  const { family, network, prefixLength, text } = c;
  return Object.freeze({ family, network, prefixLength, text });
}

/** Holes become undefined, which validation refuses (a sparse list's forEach would skip them). */
function ipList(list: unknown): unknown {
  return Array.isArray(list) ? Object.freeze(Array.from(list, ip)) : list;
}

const NO_PORTS: readonly unknown[] = Object.freeze([]);

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
