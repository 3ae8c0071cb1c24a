import type { ContainerPort } from '../model/ports.js';
import type { PolicyRef } from '../model/rules.js';
import { TRACE_VERSION, TraceEventJson, TraceHeader, traceLine } from './trace.js';

/** mulberry32: small, fast, seeded; the same seed gives the same trace on every machine. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface PodRecord {
  readonly namespace: string;
  readonly name: string;
  labels: Record<string, string>;
  readonly ip: string;
  readonly local: boolean;
  /** Set when the trace spreads pods over nodes (`--nodes`). */
  readonly node?: string;
  readonly ports: readonly ContainerPort[];
}

const HTTP_PORTS: readonly ContainerPort[] = [{ name: 'http', port: 8080, protocol: 'TCP' }];

/** A generated trace would exceed its size limit: refused while generating, not after. */
export class TraceTooLargeError extends Error {
  override readonly name = 'TraceTooLargeError';
}

/**
 * Accumulates a trace and the cluster it describes, so churn phases can pick existing objects.
 */
export class TraceBuilder {
  readonly lines: string[] = [];
  readonly pods = new Map<string, PodRecord>();
  readonly namespaces = new Map<string, Record<string, string>>();
  readonly policies = new Map<string, PolicyRef>();
  /** CiliumCIDRGroup manifests by name (the `cidr-groups` profile). */
  readonly cidrGroups = new Map<string, Record<string, unknown>>();
  private nextIp = 0;
  private podsCreated = 0;
  private bytes = 0;
  private remotePods = 0;
  events = 0;
  /**
   * Nodes to spread pods over (0: no `node` field, as before). Local pods run on node-0 (the
   * replaying node); the others round-robin over node-1 … node-(K-1), so `local` keeps its meaning.
   */
  nodes = 0;

  /** maxBytes: the trace's size limit (what `replay --max-input-bytes` could read back). */
  constructor(
    readonly rng: () => number,
    header: Omit<TraceHeader, 'distillTrace'>,
    readonly maxBytes: number = Number.POSITIVE_INFINITY,
  ) {
    this.push(traceLine({ distillTrace: TRACE_VERSION, ...header }));
  }

  private push(line: string): void {
    this.bytes += Buffer.byteLength(line) + 1;
    if (this.bytes > this.maxBytes) throw new TraceTooLargeError(`the trace would be larger than ${this.maxBytes} bytes (after ${this.events} events), more than replay reads; lower --scale or --churn, or raise --max-input-bytes`);
    this.lines.push(line);
  }

  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.rng() * xs.length)] as T;
  }

  int(n: number): number {
    return Math.floor(this.rng() * n);
  }

  private emit(e: TraceEventJson): void {
    this.push(traceLine(e));
    if (e.type !== 'phase') this.events++;
  }

  phase(name: string): void {
    this.emit({ type: 'phase', name });
  }

  namespace(name: string, labels: Record<string, string>, tag = 'namespace-add'): void {
    this.namespaces.set(name, labels);
    this.emit({ type: 'upsertNamespace', name, labels, tag });
  }

  /** Numbers pods in creation order, so profiles can place every n-th one on this node. */
  nextPodIndex(): number {
    return this.podsCreated++;
  }

  /** Allocates pod IPs from 10.0.0.0/8 (never reused, like a pod CIDR). */
  ip(): string {
    const n = ++this.nextIp;
    return `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
  }

  private nodeOf(local: boolean, existing: PodRecord | undefined): string | undefined {
    if (this.nodes === 0) return undefined;
    if (existing?.node !== undefined && existing.local === local) return existing.node;
    if (local || this.nodes === 1) return 'node-0';
    return `node-${1 + (this.remotePods++ % (this.nodes - 1))}`;
  }

  pod(namespace: string, name: string, labels: Record<string, string>, local: boolean, tag = 'pod-add', ports: readonly ContainerPort[] = HTTP_PORTS): PodRecord {
    const existing = this.pods.get(`${namespace}/${name}`);
    const node = this.nodeOf(local, existing);
    const p: PodRecord = { namespace, name, labels, ip: existing?.ip ?? this.ip(), local, ports, ...(node !== undefined ? { node } : {}) };
    this.pods.set(`${namespace}/${name}`, p);
    this.emit({ type: 'upsertPod', pod: { namespace, name, labels, ip: p.ip, ports: [...ports] }, local, ...(node !== undefined ? { node } : {}), tag });
    return p;
  }

  deletePod(p: { namespace: string; name: string }, tag = 'pod-remove'): void {
    this.pods.delete(`${p.namespace}/${p.name}`);
    this.emit({ type: 'deletePod', namespace: p.namespace, name: p.name, tag });
  }

  policy(manifest: Record<string, unknown>, tag = 'policy-add'): void {
    const meta = manifest.metadata as { name: string; namespace?: string };
    const kind = manifest.kind as 'NetworkPolicy' | 'CiliumNetworkPolicy' | 'CiliumClusterwideNetworkPolicy';
    const ref = meta.namespace === undefined ? { kind, name: meta.name } : { kind, namespace: meta.namespace, name: meta.name };
    this.policies.set(`${kind}/${meta.namespace ?? ''}/${meta.name}`, ref);
    this.emit({ type: 'upsertPolicy', manifest, tag });
  }

  deletePolicy(key: string, tag = 'policy-remove'): void {
    const p = this.policies.get(key);
    if (!p) throw new Error(`generator: no policy ${key}`);
    this.policies.delete(key);
    this.emit({ type: 'deletePolicy', ref: p, tag });
  }

  /** A CiliumCIDRGroup created or replaced. */
  cidrGroup(manifest: Record<string, unknown>, tag = 'group-add'): void {
    this.cidrGroups.set((manifest.metadata as { name: string }).name, manifest);
    this.emit({ type: 'upsertCidrGroup', manifest, tag });
  }

  deleteCidrGroup(name: string, tag = 'group-remove'): void {
    this.cidrGroups.delete(name);
    this.emit({ type: 'deleteCidrGroup', name, tag });
  }

  /** A DNS answer the endpoint's proxy saw, from `server` if given (toFQDNs; traces with it are read with `{fqdn: true}`). */
  dnsResponse(endpoint: string, name: string, ips: readonly string[], ttl: number, tag = 'dns-response', server?: { ip: string; port: number }): void {
    this.emit({ type: 'dnsResponse', endpoint, name, ips: [...ips], ttl, ...(server ? { server } : {}), tag });
  }

  advanceTime(seconds: number, tag = 'advance-time'): void {
    this.emit({ type: 'advanceTime', seconds, tag });
  }

  text(): string {
    return this.lines.join('\n') + '\n';
  }
}

// ---------------------------------------------------------------- manifest shapes

export function networkPolicy(namespace: string, name: string, spec: Record<string, unknown>): Record<string, unknown> {
  return { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace, name }, spec };
}

export function ciliumPolicy(namespace: string, name: string, spec: Record<string, unknown>): Record<string, unknown> {
  return { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { namespace, name }, spec };
}

/** A CIDR outside the pod range, as policies name external services. */
export function externalCidr(b: TraceBuilder): string {
  return `${b.pick([172, 192, 203])}.${b.int(256)}.${b.int(256)}.0/24`;
}
