import type { EngineEvent } from '../engine/events.js';
import type { Pod } from '../model/cluster.js';
import { KINDS_API_VERSIONS } from './kinds.js';
import { readContainerPorts, readIp, readLabels } from '../policy/readers.js';
import { readMetadata } from '../policy/common.js';
import { join, Reader } from '../policy/reader.js';

/**
 * Kubernetes objects exactly as the API server returns them (JSON), read into what the engine
 * takes. Only the fields distill needs are read; every other field is left alone, as a client
 * that tolerates newer API versions must.
 */

/** An object as the API server returns it: `apiVersion`, `kind`, `metadata`, and the rest. */
export type K8sObject = Readonly<Record<string, unknown>>;

/** The kinds distill reads. */
export const KNOWN_KINDS = Object.keys(KINDS_API_VERSIONS) as KnownKind[];
/** A kind distill reads. */
export type KnownKind = keyof typeof KINDS_API_VERSIONS;

/** A cluster identity (`CiliumIdentity` in CRD mode): its number and its labels (`source:key` → value). */
export interface Identity {
  readonly id: number;
  readonly labels: Readonly<Record<string, string>>;
}

/**
 * Identity events, for an engine with `identitySource: 'external'`. `labels` keys are
 * `source:key` as in `CiliumIdentity` `security-labels`.
 */
export type IdentityEvent = Extract<EngineEvent, { readonly type: 'upsertIdentity' | 'deleteIdentity' }>;

/** A pod as the engine sees it, or why it is not an endpoint (yet). */
export type PodEndpoint = { readonly pod: Pod; readonly local: boolean } | { readonly pod: null; readonly reason: 'host-network' | 'no-ip' | 'terminated' | 'terminating' };

function rec(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

/**
 * The kind of an API object if distill reads it (its `apiVersion` checked), else undefined.
 * `source` names the object in errors.
 */
export function objectKind(obj: unknown): KnownKind | undefined {
  const o = rec(obj);
  const kind = o.kind;
  if (typeof kind !== 'string' || !Object.hasOwn(KINDS_API_VERSIONS, kind)) return undefined;
  return KINDS_API_VERSIONS[kind as KnownKind] === o.apiVersion ? (kind as KnownKind) : undefined;
}

/** A `v1` Namespace: its name and labels. Throws ManifestError naming `source` and the field. */
export function namespaceOf(obj: unknown, source: string): { name: string; labels: Record<string, string> } {
  const r = new Reader(source);
  const md = readMetadata(r, rec(obj).metadata, false);
  return { name: md.name, labels: readLabels(r, rec(rec(obj).metadata).labels ?? {}, 'metadata.labels') };
}

/** Container ports of every container, renamed from the API's `containerPort` to distill's `port`. */
function containerPorts(r: Reader, spec: Record<string, unknown>): Pod['ports'] {
  const out: Pod['ports'][number][] = [];
  const containers = r.optArray(spec.containers, 'spec.containers') ?? [];
  containers.forEach((c, i) => {
    const path = `spec.containers[${i}].ports`;
    const ports = (r.optArray(rec(c).ports, path) ?? []).map((p) => {
      const po = rec(p);
      return { ...(po.name !== undefined ? { name: po.name } : {}), port: po.containerPort, ...(po.protocol !== undefined ? { protocol: po.protocol } : {}) };
    });
    out.push(...readContainerPorts(r, ports, path));
  });
  return out;
}

/** The pod's address: the first of `status.podIPs`, else `status.podIP`. */
function podAddress(status: Record<string, unknown>): unknown {
  const ips = Array.isArray(status.podIPs) ? status.podIPs : [];
  const first = rec(ips[0]).ip;
  return first ?? status.podIP;
}

/**
 * A `v1` Pod as an endpoint of node `nodeName` (`spec.nodeName` equal: local) or a remote peer.
 * Host-network pods are never endpoints (they have the node's address); pods without an address
 * wait; `Succeeded`/`Failed` pods and pods being deleted (`deletionTimestamp` set) stop being
 * endpoints. Throws ManifestError naming `source` and the field.
 */
export function podEndpoint(obj: unknown, nodeName: string, source: string): PodEndpoint {
  const r = new Reader(source);
  const o = rec(obj);
  const md = readMetadata(r, o.metadata, true);
  const meta = rec(o.metadata);
  const spec = rec(o.spec);
  const status = rec(o.status);
  const labels = readLabels(r, meta.labels ?? {}, 'metadata.labels');
  const ports = containerPorts(r, spec);
  if (spec.hostNetwork === true) return { pod: null, reason: 'host-network' };
  if (status.phase === 'Succeeded' || status.phase === 'Failed') return { pod: null, reason: 'terminated' };
  if (meta.deletionTimestamp !== undefined && meta.deletionTimestamp !== null) return { pod: null, reason: 'terminating' };
  const address = podAddress(status);
  if (address === undefined || address === null || address === '') return { pod: null, reason: 'no-ip' };
  const ip = readIp(r, address, status.podIPs !== undefined ? 'status.podIPs[0].ip' : 'status.podIP');
  const sa = spec.serviceAccountName ?? spec.serviceAccount ?? 'default';
  const serviceAccount = r.nonEmptyString(sa, join('spec', 'serviceAccountName'));
  const pod: Pod = { namespace: md.namespace ?? 'default', name: md.name, labels, ip, serviceAccount, ports };
  return { pod, local: spec.nodeName === nodeName };
}

/**
 * A `cilium.io/v2` CiliumIdentity (CRD mode): the name is the number, `security-labels` the
 * labels. Throws ManifestError naming `source` and the field.
 */
export function identityOf(obj: unknown, source: string): Identity {
  const r = new Reader(source);
  const md = readMetadata(r, rec(obj).metadata, false);
  if (!/^[1-9]\d{0,9}$/.test(md.name) || Number(md.name) > 0xffffffff) r.fail('metadata.name', `"${md.name}" is not an identity number`);
  const labels = r.stringMap(rec(obj)['security-labels'] ?? {}, 'security-labels');
  return { id: Number(md.name), labels };
}
