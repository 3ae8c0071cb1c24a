import type { IpAddress } from '../model/cidr.js';
import type { ClusterState } from '../model/cluster.js';
import { EMPTY_DNS_CACHE, recordDnsAnswer } from '../model/fqdn.js';
import type { DnsServer, DnsTransport } from '../model/fqdn-events.js';
import { endpointAddress, resolveEndpoint } from '../model/flow.js';
import { l7Allows } from '../model/l7.js';
import { selectorMatches } from '../model/selector.js';
import { decideDirection } from './evaluator.js';

/*
 * The oracle's DNS learning: the model's DNS cache holds what the DNS proxy learnt, and whether it
 * learns an answer is a policy decision taken when the answer arrives. The scenario runner and the
 * harness step the model through it (the one part of the oracle they import: layering.test.ts).
 */

/** The server a query went to: a pod or an external by name, its port and transport (absent: UDP). */
export interface QueriedServer {
  readonly to: string;
  readonly port: number;
  readonly protocol?: DnsTransport;
}

/**
 * Whether the DNS proxy learns an answer to `pod`'s query for `name`: the query must be redirected
 * to the proxy by an L7 `dns` rule of the pod's egress and allowed by it (the proxy refuses the
 * others, and an answer to a query it never saw teaches nothing). With a `server` (a pod or an
 * external, on `port` over `protocol`, UDP when absent), the query is judged as that flow; without
 * one, by any egress allow rule of the pod whose DNS rules allow the name.
 */
function dnsProxyLearns(state: ClusterState, pod: string, name: string, server?: QueriedServer): boolean {
  const src = resolveEndpoint(state, pod);
  if (src.kind !== 'pod' || state.remotePods?.has(pod) === true) return false;
  const request = { dns: { name } };
  if (server !== undefined) {
    const dst = resolveEndpoint(state, server.to);
    const protocol = server.protocol ?? 'UDP';
    const d = decideDirection(state, src, 'egress', dst, protocol, server.port, request);
    // The proxy forwards the query with the pod's identity: a server pod's ingress must admit it.
    // Another node enforces a remote server pod's ingress; the answer is the evidence it admitted
    // the query (as the engine, which has no map for it: fqdn-stage.ts `serverAdmits`).
    const remote = dst.kind === 'pod' && state.remotePods?.has(dst.name) === true;
    const admitted = dst.kind !== 'pod' || remote || decideDirection(state, dst, 'ingress', src, protocol, server.port).allowed;
    return d.l7?.parser === 'dns' && d.l7.allowed && admitted;
  }
  for (const policy of state.policies.values()) {
    for (const rule of policy.rules) {
      if (rule.direction !== 'egress' || rule.verdict !== 'allow' || !selectorMatches(rule.subject, src.labels)) continue;
      if (rule.ports.some((c) => c.l7?.parser === 'dns' && l7Allows(c.l7, request))) return true;
    }
  }
  return false;
}

/** The state after `pod` got an answer: recorded when the proxy learns it, else unchanged. */
export function applyDnsAnswer(state: ClusterState, pod: string, name: string, ips: readonly IpAddress[], ttl: number, server?: QueriedServer): ClusterState {
  if (!dnsProxyLearns(state, pod, name, server)) return state;
  return { ...state, dns: recordDnsAnswer(state.dns ?? EMPTY_DNS_CACHE, pod, name, ips, ttl, server && serverAddress(state, server)) };
}

/** The server's address, port and transport as the proxy knows them (the query's destination). */
function serverAddress(state: ClusterState, server: QueriedServer): DnsServer {
  const ep = resolveEndpoint(state, server.to);
  return { ip: endpointAddress(ep), port: server.port, ...(server.protocol ? { protocol: server.protocol } : {}) };
}
