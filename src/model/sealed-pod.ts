import type { IpAddress } from './cidr.js';
import { KeyedPod, type Pod } from './cluster.js';
import type { ContainerPort } from './ports.js';

/**
 * Pods built frozen by distill's own trace reader, which the engine's boundary copy keeps as they
 * are instead of copying them (findings 300 and 304: what the engine keeps must not change after
 * `apply`, and every field is read once). What the copy guarantees holds by construction: each
 * field read once, here, into a frozen object of the copy's shape, and a label map or port list
 * kept only if this module made it (`sealedLabels`, `sealedPorts`), copied otherwise. So a caller
 * can make one only through this module, which copies whatever it is given; its validation still
 * runs in `apply`. The brand is a private field of a class that is not exported: no caller can
 * forge it, a subclass's instance (whose prototype could redefine `key`) and a Proxy of a sealed
 * pod are not one. Copying cost the cilium-ci cold start ~5 % of its main thread and kept a second pod
 * and address (~120 B) per pod (docs/benchmarks.md, perf20, perf22pods).
 */
class SealedPod extends KeyedPod {
  #sealed = true;

  /** The copying is here, not in `sealedPod`: the class is reachable as an instance's `constructor`. */
  constructor(namespace: string, name: string, labels: Pod['labels'], ip: IpAddress, ips: readonly IpAddress[] | undefined, serviceAccount: string, ports: readonly ContainerPort[]) {
    if (typeof namespace !== 'string' || typeof name !== 'string' || typeof serviceAccount !== 'string') throw new TypeError('a sealed pod\'s namespace, name and service account are strings');
    if ((ips !== undefined && !Array.isArray(ips)) || !Array.isArray(ports)) throw new TypeError('a sealed pod\'s ips and ports are arrays');
    const list = ips === undefined ? undefined : (Object.freeze(Array.from(ips, frozenIp)) as readonly IpAddress[]);
    super(namespace, name, sealedLabels(labels), frozenIp(ip) as IpAddress, list, serviceAccount, sealedPorts(ports));
    Object.freeze(this);
  }

  /** A subclass's instance is not one: its prototype could redefine `key`, which the engine reads. */
  static holds(v: object): boolean {
    return #sealed in v && Object.getPrototypeOf(v) === SealedPod.prototype;
  }
}

const SEALED_LABELS = new WeakSet<object>();
const SEALED_PORTS = new WeakSet<object>();
const NO_PORTS: readonly ContainerPort[] = Object.freeze([]);
SEALED_PORTS.add(NO_PORTS);

export function isSealedPod(v: unknown): v is KeyedPod {
  return typeof v === 'object' && v !== null && SealedPod.holds(v);
}

/** `labels` itself when this module made it, else a frozen copy (own data properties, no prototype, fast properties). */
export function sealedLabels(labels: Pod['labels']): Pod['labels'] {
  if (SEALED_LABELS.has(labels)) return labels;
  // Anything else would read as no labels (a Map: finding 301) or as other ones (an array).
  const proto: unknown = isRecord(labels) ? Object.getPrototypeOf(labels) : undefined;
  if (proto !== Object.prototype && proto !== null) throw new TypeError('sealed labels are a plain object');
  // fromEntries defines own data properties: a `__proto__` key stays a label.
  const copy = Object.freeze(Object.setPrototypeOf(Object.fromEntries(Object.entries(labels)), null) as Record<string, string>);
  SEALED_LABELS.add(copy);
  return copy;
}

/** `ports` itself when this module made it, else a frozen copy of frozen ports of the boundary copy's shape. */
export function sealedPorts(ports: readonly ContainerPort[]): readonly ContainerPort[] {
  if (SEALED_PORTS.has(ports)) return ports;
  if (ports.length === 0) return NO_PORTS;
  const copy = Object.freeze(Array.from(ports, frozenPort) as ContainerPort[]);
  SEALED_PORTS.add(copy);
  return copy;
}

/** A sealed pod: `labels` and `ports` kept when sealed (a trace's replicas share them), the addresses copied; throws on fields of the wrong kind. */
export function sealedPod(namespace: string, name: string, labels: Pod['labels'], ip: IpAddress, ips: readonly IpAddress[] | undefined, serviceAccount: string, ports: readonly ContainerPort[]): KeyedPod {
  return new SealedPod(namespace, name, labels, ip, ips, serviceAccount, ports);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** An address as the engine keeps it: its three fields read once into a frozen object (anything else as given, for validation to refuse). */
export function frozenIp(a: unknown): unknown {
  return isRecord(a) ? Object.freeze({ family: a.family, value: a.value, text: a.text }) : a;
}

/** A container port as the engine keeps it (anything else as given, for validation to refuse). */
export function frozenPort(p: unknown): unknown {
  if (!isRecord(p)) return p;
  const name = p.name;
  return Object.freeze(name === undefined ? { port: p.port, protocol: p.protocol } : { name, port: p.port, protocol: p.protocol });
}
