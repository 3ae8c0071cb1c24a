import type { IpAddress } from './cidr.js';

/**
 * The DNS events of `toFQDNs` (issue 16), for the engine to take in phase 2 next to its
 * `EngineEvent`s: both are transactional like every event (a batch applies whole or not at all).
 * Nothing in the engine may read the wall clock: `advanceTime` is the only way time passes, and a
 * `dnsResponse` happens at the engine's current time.
 */
export type FqdnEvent =
  /**
   * The DNS proxy of `endpoint` (`namespace/name`, a local pod) saw an answer for `name` holding
   * `ips`, valid `ttl` seconds, from `server` when given. The engine learns it only if the proxy
   * would have seen and allowed the query (`src/naive/evaluator.ts` `dnsProxyLearns` is the
   * reference): with a server, the query (to the server's address and port, over UDP unless the
   * server says TCP) must hit a redirect to the DNS proxy in the endpoint's egress policy map whose
   * L7 rules allow the name;
   * without one, some egress DNS rule of the endpoint must allow the name. Else it is a no-op.
   * Each (endpoint, name, IP) then lives max(ttl, minTtl) seconds from now.
   */
  | { readonly type: 'dnsResponse'; readonly endpoint: string; readonly name: string; readonly ips: readonly IpAddress[]; readonly ttl: number; readonly server?: DnsServer }
  /** Moves the clock forward by `seconds` (≥ 0); answers that expire by then leave the selections. */
  | { readonly type: 'advanceTime'; readonly seconds: number };

/**
 * The DNS server a query went to, as Cilium's DNS proxy knows it: the original destination address
 * and port, and the transport (absent: UDP). The proxy serves both (pkg/fqdn/dnsproxy/proxy.go:
 * `UDPServer, TCPServer`, one port "for both UDP and TCP"), and the policy map redirects each by its
 * own (port, protocol) key, so a query over TCP is judged as a TCP flow.
 */
export interface DnsServer {
  readonly ip: IpAddress;
  readonly port: number;
  readonly protocol?: DnsTransport;
}

/** The transports DNS queries take: UDP, or TCP (a truncated answer's retry, or a client's choice). */
export const DNS_TRANSPORTS = ['UDP', 'TCP'] as const;
export type DnsTransport = (typeof DNS_TRANSPORTS)[number];
