import { L7Request } from '../model/l7.js';
import type { RuleOrigin } from '../model/rules.js';
import { policyRefKey } from '../model/rules.js';
import { isAllowLocalhostOrigin } from '../model/localhost.js';
import { MapRecordLike, portRange, PROTOCOL_NAMES } from '../backend/record-json.js';

/*
 * How reports name what they explain: a rule, a request, a map entry. The text `trace`, `plan` and
 * the scenario runner's explanations carry, in their JSON as in their tables.
 */

export function formatOrigin(o: RuleOrigin): string {
  if (isAllowLocalhostOrigin(o)) return 'allow-localhost (agent option: the local host reaches its endpoints; Cilium\'s reserved:allow-localhost-ingress entry)';
  return `${policyRefKey(o.policy)} ${o.path}`;
}

export /** A probe's request in one line: `GET /public`, `kafka produce topic=orders`, `dns www.example.com`. */
function describeRequest(req: L7Request | undefined): string {
  if (!req) return '';
  if ('http' in req) {
    const h = req.http;
    const headers = Object.entries(h.headers ?? {}).map(([k, v]) => ` ${k}: ${v}`);
    return `${h.method} ${h.path}${h.host !== undefined ? ` host=${h.host}` : ''}${headers.length ? ` [${headers.join(',').trim()}]` : ''}`;
  }
  if ('kafka' in req) {
    const k = req.kafka;
    const parts = [`kafka ${k.apiKey}`, k.topic !== undefined ? `topic=${k.topic}` : '', k.clientID !== undefined ? `clientID=${k.clientID}` : '', k.apiVersion !== undefined ? `v${k.apiVersion}` : ''];
    return parts.filter((p) => p !== '').join(' ');
  }
  return `dns ${req.dns.name}`;
}

/** The table shows the labels that tell peers apart; `--json` lists them all. */
export function shownInTable(label: string): boolean {
  return !/^k8s:io\.cilium\.k8s\.(policy\.cluster|policy\.serviceaccount|namespace\.labels\.)/.test(label);
}

/** Hubble's word for what an entry does to a flow it matches (`hubble observe` verdicts). */
export function hubbleVerdict(e: MapRecordLike['entry']): 'FORWARDED' | 'DROPPED' | 'REDIRECTED' {
  return e.deny ? 'DROPPED' : e.proxyPort !== 0 ? 'REDIRECTED' : 'FORWARDED';
}

/** `80/TCP`, `8000-8063/TCP`, `ANY/TCP` or `ANY`, as `cilium bpf policy get` prints PORT/PROTO. */
export function portProto(k: MapRecordLike['key']): string {
  if (k.protocol === 0) return 'ANY';
  const proto = PROTOCOL_NAMES[k.protocol] ?? String(k.protocol);
  const p = portRange(k);
  return p === 'any' ? `ANY/${proto}` : `${p.from === p.to ? p.from : `${p.from}-${p.to}`}/${proto}`;
}

const capitalized = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);

/**
 * A policy map as a table, in the columns of `cilium bpf policy get` (POLICY, DIRECTION, LABELS,
 * PORT/PROTO, PROXY PORT), plus Hubble's verdict; `wide` adds the identity number and precedence.
 */
export function renderMapRecords(records: readonly MapRecordLike[], labelsOf: (id: number) => string[], wide = false): string {
  const header = ['POLICY', 'DIRECTION', ...(wide ? ['IDENTITY'] : []), 'LABELS (source:key=value)', 'PORT/PROTO', 'PROXY PORT', 'VERDICT', ...(wide ? ['PRECEDENCE'] : [])];
  const rows = records.map((r) => {
    const labels = r.key.identity === 0 ? 'ANY' : labelsOf(r.key.identity).filter((l) => wide || shownInTable(l)).join(',') || String(r.key.identity);
    const policy = r.entry.deny ? 'Deny' : 'Allow';
    const proxy = r.entry.proxyPort === 0 ? 'NONE' : String(r.entry.proxyPort);
    return [policy, capitalized(r.key.direction), ...(wide ? [String(r.key.identity)] : []), labels, portProto(r.key), proxy, hubbleVerdict(r.entry), ...(wide ? [String(r.entry.precedence)] : [])];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  const line = (cols: string[]): string => cols.map((c, i) => (i === cols.length - 1 ? c : c.padEnd(widths[i] as number))).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}
