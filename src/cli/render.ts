import { canonicalJson, L7Policy } from '../model/l7.js';
import { droppedAtProxy, type DirectionDecision } from '../model/flow.js';
import { formatTierOrigin } from '../model/tiers.js';
import type { ProbeResult, ScenarioRun } from '../scenario/run.js';
import { l7Items, L7RowLike, PROTOCOL_NAMES } from '../backend/record-json.js';
import { maskedPortEnd } from '../model/policy-map.js';
import { describeRequest, formatOrigin, shownInTable } from '../explain/format.js';

/** The JSON line of one probe result: these field names are the conformance contract. */
export function resultJson(r: ProbeResult, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...extra, step: r.step, probe: r.probe, from: r.from, to: r.to, port: r.port, protocol: r.protocol, allowed: r.allowed, proxied: r.proxied };
}

function explainDirection(d: DirectionDecision): Record<string, unknown> {
  return {
    allowed: d.allowed,
    proxied: d.proxied,
    defaultDeny: d.enforcedBy.length > 0,
    enforcedBy: d.enforcedBy.map(formatOrigin),
    allowedBy: d.allowedBy.map(formatOrigin),
    deniedBy: d.deniedBy.map(formatOrigin),
    redirectedBy: d.redirectedBy.map(formatOrigin),
    ...(d.l7 ? { l7: { parser: d.l7.parser, allowed: d.l7.allowed, allowedBy: d.l7.allowedBy.map(formatOrigin) } } : {}),
    ...(d.tier ? { tier: { ...d.tier } } : {}),
  };
}

export function explainJson(r: ProbeResult): Record<string, unknown> {
  return {
    ...(r.decision.egress ? { egress: explainDirection(r.decision.egress) } : {}),
    ...(r.decision.ingress ? { ingress: explainDirection(r.decision.ingress) } : {}),
  };
}

/** After an Admin Pass that stands as the entry (its floor): what the lower tiers left. */
function passedTo(d: DirectionDecision): string {
  return d.enforcedBy.length > 0 ? `default deny (isolated by ${d.enforcedBy.map(formatOrigin).join('; ')}), no rule allows it` : 'nothing allows it';
}

function why(d: DirectionDecision | undefined, side: string): string {
  if (!d) return `${side}: not a pod, enforces nothing`;
  if (d.tier?.action === 'Pass') return `${side}: denied: passed by ${formatTierOrigin(d.tier)} to the lower tiers, where ${passedTo(d)}`;
  if (d.tier) return `${side}: ${d.tier.action === 'Accept' ? 'accepted' : 'denied'} by ${formatTierOrigin(d.tier)}`;
  if (d.deniedBy.length > 0) return `${side}: denied by ${d.deniedBy.map(formatOrigin).join('; ')}`;
  if (d.enforcedBy.length === 0) return `${side}: no policy isolates it, allowed`;
  if (d.l7) {
    const verdict = d.l7.allowed
      ? `allowed the request (${d.l7.allowedBy.length > 0 ? `by ${d.l7.allowedBy.map(formatOrigin).join('; ')}` : 'no policy restricts it'})`
      : 'denied the request (no rule matches it)';
    return `${side}: redirected to the ${d.l7.parser} proxy by ${d.redirectedBy.map(formatOrigin).join('; ')}, which ${verdict}`;
  }
  if (droppedAtProxy(d)) return `${side}: redirected to a proxy by ${d.redirectedBy.map(formatOrigin).join('; ')}, which takes TCP and UDP only: dropped`;
  if (d.allowedBy.length > 0) return `${side}: allowed by ${d.allowedBy.map(formatOrigin).join('; ')}${d.proxied ? ' (via L7 proxy)' : ''}`;
  return `${side}: default deny (isolated by ${d.enforcedBy.map(formatOrigin).join('; ')}), no rule allows it`;
}

/** A readable truth table per step and probe, like the upstream e2e suite prints. */
export function renderRun(run: ScenarioRun, explain: boolean): string {
  const out: string[] = [];
  for (const step of run.steps) {
    step.probes.forEach((probe, pi) => {
      const results = step.results.filter((r) => r.probe === pi);
      const request = describeRequest(probe.request);
      out.push(`step ${step.step}, probe ${pi}: ${probe.port}/${probe.protocol}${request ? ` ${request}` : ''}`);
      const froms = [...new Set(results.map((r) => r.from))].sort();
      const tos = [...new Set(results.map((r) => r.to))].sort();
      const cell = new Map(results.map((r) => [`${r.from}->${r.to}`, r]));
      const width = Math.max(4, ...froms.map((f) => f.length), ...tos.map((t) => t.length)) + 1;
      out.push(' '.repeat(width) + tos.map((t) => t.padStart(width)).join(''));
      for (const f of froms) {
        const row = tos.map((t) => {
          const r = cell.get(`${f}->${t}`);
          const mark = r === undefined ? '-' : r.allowed ? (r.proxied ? 'P' : '.') : r.proxied ? 'L' : 'X';
          return mark.padStart(width);
        });
        out.push(f.padEnd(width) + row.join(''));
      }
      if (explain) {
        for (const r of results) {
          out.push(`  ${r.from} -> ${r.to}: ${r.allowed ? 'allowed' : 'denied'}${r.proxied ? (r.allowed ? ' (proxied)' : ' by an L7 proxy') : ''}`);
          out.push(`    ${why(r.decision.egress, 'egress of ' + r.from)}`);
          out.push(`    ${why(r.decision.ingress, 'ingress of ' + r.to)}`);
        }
      }
      const mism = step.mismatches.filter((m) => m.probe === pi);
      for (const m of mism) out.push(`  MISMATCH ${m.pair}: expected ${m.expected}, got ${m.actual}`);
      out.push('');
    });
  }
  return out.join('\n');
}

export const LEGEND = 'legend: . allowed, P allowed via L7 proxy, L denied by an L7 proxy, X denied, - not probed';

function l7RulesText(policy: L7Policy): string {
  if (policy.allowAll) return 'every request';
  return l7Items(policy.rules)
    .map((i) => canonicalJson(i))
    .join(' | ');
}

/** What each of the endpoint's proxies is told: per redirect, each L7 policy and its peers. */
export function renderL7Policies(
  proxies: readonly { redirect: L7RowLike['redirect']; portRange?: L7RowLike['portRange']; policies: readonly { peers: readonly number[]; policy: L7Policy }[] }[],
  labelsOf: (id: number) => string[],
): string {
  if (proxies.length === 0) return 'no L7 redirects';
  const out: string[] = [];
  for (const { redirect: r, portRange, policies } of proxies) {
    const ports = r.portPrefixLen === undefined ? `${r.port}` : `${r.port}-${maskedPortEnd(r.port, r.portPrefixLen)}`;
    const narrower = portRange ? `, on ports ${portRange.port}-${portRange.endPort} also` : '';
    out.push(`${r.direction} ${PROTOCOL_NAMES[r.protocol] ?? r.protocol}/${ports} -> ${r.parser} proxy on port ${r.proxyPort}${narrower}`);
    for (const p of policies) {
      const who = p.peers.map((id) => (id === 0 ? 'any peer' : `${id} ${labelsOf(id).filter(shownInTable).join(',')}`)).join('; ');
      out.push(`  ${l7RulesText(p.policy)}`);
      out.push(`    for ${who}`);
    }
  }
  return out.join('\n');
}
