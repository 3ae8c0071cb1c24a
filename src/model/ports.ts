/** L4 protocols a flow can have. `ANY` appears only in rules, never in flows. */
export const FLOW_PROTOCOLS = ['TCP', 'UDP', 'SCTP', 'ICMP', 'ICMPv6'] as const;
export type FlowProtocol = (typeof FLOW_PROTOCOLS)[number];
export type RuleProtocol = FlowProtocol | 'ANY';

/** IANA protocol numbers, as they appear in the policy-map key. */
export const PROTOCOL_NUMBER: Readonly<Record<FlowProtocol, number>> = {
  TCP: 6,
  UDP: 17,
  SCTP: 132,
  ICMP: 1,
  ICMPv6: 58,
};

/**
 * What Cilium expands `protocol: ANY` into, with or without a port: never ICMP (Cilium
 * `pkg/policy/rule.go` merges an ANY port as TCP, UDP and SCTP; ICMP only comes from `icmps`).
 */
export const PORT_PROTOCOLS: readonly FlowProtocol[] = ['TCP', 'UDP', 'SCTP'];

/**
 * The protocols a proxy redirect delivers to the proxy. Cilium gives a DNS rule's SCTP port the DNS
 * parser too (pkg/policy/l4.go `createL4Filter`: "we need this to redirect DNS UDP (or ANY ...)"), but
 * the TPROXY rules are `tcp` and `udp` only (pkg/datapath/iptables/iptables.go `addProxyRules`) and BPF
 * TPROXY's `assign_socket` returns DROP_PROXY_UNKNOWN_PROTO for the rest (bpf/lib/proxy.h): a packet of
 * another protocol marked for the proxy reaches neither the proxy nor its destination.
 */
export function proxyTakes(protocol: FlowProtocol): boolean {
  return protocol === 'TCP' || protocol === 'UDP';
}

export const MAX_PORT = 65535;

/** The destination "port" a flow of this protocol can carry: 1..65535, or an ICMP type 0..255. */
export function flowPortRange(protocol: FlowProtocol): { readonly min: number; readonly max: number } {
  return protocol === 'ICMP' || protocol === 'ICMPv6' ? { min: 0, max: 255 } : { min: 1, max: MAX_PORT };
}

/** Which destination ports (or ICMP types) of which protocol a rule covers. */
export type L4Match =
  | { readonly kind: 'all' }
  | { readonly kind: 'range'; readonly protocol: RuleProtocol; readonly from: number; readonly to: number }
  | { readonly kind: 'named'; readonly protocol: RuleProtocol; readonly name: string };

export const ALL_L4: L4Match = { kind: 'all' };

/** A container port a pod exposes; named ports resolve against these. */
export interface ContainerPort {
  readonly name?: string;
  readonly port: number;
  readonly protocol: FlowProtocol;
}

export function protocolCovers(rule: RuleProtocol, flow: FlowProtocol): boolean {
  if (rule === 'ANY') return (PORT_PROTOCOLS as readonly string[]).includes(flow);
  return rule === flow;
}

/**
 * Does the rule's L4 match cover a flow to `port`/`protocol` whose destination exposes
 * `destPorts`? Named ports resolve against the destination's container ports, name and protocol.
 */
export function l4Covers(m: L4Match, protocol: FlowProtocol, port: number, destPorts: readonly ContainerPort[]): boolean {
  switch (m.kind) {
    case 'all':
      return true;
    case 'range':
      if (!protocolCovers(m.protocol, protocol)) return false;
      return m.from === 0 || (port >= m.from && port <= m.to);
    case 'named':
      return destPorts.some(
        (cp) => cp.name === m.name && cp.port === port && cp.protocol === protocol && protocolCovers(m.protocol, protocol),
      );
  }
}

/** ICMP type names Cilium accepts in `icmps[].fields[].type`. */
export const ICMPV4_TYPES: Readonly<Record<string, number>> = {
  EchoReply: 0,
  DestinationUnreachable: 3,
  Redirect: 5,
  Echo: 8,
  EchoRequest: 8,
  RouterAdvertisement: 9,
  RouterSelection: 10,
  TimeExceeded: 11,
  ParameterProblem: 12,
  Timestamp: 13,
  TimestampReply: 14,
  Photuris: 40,
  ExtendedEchoRequest: 42,
  ExtendedEchoReply: 43,
};

export const ICMPV6_TYPES: Readonly<Record<string, number>> = {
  DestinationUnreachable: 1,
  PacketTooBig: 2,
  TimeExceeded: 3,
  ParameterProblem: 4,
  EchoRequest: 128,
  EchoReply: 129,
  MulticastListenerQuery: 130,
  MulticastListenerReport: 131,
  MulticastListenerDone: 132,
  RouterSolicitation: 133,
  RouterAdvertisement: 134,
  NeighborSolicitation: 135,
  NeighborAdvertisement: 136,
  RedirectMessage: 137,
  RouterRenumbering: 138,
  ICMPNodeInformationQuery: 139,
  ICMPNodeInformationResponse: 140,
  InverseNeighborDiscoverySolicitation: 141,
  InverseNeighborDiscoveryAdvertisement: 142,
  HomeAgentAddressDiscoveryRequest: 144,
  HomeAgentAddressDiscoveryReply: 145,
  MobilePrefixSolicitation: 146,
  MobilePrefixAdvertisement: 147,
  DuplicateAddressRequestCodeSuffix: 157,
  DuplicateAddressConfirmationCodeSuffix: 158,
  ExtendedEchoRequest: 160,
  ExtendedEchoReply: 161,
};

// Module constants: a regex literal in a function body is a new RegExp object per call (every pod's ports are checked).
const PORT_NAME_CHARS = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
const A_LETTER = /[a-z]/;

/** IANA_SVC_NAME, the format of a named port (RFC 6335). */
export function isValidPortName(name: string): boolean {
  return name.length >= 1 && name.length <= 15 && PORT_NAME_CHARS.test(name) && A_LETTER.test(name) && !name.includes('--');
}
