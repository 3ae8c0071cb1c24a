import type { L7Policy } from '../model/l7.js';
import type { L7Rules } from '../model/rules.js';
import { maskedPortEnd } from '../model/policy-map.js';

/*
 * The readable JSON form of a backend's records and L7 rows: one format for `maps dump --json`,
 * `plan -o json`, `distill agent --json`'s summary and `distill cluster`'s comparison of agents.
 */

export const PROTOCOL_NAMES: Readonly<Record<number, string>> = { 0: 'any', 1: 'ICMP', 6: 'TCP', 17: 'UDP', 58: 'ICMPv6', 132: 'SCTP' };

export interface MapRecordLike {
  readonly key: { identity: number; direction: string; protocol: number; port: number; portPrefixLen: number };
  readonly entry: { deny: boolean; proxyPort: number; precedence: number };
}

export function portRange(k: MapRecordLike['key']): { from: number; to: number } | 'any' {
  if (k.protocol === 0 || k.portPrefixLen === 0) return 'any';
  return { from: k.port, to: maskedPortEnd(k.port, k.portPrefixLen) };
}

function verdictOf(e: MapRecordLike['entry']): 'deny' | 'redirect' | 'allow' {
  return e.deny ? 'deny' : e.proxyPort !== 0 ? 'redirect' : 'allow';
}

/** One map entry in readable JSON: who, which traffic, what happens. */
export function mapRecordJson(r: MapRecordLike, labelsOf: (id: number) => string[]): Record<string, unknown> {
  return {
    identity: r.key.identity,
    labels: labelsOf(r.key.identity),
    direction: r.key.direction,
    protocol: PROTOCOL_NAMES[r.key.protocol] ?? r.key.protocol,
    ports: portRange(r.key),
    verdict: verdictOf(r.entry),
    proxyPort: r.entry.proxyPort,
    precedence: r.entry.precedence,
  };
}

/** How identities are named in tables and JSON: `source:key=value` labels (none for 0, "any"). */
export function labelsOfEngine(engine: { identityLabels(id: number): readonly { source: string; key: string; value: string }[] | undefined }): (id: number) => string[] {
  return (id) => (id === 0 ? [] : (engine.identityLabels(id) ?? []).map((l) => (l.value === '' ? `${l.source}:${l.key}` : `${l.source}:${l.key}=${l.value}`)));
}

export interface L7RowLike {
  readonly redirect: { direction: string; protocol: number; port: number; portPrefixLen?: number; parser: string; proxyPort: number };
  readonly peer: number;
  readonly policy: L7Policy;
  readonly portRange?: { readonly port: number; readonly endPort: number };
}

export function l7Items(r: L7Rules): readonly unknown[] {
  return r.parser === 'http' ? r.http : r.parser === 'kafka' ? r.kafka : r.dns;
}

/** One L7 table row in JSON: which redirect, which peer, what the proxy allows. */
export function l7RowJson(row: L7RowLike, labelsOf: (id: number) => string[]): Record<string, unknown> {
  const r = row.redirect;
  return {
    direction: r.direction,
    protocol: PROTOCOL_NAMES[r.protocol] ?? r.protocol,
    port: r.port,
    ...(r.portPrefixLen === undefined ? {} : { endPort: maskedPortEnd(r.port, r.portPrefixLen) }),
    parser: r.parser,
    proxyPort: r.proxyPort,
    ...(row.portRange ? { portRange: row.portRange } : {}),
    peer: row.peer,
    labels: labelsOf(row.peer),
    allowAll: row.policy.allowAll,
    rules: row.policy.allowAll ? [] : l7Items(row.policy.rules),
  };
}
