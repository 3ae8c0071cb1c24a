import { randomInt } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Testbed } from '../../src/datapath/testbed.js';
import type { ClusterState } from '../../src/model/cluster.js';
import { parseScenario } from '../../src/scenario/format.js';
import { scenarioStates } from '../../src/scenario/run.js';
import { arrives, ipv4, ipv6, tag, TCP, tcp, udp } from './frames-9.js';
import { kernel } from './gate.js';
import { CLIENT_SERVER_PEER_EXT } from './yaml.js';

/**
 * Attack round 16d on real packets (docs/attack-findings-16d.md), on round 10d's cluster
 * (CLIENT_SERVER_PEER_EXT): the client's ingress admits the peer only; the server's admits the
 * client (but not its TCP/80) and the external `ext`, which has no program of its own and can send
 * any frame into the router; the server sends to the client only.
 */

let bed: Testbed | undefined;
afterAll(() => bed?.close());

const b = (): Testbed => bed as Testbed;
const ip = (name: string): string => b().address(name, 'ipv4').ip;
const ip6 = (name: string): string => b().address(name, 'ipv6').ip;
const sport = (): number => randomInt(20000, 60000);
const syn4 = (src: string, dst: string, dp: number): number[] => ipv4(src, dst, 6, tcp(sport(), dp, TCP.SYN));
const syn6 = (src: string, dst: string, dp: number): number[] => ipv6(src, dst, 6, tcp(sport(), dp, TCP.SYN));

kernel('attack round 16d: the datapath on hand-made packets', () => {
  beforeAll(() => {
    const state = scenarioStates(parseScenario(CLIENT_SERVER_PEER_EXT, 'attacks-16d.yaml'))[0] as ClusterState;
    bed = new Testbed({ listen: new Set(['TCP:81']) });
    const decide = (from: string, to: string): boolean => b().decide(state, { from, to, port: 81, protocol: 'TCP' }).allowed;
    expect([decide('x/peer', 'x/client'), decide('ext', 'x/client'), decide('x/server', 'x/client'), decide('ext', 'x/server')]).toEqual([true, false, false, true]);
  }, 60_000);

  it('790: a packet from outside the node claiming a local pod\'s address was judged as that pod', () => {
    // Well made: the peer reaches the client, `ext` from its own addresses does not.
    expect([arrives(b(), 'x/peer', 'x/client', syn4(ip('x/peer'), ip('x/client'), 81)), arrives(b(), 'x/peer', 'x/client', syn6(ip6('x/peer'), ip6('x/client'), 81))]).toEqual([true, true]);
    expect([arrives(b(), 'ext', 'x/client', syn4(ip('ext'), ip('x/client'), 81)), arrives(b(), 'ext', 'x/client', syn6(ip6('ext'), ip6('x/client'), 81))]).toEqual([false, false]);
    // `ext` writes the peer's address as its source: the client's ingress took it for the peer.
    expect([arrives(b(), 'ext', 'x/client', syn4(ip('x/peer'), ip('x/client'), 81)), arrives(b(), 'ext', 'x/client', syn6(ip6('x/peer'), ip6('x/client'), 81))]).toEqual([false, false]);
    // And a pod from another's address, as before (Cilium's is_valid_lxc_src_ip).
    expect(arrives(b(), 'x/server', 'x/client', syn4(ip('x/peer'), ip('x/client'), 81))).toBe(false);
  });

  it('790: `ext` still reaches the server from its own address, and not from the client\'s address', () => {
    expect([arrives(b(), 'ext', 'x/server', syn4(ip('ext'), ip('x/server'), 80)), arrives(b(), 'ext', 'x/server', syn4(ip('ext'), ip('x/server'), 81))]).toEqual([true, true]);
    expect(arrives(b(), 'ext', 'x/server', syn4(ip('x/client'), ip('x/server'), 81))).toBe(false);
  });

  it('no ports: GRE (protocol 47) is dropped even from the L3-allowed peer, as Cilium (DROP_CT_UNKNOWN_PROTO; finding 2480)', () => {
    const gre = (from: string): number[] => ipv4(ip(from), ip('x/client'), 47, [0, 0, 0x08, 0, ...tag()]);
    expect([arrives(b(), 'x/peer', 'x/client', gre('x/peer')), arrives(b(), 'x/server', 'x/client', gre('x/server'))]).toEqual([false, false]);
  });

  it('VLAN tags: a priority tag (id 0) is decided on the packet inside it, any other id never reaches the pod', () => {
    const tagged = (id: number, from: string): number[] => [0x81, 0x00, 0, id, ...ipv4(ip(from), ip('x/client'), 17, udp(sport(), 81))];
    expect([arrives(b(), 'x/peer', 'x/client', tagged(0, 'x/peer')), arrives(b(), 'x/server', 'x/client', tagged(0, 'x/server'))]).toEqual([true, false]);
    expect(arrives(b(), 'x/peer', 'x/client', tagged(5, 'x/peer'))).toBe(false);
    // Two tags (802.1ad outside 802.1Q): the kernel strips one, the program sees another and drops.
    expect(arrives(b(), 'x/peer', 'x/client', [0x88, 0xa8, 0, 0, 0x81, 0x00, 0, 0, ...ipv4(ip('x/peer'), ip('x/client'), 17, udp(sport(), 81))])).toBe(false);
  });

  it('IPv4-mapped IPv6 addresses: a packet to ::ffff:<a pod\'s IPv4> does not reach the pod', () => {
    expect(arrives(b(), 'x/server', 'x/client', ipv6(ip6('x/server'), `::ffff:${ip('x/client')}`, 17, udp(sport(), 81)))).toBe(false);
    expect(arrives(b(), 'x/peer', 'x/client', ipv6(ip6('x/peer'), `::ffff:${ip('x/client')}`, 17, udp(sport(), 81)))).toBe(false);
  });

  /** An ICMP(v6) message of `type`/`code` from `from` to `to` quoting `quoted` (a frame from ipv4/ipv6, EtherType dropped). */
  const icmpErr = (v6: boolean, from: string, to: string, type: number, code: number, quoted: readonly number[]): number[] => {
    const body = [type, code, 0, 0, 0, 0, 0, 0, ...quoted.slice(2, 2 + (v6 ? 48 : 28)), ...tag()];
    return v6 ? ipv6(ip6(from), ip6(to), 58, body) : ipv4(ip(from), ip(to), 1, body);
  };
  const udp4 = (from: string, to: string, sp: number, dp: number): number[] => ipv4(ip(from), ip(to), 17, udp(sp, dp));
  const udp6 = (from: string, to: string, sp: number, dp: number): number[] => ipv6(ip6(from), ip6(to), 17, udp(sp, dp));

  it('791: an ICMP error from the peer of a tracked flow, quoting it, was decided by policy (dropped) where Cilium relates it', () => {
    const [sp, sp6] = [sport(), sport()];
    expect([arrives(b(), 'x/client', 'ext', udp4('x/client', 'ext', sp, 9999)), arrives(b(), 'x/client', 'ext', udp6('x/client', 'ext', sp6, 9999))]).toEqual([true, true]);
    // Port unreachable (IPv4 3/3, IPv6 1/4) from `ext`, which the client's ingress denies.
    expect(arrives(b(), 'ext', 'x/client', icmpErr(false, 'ext', 'x/client', 3, 3, udp4('x/client', 'ext', sp, 9999)))).toBe(true);
    expect(arrives(b(), 'ext', 'x/client', icmpErr(true, 'ext', 'x/client', 1, 4, udp6('x/client', 'ext', sp6, 9999)))).toBe(true);
    // At the sender's egress: `ext` sends to the server (admitted), the server's egress denies `ext`.
    const sp2 = sport();
    expect(arrives(b(), 'ext', 'x/server', udp4('ext', 'x/server', sp2, 9999))).toBe(true);
    expect(arrives(b(), 'x/server', 'ext', icmpErr(false, 'x/server', 'ext', 3, 3, udp4('ext', 'x/server', sp2, 9999)))).toBe(true);
  });

  it('791: an ICMP error is related only when it quotes a tracked flow of its own two ends, and only for error types', () => {
    const sp = sport();
    expect(arrives(b(), 'x/client', 'ext', udp4('x/client', 'ext', sp, 9999))).toBe(true);
    const err = (type: number, quoted: number[]): boolean => arrives(b(), 'ext', 'x/client', icmpErr(false, 'ext', 'x/client', type, 3, quoted));
    // No such flow: another port, or the quoted packet going the other way.
    expect([err(3, udp4('x/client', 'ext', sp, 9998)), err(3, udp4('ext', 'x/client', 9999, sp))]).toEqual([false, false]);
    // Not an error type: an echo request or a redirect quoting the flow is policy's.
    expect([err(8, udp4('x/client', 'ext', sp, 9999)), err(5, udp4('x/client', 'ext', sp, 9999))]).toEqual([false, false]);
    // From a third address (the server, which the client's ingress denies) quoting the client's flow to `ext`.
    expect(arrives(b(), 'x/server', 'x/client', icmpErr(false, 'x/server', 'x/client', 3, 3, udp4('x/client', 'ext', sp, 9999)))).toBe(false);
    // A quote cut short by the error's IP length: 4 bytes of UDP inside, the rest in frame padding that
    // ends with the datagram's own last 8 bytes (so the probe knows the trimmed frame the router forwards).
    const quoted = udp4('x/client', 'ext', sp, 9999).slice(2, 2 + 24);
    const datagram = ipv4(ip('ext'), ip('x/client'), 1, [3, 3, 0, 0, 0, 0, 0, 0, ...quoted]);
    expect(arrives(b(), 'ext', 'x/client', [...datagram, 0, 8, 0, 0, ...datagram.slice(-8)])).toBe(false);
  });
});
