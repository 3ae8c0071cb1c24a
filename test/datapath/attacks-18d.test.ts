import { randomBytes, randomInt } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { run } from '../../src/datapath/netns.js';
import { Testbed } from '../../src/datapath/testbed.js';
import type { ClusterState } from '../../src/model/cluster.js';
import { parseScenario } from '../../src/scenario/format.js';
import { scenarioStates } from '../../src/scenario/run.js';
import { addr, arrives, fragmentHeader, ipv4, ipv6, tag, TCP, tcp, u16, udp } from './frames-9.js';
import { kernel } from './gate.js';
import { cnp } from './yaml.js';
import { counterGrowth } from './kernel-counters.js';

/**
 * Attack round 18d on real packets (docs/attack-findings-18d.md). The client may send anything to
 * the world but port 80 (an L3 allow and a port deny) and anything to `old` and the guarded pod; it admits the guarded
 * pod and `old`. `ext` is the world and runs no program. The guarded pod admits the client only;
 * mallory has no policy. The one step deletes `old` and starts `intruder` on its address (finding
 * 1010), so that test runs last.
 */
const OLD_IP = '10.244.200.2';
const CLUSTER = `
namespaces: [{name: x, labels: {}}]
pods:
  - {name: x/client, labels: {app: client}}
  - {name: x/guarded, labels: {app: guarded}}
  - {name: x/mallory, labels: {app: mallory}}
  - {name: x/old, labels: {app: old}, ip: ${OLD_IP}}
externals: [{name: ext, ip: 20.1.1.1}]
policies:
  - ${cnp('guarded-in', 'guarded', 'ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}]')}
  - ${cnp('client-in', 'client', 'ingress: [{fromEndpoints: [{matchLabels: {app: guarded}}, {matchLabels: {app: old}}]}]')}
  - ${cnp('client-out', 'client', `egress: [{toEntities: [world]}, {toEndpoints: [{matchLabels: {app: old}}, {matchLabels: {app: guarded}}]}]
            egressDeny: [{toEntities: [world], toPorts: [{ports: [{port: "80", protocol: UDP}, {port: "80", protocol: TCP}]}]}]`)}
steps:
  - changes:
      - {deletePod: x/old}
      - {addPod: {name: x/intruder, labels: {app: intruder}, ip: ${OLD_IP}}}
`;

let bed: Testbed | undefined;
let states: ClusterState[] = [];
afterAll(() => bed?.close());

const b = (): Testbed => bed as Testbed;
const ip4 = (name: string): string => b().address(name, 'ipv4').ip;
const ip6 = (name: string): string => b().address(name, 'ipv6').ip;
const sport = (): number => randomInt(20000, 60000);


function csum(bytes: readonly number[]): number {
  let s = 0;
  for (let i = 0; i < bytes.length; i += 2) s += ((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >> 16);
  return ~s & 0xffff;
}

/** An IPv4 packet with option bytes `opts` (IHL 5 + opts/4), and optionally its own total length, fragment field and id. */
function ipv4x(src: string, dst: string, proto: number, payload: readonly number[], o: { opts?: readonly number[]; totLen?: number; frag?: number; id?: number } = {}): number[] {
  const opts = o.opts ?? [];
  const ihl = 5 + opts.length / 4;
  const h = [0x40 | ihl, 0, ...u16(o.totLen ?? ihl * 4 + payload.length), ...u16(o.id ?? 0x1234), ...u16(o.frag ?? 0), 64, proto, 0, 0, ...addr(src), ...addr(dst), ...opts];
  const c = csum(h);
  h[10] = c >> 8;
  h[11] = c & 0xff;
  return [0x08, 0x00, ...h, ...payload];
}

/** A UDP datagram from `src` to `dst` with its IPv6 checksum, so the receiving kernel delivers it. */
function udp6(src: string, dst: string, sp: number, dp: number): number[] {
  const seg = [...u16(sp), ...u16(dp), ...u16(16), 0, 0, ...tag()];
  const c = csum([...addr(src), ...addr(dst), 0, 0, ...u16(seg.length), 0, 0, 0, 17, ...seg]) || 0xffff;
  seg[6] = c >> 8;
  seg[7] = c & 0xff;
  return seg;
}

/** How much each of `keys` grew in `ext`'s IP counters while `f` ran. */
const grew = (keys: readonly string[], f: () => unknown): number[] => counterGrowth(b(), 'ext', keys, f);

kernel('attack round 18d: the datapath on hand-made packets', () => {
  beforeAll(() => {
    states = scenarioStates(parseScenario(CLUSTER, 'attacks-18d.yaml'));
    bed = new Testbed({ listen: new Set(['UDP:81', 'TCP:81', 'UDP:9999']) });
    const decide = (from: string, to: string, port: number): boolean => b().decide(states[0] as ClusterState, { from, to, port, protocol: 'UDP' }).allowed;
    expect([decide('x/client', 'ext', 81), decide('x/client', 'ext', 80), decide('ext', 'x/client', 81), decide('x/guarded', 'x/client', 81), decide('x/mallory', 'x/client', 81)]).toEqual([true, false, false, true, false]);
  }, 60_000);

  /** An ICMP error from `ext` to the client quoting `quoted` (a frame of ipv4/ipv6, EtherType dropped). */
  const err4 = (quoted: readonly number[], type = 3): number[] => ipv4(ip4('ext'), ip4('x/client'), 1, [type, 3, 0, 0, 0, 0, 0, 0, ...quoted.slice(2), ...tag()]);
  const err6 = (quoted: readonly number[]): number[] => ipv6(ip6('ext'), ip6('x/client'), 58, [1, 4, 0, 0, 0, 0, 0, 0, ...quoted.slice(2), ...tag()]);

  it('held: an ICMP error quoting an IPv4 header with options is related; a nested error or a quoted later fragment is not', () => {
    const sp = sport();
    const flow = ipv4x(ip4('x/client'), ip4('ext'), 17, udp(sp, 9999));
    expect(arrives(b(), 'x/client', 'ext', flow)).toBe(true);
    // The quote's own IHL (6, and 15: 40 bytes of options) finds the UDP ports behind the options.
    const withOpts = (n: number): number[] => ipv4x(ip4('x/client'), ip4('ext'), 17, udp(sp, 9999), { opts: Array<number>(n).fill(1) });
    expect([err4(flow), err4(withOpts(4)), err4(withOpts(40))].map((f) => arrives(b(), 'ext', 'x/client', f))).toEqual([true, true, true]);
    // An error quoting an error that quotes the flow: the inner packet is ICMP type 3, which no
    // tracked flow is; a quoted later fragment has no ports; a quoted first fragment has them.
    const nested = ipv4(ip4('x/client'), ip4('ext'), 1, [3, 3, 0, 0, 0, 0, 0, 0, ...flow.slice(2, 30)]);
    const quotedFrag = (frag: number): number[] => ipv4x(ip4('x/client'), ip4('ext'), 17, udp(sp, 9999), { frag });
    expect([nested, quotedFrag(0x0003), quotedFrag(0x2000)].map((q) => arrives(b(), 'ext', 'x/client', err4(q)))).toEqual([false, false, true]);
    // The same quote one port off: no tracked flow.
    expect(arrives(b(), 'ext', 'x/client', err4(ipv4x(ip4('x/client'), ip4('ext'), 17, udp(sp + 1, 9999))))).toBe(false);
  });

  it('held: a fragmented ICMP error passes its first fragment (related), its later fragment is policy\'s (dropped): no datagram', () => {
    const sp = sport();
    const flow = ipv4(ip4('x/client'), ip4('ext'), 17, udp(sp, 9999));
    expect(arrives(b(), 'x/client', 'ext', flow)).toBe(true);
    // ICMP header + IP header + UDP header = 36 bytes, padded to 40 (fragments are 8-byte multiples).
    const body = [3, 3, 0, 0, 0, 0, 0, 0, ...flow.slice(2, 30), 0, 0, 0, 0, ...tag(16)];
    const id = randomInt(1, 0xffff);
    const first = ipv4x(ip4('ext'), ip4('x/client'), 1, body.slice(0, 40), { frag: 0x2000, id });
    const later = ipv4x(ip4('ext'), ip4('x/client'), 1, body.slice(40), { frag: 5, id });
    expect([arrives(b(), 'ext', 'x/client', first), arrives(b(), 'ext', 'x/client', later)]).toEqual([true, false]);
  });

  it('held: ICMPv6 errors: extension headers before the error are skipped; a quote with extension headers is not related (stricter than Cilium)', () => {
    const sp = sport();
    const flow = ipv6(ip6('x/client'), ip6('ext'), 17, udp(sp, 9999));
    expect(arrives(b(), 'x/client', 'ext', flow)).toBe(true);
    const outerOpts = ipv6(ip6('ext'), ip6('x/client'), 60, [58, 0, 1, 4, 0, 0, 0, 0, 1, 4, 0, 0, 0, 0, 0, 0, ...flow.slice(2), ...tag()]);
    const quotedOpts = ipv6(ip6('x/client'), ip6('ext'), 60, [17, 0, 1, 4, 0, 0, 0, 0, ...udp(sp, 9999)]);
    const quotedFrag = ipv6(ip6('x/client'), ip6('ext'), 44, [...fragmentHeader(17, 0, true, 7), ...udp(sp, 9999)]);
    expect([err6(flow), outerOpts, err6(quotedOpts), err6(quotedFrag)].map((f) => arrives(b(), 'ext', 'x/client', f))).toEqual([true, true, false, false]);
  });

  it('held: IPv4 total length below the header, TCP data offsets 0, 4 and 15: decided by the same ports; the receiver drops the bad ones', () => {
    expect(arrives(b(), 'x/client', 'ext', ipv4x(ip4('x/client'), ip4('ext'), 17, udp(sport(), 81), { totLen: 16 }))).toBe(false);
    const seg = (dp: number, doff: number): number[] => { const t = tcp(sport(), dp, TCP.SYN); t[12] = doff << 4; return t; };
    for (const doff of [0, 4, 15]) {
      let sent: boolean[] = [];
      const seen = grew(['Tcp.InErrs'], () => { sent = [81, 80].map((dp) => arrives(b(), 'x/client', 'ext', ipv4(ip4('x/client'), ip4('ext'), 6, seg(dp, doff)))); });
      // doff < 5: tcp_v4_rcv's bad_packet (InErrs); 15: more header than segment, dropped before the checksum.
      expect({ doff, sent, bad: seen[0] }).toEqual({ doff, sent: [true, false], bad: doff < 5 ? 1 : 0 });
    }
  });

  it('held: IPv6 payload length 0 behind a hop-by-hop header: program and receiver both take the frame as the datagram', () => {
    // No jumbo option: ip6_rcv_core keeps the frame (it trims only when the length is not 0 or
    // the next header is not hop-by-hop), so `ext` delivers the UDP datagram that the program decided.
    const frame = (dp: number): number[] => [0x86, 0xdd, 0x60, 0, 0, 0, 0, 0, 0, 64, ...addr(ip6('x/client')), ...addr(ip6('ext')), 17, 0, 1, 4, 0, 0, 0, 0, ...udp6(ip6('x/client'), ip6('ext'), sport(), dp)];
    let sent: boolean[] = [];
    const delivered = grew(['Udp6InDatagrams'], () => { sent = [81, 80].map((dp) => arrives(b(), 'x/client', 'ext', frame(dp))); });
    expect({ sent, delivered }).toEqual({ sent: [true, false], delivered: [1] });
  });

  it('held: ARP and neighbour advertisements claiming the guarded pod\'s addresses change nothing the router routes by', () => {
    // Address, device and link-layer address; not the NUD state (REACHABLE, DELAY, STALE, PROBE), which moves with time and traffic.
    const neigh = (): string =>
      run('ip', ['-n', b().router, 'neigh', 'show'])
        .split('\n')
        .filter((l) => l.includes(ip4('x/guarded')) || l.includes(ip6('x/guarded')))
        .map((l) => l.replace(/\s+(REACHABLE|STALE|DELAY|PROBE)\s*$/, '').trim())
        .sort()
        .join('\n');
    const before = neigh();
    const mac = [0x02, ...randomBytes(5)];
    const arpReply = [0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2, ...mac, ...addr(ip4('x/guarded')), ...Array<number>(6).fill(0xff), ...addr('169.254.1.1'), ...tag()];
    const gratuitous = [0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1, ...mac, ...addr(ip4('x/guarded')), ...Array<number>(6).fill(0), ...addr(ip4('x/guarded')), ...tag()];
    // An unsolicited, overriding NA for the guarded pod's IPv6 address to the router (hop limit 255: ND skips policy).
    const na = [136, 0, 0, 0, 0x20, 0, 0, 0, ...addr(ip6('x/guarded')), 2, 1, ...mac];
    const c = csum([...addr(ip6('x/mallory')), ...addr('fe80::1'), 0, 0, ...u16(na.length), 0, 0, 0, 58, ...na]);
    na[2] = c >> 8;
    na[3] = c & 0xff;
    const naFrame = [0x86, 0xdd, 0x60, 0, 0, 0, ...u16(na.length), 58, 255, ...addr(ip6('x/mallory')), ...addr('fe80::1'), ...na];
    for (const f of [arpReply, gratuitous, naFrame]) arrives(b(), 'x/mallory', 'x/guarded', f);
    // The router's neighbours of the guarded pod's addresses are as before: entries are per device,
    // and its routes name the guarded pod's veth (arp_process and ndisc_recv_na create none for
    // unsolicited announcements: arp_accept and accept_untracked_na are 0).
    expect(neigh()).toBe(before);
    const toGuarded = (): number[] => ipv4(ip4('x/client'), ip4('x/guarded'), 17, udp(sport(), 81));
    expect([arrives(b(), 'x/client', 'x/guarded', toGuarded()), arrives(b(), 'x/client', 'x/mallory', toGuarded())]).toEqual([true, false]);
    // Mallory as the guarded pod (whom the client admits): the source check drops it.
    expect([arrives(b(), 'x/guarded', 'x/client', ipv4(ip4('x/guarded'), ip4('x/client'), 17, udp(sport(), 81))), arrives(b(), 'x/mallory', 'x/client', ipv4(ip4('x/guarded'), ip4('x/client'), 17, udp(sport(), 81))), arrives(b(), 'x/mallory', 'x/client', ipv6(ip6('x/guarded'), ip6('x/client'), 17, udp(sport(), 81)))]).toEqual([true, false, false]);
  });

  it('held: broadcast, multicast and link-local destinations from a pod reach no pod and no external', () => {
    const to = (dst: string): boolean[] => ['x/guarded', 'x/client', 'ext'].map((n) => arrives(b(), 'x/mallory', n, dst.includes(':') ? ipv6(ip6('x/mallory'), dst, 17, udp(sport(), 81)) : ipv4(ip4('x/mallory'), dst, 17, udp(sport(), 81))));
    for (const dst of ['255.255.255.255', '224.0.0.1', '239.1.1.1', '169.254.1.2', '169.254.255.255', 'ff02::1', 'ff0e::1', 'fe80::2']) expect({ dst, arrived: to(dst) }).toEqual({ dst, arrived: [false, false, false] });
  });

  it('1010: a flow tracked with a deleted pod\'s address carried a new pod on that address past the policy', () => {
    // While `old` lives: the client's UDP and TCP flows to it, and `old`'s UDP flow to the client.
    const [sp, sp2, sp3] = [sport(), sport(), sport()];
    expect(arrives(b(), 'x/client', 'x/old', ipv4(ip4('x/client'), OLD_IP, 17, udp(sp, 81)))).toBe(true);
    // `old`'s kernel answers the SYN (a listener on TCP/81) and the client's kernel resets (no socket):
    // the flow stays tracked, closed one way only, for the established lifetime.
    expect(arrives(b(), 'x/client', 'x/old', ipv4(ip4('x/client'), OLD_IP, 6, tcp(sp2, 81, TCP.SYN)))).toBe(true);
    expect(arrives(b(), 'x/old', 'x/client', ipv4(OLD_IP, ip4('x/client'), 17, udp(sp3, 81)))).toBe(true);
    // `old` goes; `intruder` starts on its address. The maps deny the intruder both ways.
    const state = states[1] as ClusterState;
    expect([b().decide(state, { from: 'x/intruder', to: 'x/client', port: 81, protocol: 'UDP' }).allowed, b().decide(state, { from: 'x/client', to: 'x/intruder', port: sp3, protocol: 'UDP' }).allowed]).toEqual([false, false]);
    // The intruder answers the client's flows from their port, and the client answers `old`'s flow:
    // the entries of `old`'s flows passed all three as replies. Cilium deletes every conntrack
    // entry of an endpoint's addresses when it is removed and when a new one first regenerates.
    const intruderUdp = arrives(b(), 'x/intruder', 'x/client', ipv4(OLD_IP, ip4('x/client'), 17, udp(81, sp)));
    // TCP: a SYN first, so the intruder's own egress tracks the flow and lets its ACK go (a segment
    // without SYN of no tracked flow is dropped by the sender's program); at the client both are replies.
    const intruderTcp = [TCP.SYN, TCP.ACK].map((fl) => arrives(b(), 'x/intruder', 'x/client', ipv4(OLD_IP, ip4('x/client'), 6, tcp(81, sp2, fl))));
    const clientReply = arrives(b(), 'x/client', 'x/intruder', ipv4(ip4('x/client'), OLD_IP, 17, udp(81, sp3)));
    expect({ intruderUdp, intruderTcp, clientReply }).toEqual({ intruderUdp: false, intruderTcp: [false, false], clientReply: false });
  });
});
