import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { PROBE_TOOL } from '../../src/datapath/loader.js';
import { run } from '../../src/datapath/netns.js';
import { Testbed } from '../../src/datapath/testbed.js';
import { parseIp } from '../../src/model/cidr.js';
import type { ClusterState } from '../../src/model/cluster.js';
import { parseScenario } from '../../src/scenario/format.js';
import { scenarioStates } from '../../src/scenario/run.js';
import { kernel } from './gate.js';
import { cnp } from './yaml.js';

/**
 * Attack round 7c: hand-made packets (bpf/probe.c `frame`) against bpf/datapath.c. The server
 * allows the client at L3 but denies its TCP/80; the client's egress reaches the server and
 * `locked` only (so client -> other is denied by the client's egress alone); `locked` admits the
 * server only (client -> locked is denied by locked's ingress alone).
 */
const SCENARIO = `
namespaces: [{name: x, labels: {}}]
pods:
  - {name: x/client, labels: {app: client}}
  - {name: x/server, labels: {app: server}}
  - {name: x/other, labels: {app: other}}
  - {name: x/locked, labels: {app: locked}}
policies:
  - ${cnp('server-in', 'server', `ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}]
            ingressDeny: [{fromEndpoints: [{matchLabels: {app: client}}], toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]`)}
  - ${cnp('locked-in', 'locked', 'ingress: [{fromEndpoints: [{matchLabels: {app: server}}]}]')}
  - ${cnp('client-out', 'client', 'egress: [{toEndpoints: [{matchLabels: {app: server}}, {matchLabels: {app: locked}}]}]')}
steps:
  - changes:
      - apply: ${cnp('server-deny-81', 'server', 'ingressDeny: [{fromEndpoints: [{matchLabels: {app: client}}], toPorts: [{ports: [{port: "81", protocol: TCP}]}]}]')}
`;

let bed: Testbed | undefined;
/** The scenario's states: as listed, then with the server denying the client's TCP/81 too. */
let states: ClusterState[] = [];

afterAll(() => bed?.close());

const hex = (bytes: readonly number[]): string => Buffer.from(bytes).toString('hex');
const u16 = (n: number): number[] => [n >> 8, n & 0xff];
function addr(text: string): number[] {
  const a = parseIp(text);
  const n = a.family === 'ipv4' ? 4 : 16;
  return Array.from({ length: n }, (_, i) => Number((a.value >> BigInt((n - 1 - i) * 8)) & 0xffn));
}
/** Each frame ends with a tag of its own: the probe recognises its arrival by it. */
const tag = (): number[] => [...randomBytes(8)];

function csum(b: readonly number[]): number {
  let s = 0;
  for (let i = 0; i < b.length; i += 2) s += ((b[i] ?? 0) << 8) | (b[i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >> 16);
  return ~s & 0xffff;
}

/** `fragment`: the flags and offset field (0x2000: more fragments; offset in 8-byte units). */
function ipv4(src: string, dst: string, proto: number, payload: readonly number[], fragment = 0, id = 0x1234): number[] {
  const h = [0x45, 0, ...u16(20 + payload.length), ...u16(id), ...u16(fragment), 64, proto, 0, 0, ...addr(src), ...addr(dst)];
  const c = csum(h);
  h[10] = c >> 8;
  h[11] = c & 0xff;
  return [0x08, 0x00, ...h, ...payload];
}

function ipv6(src: string, dst: string, next: number, payload: readonly number[]): number[] {
  return [0x86, 0xdd, 0x60, 0, 0, 0, ...u16(payload.length), next, 64, ...addr(src), ...addr(dst), ...payload];
}

const tcp = (sport: number, dport: number, flags: number): number[] => [...u16(sport), ...u16(dport), 0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0, ...tag()];
const tcpSyn = (dport: number): number[] => tcp(40000, dport, 0x02);
const udp = (dport: number): number[] => [...u16(40000), ...u16(dport), ...u16(16), 0, 0, ...tag()];
const icmp6 = (type: number): number[] => [type, 0, 0, 0, 0, 0, 0, 0, ...tag()];

/** IPv6 extension headers of 8 bytes, each naming the header after it. */
const EXT: Record<string, (next: number) => { type: number; bytes: number[] }> = {
  'hop-by-hop (PadN)': (next) => ({ type: 0, bytes: [next, 0, 1, 4, 0, 0, 0, 0] }),
  'destination options (PadN)': (next) => ({ type: 60, bytes: [next, 0, 1, 4, 0, 0, 0, 0] }),
  'routing (type 253, segments left 0)': (next) => ({ type: 43, bytes: [next, 0, 253, 0, 0, 0, 0, 0] }),
  'atomic fragment (offset 0, no more fragments)': (next) => ({ type: 44, bytes: [next, 0, 0, 0, 0, 0, 0x12, 0x34] }),
};

function behind(names: readonly string[], proto: number, l4: readonly number[]): { next: number; payload: number[] } {
  let next = proto;
  let payload = [...l4];
  for (const name of [...names].reverse()) {
    const h = (EXT[name] as (n: number) => { type: number; bytes: number[] })(next);
    payload = [...h.bytes, ...payload];
    next = h.type;
  }
  return { next, payload };
}

/** The MAC of the router's side of a node's veth: where the node's frames must go. */
function routerMac(b: Testbed, ip: string): string {
  const dev = (JSON.parse(run('ip', ['-n', b.router, '-j', 'route', 'get', ip])) as { dev: string }[])[0]?.dev as string;
  return (JSON.parse(run('ip', ['-n', b.router, '-j', 'link', 'show', dev])) as { address: string }[])[0]?.address as string;
}

/** Sends `frame` (EtherType onwards) from `from`'s eth0 to the router; true if it arrives at `to`. */
function arrives(from: string, to: string, frame: readonly number[]): boolean {
  const b = bed as Testbed;
  const src = b.address(from, 'ipv4');
  const r = spawnSync(PROBE_TOOL, ['frame', src.netns, b.address(to, 'ipv4').netns, routerMac(b, src.ip), hex(frame), '300'], { encoding: 'utf8' });
  if (r.status !== 0 && r.status !== 1) throw new Error(`probe frame failed (${r.status ?? 'signal'}): ${r.stderr}`);
  return r.status === 0;
}

const ip = (name: string, family: 'ipv4' | 'ipv6'): string => (bed as Testbed).address(name, family).ip;

kernel('attack round 7c: hand-made packets against the endpoint program', () => {
  beforeAll(() => {
    states = scenarioStates(parseScenario(SCENARIO, 'attacks-7c.yaml'));
    const state = states[0] as ClusterState;
    bed = new Testbed({ listen: new Set(['TCP:80', 'TCP:81']) });
    const decide = (from: string, to: string, port: number): boolean => (bed as Testbed).decide(state, { from, to, port, protocol: 'TCP' }).allowed;
    // The verdicts the attacks must not change, by ordinary connections.
    expect([decide('x/client', 'x/server', 81), decide('x/client', 'x/server', 80), decide('x/client', 'x/other', 81), decide('x/client', 'x/locked', 81), decide('x/server', 'x/locked', 81)]).toEqual([true, false, false, false, true]);
  }, 60_000);

  it('the frames are well made: the plain ones arrive or not as the policy says', () => {
    const [c6, s6] = [ip('x/client', 'ipv6'), ip('x/server', 'ipv6')];
    expect(arrives('x/client', 'x/server', ipv6(c6, s6, 6, tcpSyn(81)))).toBe(true);
    expect(arrives('x/client', 'x/server', ipv6(c6, s6, 6, tcpSyn(80)))).toBe(false);
    expect(arrives('x/client', 'x/server', ipv4(ip('x/client', 'ipv4'), ip('x/server', 'ipv4'), 17, udp(53)))).toBe(true);
    expect(arrives('x/client', 'x/other', ipv4(ip('x/client', 'ipv4'), ip('x/other', 'ipv4'), 17, udp(53)))).toBe(false);
  });

  // Finding 70. Cilium skips extension headers to find the L4 header (bpf/lib/ipv6.h ipv6_hdrlen_offset).
  for (const names of [['hop-by-hop (PadN)'], ['destination options (PadN)'], ['routing (type 253, segments left 0)'], ['atomic fragment (offset 0, no more fragments)'], ['hop-by-hop (PadN)', 'destination options (PadN)', 'routing (type 253, segments left 0)']]) {
    it(`finding 70: a TCP SYN to a denied port behind ${names.join(' + ')} is dropped, to an allowed port it passes`, () => {
      const [c6, s6] = [ip('x/client', 'ipv6'), ip('x/server', 'ipv6')];
      const denied = behind(names, 6, tcpSyn(80));
      expect(arrives('x/client', 'x/server', ipv6(c6, s6, denied.next, denied.payload))).toBe(false);
      const allowed = behind(names, 6, tcpSyn(81));
      expect(arrives('x/client', 'x/server', ipv6(c6, s6, allowed.next, allowed.payload))).toBe(true);
    });
  }

  it('finding 70: a non-first IPv6 fragment, a "no next header" and five extension headers are dropped (no ports to decide on)', () => {
    const [c6, s6] = [ip('x/client', 'ipv6'), ip('x/server', 'ipv6')];
    // Offset 8, no more fragments: its first bytes read as TCP ports would be an allowed 81.
    expect(arrives('x/client', 'x/server', ipv6(c6, s6, 44, [6, 0, 0, 8, 0, 0, 0x12, 0x35, ...tcpSyn(81)]))).toBe(false);
    expect(arrives('x/client', 'x/server', ipv6(c6, s6, 59, tcpSyn(81)))).toBe(false);
    const five = behind(['hop-by-hop (PadN)', 'destination options (PadN)', 'routing (type 253, segments left 0)', 'destination options (PadN)', 'destination options (PadN)'], 6, tcpSyn(81));
    expect(arrives('x/client', 'x/server', ipv6(c6, s6, five.next, five.payload))).toBe(false);
  });

  // Finding 71. Cilium's from-container program drops EtherTypes other than IPv4, IPv6 and ARP
  // (bpf/bpf_lxc.c cil_from_container: default DROP_UNKNOWN_L3).
  for (const [name, outer] of [['802.1Q', 0x8100], ['802.1ad', 0x88a8]] as const) {
    it(`finding 71: an IPv4 packet in two VLAN-0 tags (outer ${name}) does not pass the pod's egress policy`, () => {
      const packet = ipv4(ip('x/client', 'ipv4'), ip('x/other', 'ipv4'), 17, udp(53));
      // The kernel strips the outer tag before tc and the inner one after: tc saw EtherType 0x8100.
      expect(arrives('x/client', 'x/other', [...u16(outer), 0, 0, 0x81, 0x00, 0, 0, ...packet])).toBe(false);
      // Allowed flows still pass so tagged (one tag: tc sees the packet untagged).
      expect(arrives('x/client', 'x/server', [0x81, 0x00, 0, 0, ...ipv4(ip('x/client', 'ipv4'), ip('x/server', 'ipv4'), 17, udp(53))])).toBe(true);
    });
  }

  // Finding 72. Cilium lets only neighbour solicitations and advertisements skip policy
  // (bpf/lib/icmp6.h is_icmp6_ndp: ICMP6_NS_MSG_TYPE, ICMP6_NA_MSG_TYPE).
  for (const type of [133, 134, 137]) {
    it(`finding 72: ICMPv6 type ${type} to a pod whose ingress denies the sender is dropped`, () => {
      expect(arrives('x/client', 'x/locked', ipv6(ip('x/client', 'ipv6'), ip('x/locked', 'ipv6'), 58, icmp6(type)))).toBe(false);
      expect(arrives('x/client', 'x/server', ipv6(ip('x/client', 'ipv6'), ip('x/server', 'ipv6'), 58, icmp6(type)))).toBe(true);
    });
  }

  // Finding 73. Cilium drops a packet from a pod whose source is not the pod's own address
  // (bpf/bpf_lxc.c: is_valid_lxc_src_ip / is_valid_lxc_src_ipv4, DROP_INVALID_SIP): the receiver
  // decides on the identity of the source address.
  for (const family of ['ipv4', 'ipv6'] as const) {
    it(`finding 73: a pod sending with another pod's ${family} address as source does not get that pod's access`, () => {
      const build = (src: string): number[] => {
        const [s, d] = [ip(src, family), ip('x/locked', family)];
        return family === 'ipv4' ? ipv4(s, d, 17, udp(53)) : ipv6(s, d, 17, udp(53));
      };
      expect(arrives('x/client', 'x/locked', build('x/client'))).toBe(false);
      expect(arrives('x/client', 'x/locked', build('x/server'))).toBe(false);
      expect(arrives('x/server', 'x/locked', build('x/server'))).toBe(true);
    });
  }

  // Finding 74. Cilium skips policy only for replies (CT_REPLY, CT_RELATED): packets of an
  // established connection in its opening direction are decided by policy again (bpf/bpf_lxc.c
  // handle_ipv4_from_lxc / ipv4_policy: policy_can_egress4 / policy_can_ingress4 for CT_ESTABLISHED).
  it('finding 74: a connection the policy stopped allowing carries no more packets in its opening direction', () => {
    const b = bed as Testbed;
    const [c, s] = [ip('x/client', 'ipv4'), ip('x/server', 'ipv4')];
    expect(arrives('x/client', 'x/server', ipv4(c, s, 6, tcp(41000, 81, 0x02)))).toBe(true);
    expect(arrives('x/client', 'x/server', ipv4(c, s, 6, tcp(41000, 81, 0x10)))).toBe(true);
    try {
      expect(b.decide(states[1] as ClusterState, { from: 'x/client', to: 'x/server', port: 81, protocol: 'TCP' }).allowed).toBe(false);
      expect(arrives('x/client', 'x/server', ipv4(c, s, 6, tcp(41000, 81, 0x10)))).toBe(false);
      // Replies still pass, as in Cilium: the server's side of the old connection.
      expect(arrives('x/server', 'x/client', ipv4(s, c, 6, tcp(81, 41000, 0x10)))).toBe(true);
    } finally {
      b.decide(states[0] as ClusterState, { from: 'x/client', to: 'x/server', port: 81, protocol: 'TCP' });
    }
  });

  // Finding 75. Cilium tracks IPv4 fragments (enable-ipv4-fragment-tracking, default on): a later
  // fragment gets the ports its first fragment registered, and one whose first fragment was never
  // seen is dropped (bpf/lib/ipv4.h ipv4_handle_fragmentation: DROP_FRAG_NOT_FOUND).
  it('finding 75: a later IPv4 fragment is decided with its first fragment\'s ports, not with its own payload', () => {
    const [c, s] = [ip('x/client', 'ipv4'), ip('x/server', 'ipv4')];
    const id = (): number => randomBytes(2).readUInt16BE(0);
    // No first fragment: bytes that read as an allowed UDP header decide nothing.
    expect(arrives('x/client', 'x/server', ipv4(c, s, 17, udp(53), 1, id()))).toBe(false);
    // A denied first fragment (TCP/80); the next one's bytes read as a SYN to the allowed 81.
    const denied = id();
    expect(arrives('x/client', 'x/server', ipv4(c, s, 6, tcp(42000, 80, 0x02).slice(0, 24), 0x2000, denied))).toBe(false);
    expect(arrives('x/client', 'x/server', ipv4(c, s, 6, tcp(42000, 81, 0x02), 3, denied))).toBe(false);
    // An allowed datagram's later fragment passes, whatever its bytes look like.
    const allowed = id();
    expect(arrives('x/client', 'x/server', ipv4(c, s, 6, tcp(42001, 81, 0x02).slice(0, 24), 0x2000, allowed))).toBe(true);
    expect(arrives('x/client', 'x/server', ipv4(c, s, 6, [...Array<number>(16).fill(0), ...tag()], 3, allowed))).toBe(true);
  });
});
