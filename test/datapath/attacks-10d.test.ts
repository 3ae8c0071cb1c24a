import { randomBytes, randomInt } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Testbed } from '../../src/datapath/testbed.js';
import type { ClusterState } from '../../src/model/cluster.js';
import { parseIp } from '../../src/model/cidr.js';
import { parseScenario } from '../../src/scenario/format.js';
import { scenarioStates } from '../../src/scenario/run.js';
import { arrives, ipv4, ipv6, tag, TCP, tcp } from './frames-9.js';
import { kernel } from './gate.js';
import { CLIENT_SERVER_PEER_EXT } from './yaml.js';

/**
 * Attack round 10d on real packets (docs/attack-findings-10d.md). The client's ingress admits the
 * peer only, so a packet from the server reaches the client only as the reply of a tracked flow;
 * the server admits the client (but not its TCP/80) and the external `ext`, and sends to the
 * client only, so a packet from the server reaches `ext` (which has no program) only as a reply.
 */

const PORT = 8081; // nothing listens on it: receivers drop the frames after the probe saw them

let bed: Testbed | undefined;
afterAll(() => bed?.close());

const b = (): Testbed => bed as Testbed;
const ip = (name: string): string => b().address(name, 'ipv4').ip;
const sport = (): number => randomInt(20000, 60000);
const u16 = (n: number): number[] => [(n >> 8) & 0xff, n & 0xff];
const seg = (from: string, to: string, fromPort: number, toPort: number, flags: number): boolean => arrives(b(), from, to, ipv4(ip(from), ip(to), 6, tcp(fromPort, toPort, flags)));

function v4(text: string): number[] {
  const v = parseIp(text).value;
  return [24, 16, 8, 0].map((s) => Number((v >> BigInt(s)) & 0xffn));
}

interface Datagram {
  readonly id: number;
  /** Fragment offset in 8-byte units. */
  readonly offset: number;
  readonly more: boolean;
  readonly payload: readonly number[];
  /** Frame bytes after the IP datagram (its total length does not cover them). */
  readonly trailer?: readonly number[];
  /** IPv4 options (a multiple of 4 bytes). */
  readonly options?: readonly number[];
}

/** An IPv4 TCP packet (or fragment) from `from` to `to` as the frame the probe sends. */
function frame4(from: string, to: string, d: Datagram): number[] {
  const opts = d.options ?? [];
  const hlen = 20 + opts.length;
  const h = [0x40 | (hlen / 4), 0, ...u16(hlen + d.payload.length), ...u16(d.id), ...u16((d.more ? 0x2000 : 0) | d.offset), 64, 6, 0, 0, ...v4(ip(from)), ...v4(ip(to)), ...opts];
  let s = 0;
  for (let i = 0; i < h.length; i += 2) s += ((h[i] ?? 0) << 8) | (h[i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >> 16);
  h[10] = (~s >> 8) & 0xff;
  h[11] = ~s & 0xff;
  return [0x08, 0x00, ...h, ...d.payload, ...(d.trailer ?? [])];
}

const send = (from: string, to: string, d: Datagram): boolean => arrives(b(), from, to, frame4(from, to, d));

/** The first 8 bytes of a TCP header: ports and a random sequence number (the frame's tag). */
const head8 = (sp: number, dp: number): number[] => [...u16(sp), ...u16(dp), ...randomBytes(4)];
/** TCP header bytes 8-19 with `flags`, then a tag: a later fragment at offset 1. */
const rest = (flags: number): number[] => [0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0, ...tag()];

/**
 * A TCP segment from `from` split after its first 8 bytes, the first fragment padded with bytes
 * that read as `fakeFlags` at the flags' offset and end with the fragment's own last 8 bytes (so
 * the probe recognises the fragment the router forwards without the padding). [first, later].
 */
function tinyFirst(from: string, to: string, sp: number, dp: number, fakeFlags: number, realFlags: number): boolean[] {
  const id = randomInt(1, 0xffff);
  const first = head8(sp, dp);
  const trailer = [0, 0, 0, 0, 0x50, fakeFlags, ...first];
  return [send(from, to, { id, offset: 0, more: true, payload: first, trailer }), send(from, to, { id, offset: 1, more: false, payload: rest(realFlags) })];
}

/** The same segment split after 16 bytes: the first fragment carries the real flags. */
function fullFirst(from: string, to: string, sp: number, dp: number, flags: number): boolean[] {
  const id = randomInt(1, 0xffff);
  const first = [...u16(sp), ...u16(dp), 0, 0, 0, 1, ...randomBytes(4), 0x50, flags, ...randomBytes(2)];
  return [send(from, to, { id, offset: 0, more: true, payload: first }), send(from, to, { id, offset: 2, more: false, payload: [0, 0, 0, 0, ...tag()] })];
}

/** `from` → server handshake on `p`, then FIN both ways: the entry is closing. */
function closedFlow(from: string, p: number): void {
  expect([seg(from, 'x/server', p, PORT, TCP.SYN), seg('x/server', from, PORT, p, TCP.SYN | TCP.ACK), seg(from, 'x/server', p, PORT, TCP.ACK)]).toEqual([true, true, true]);
  expect([seg(from, 'x/server', p, PORT, TCP.FIN | TCP.ACK), seg('x/server', from, PORT, p, TCP.FIN | TCP.ACK)]).toEqual([true, true]);
}

kernel('attack round 10d: the datapath on hand-made IPv4 packets', () => {
  beforeAll(() => {
    const state = scenarioStates(parseScenario(CLIENT_SERVER_PEER_EXT, 'attacks-10d.yaml'))[0] as ClusterState;
    bed = new Testbed({ listen: new Set(['TCP:81']) });
    const decide = (from: string, to: string): boolean => b().decide(state, { from, to, port: 81, protocol: 'TCP' }).allowed;
    const decisions = [decide('x/client', 'x/server'), decide('x/server', 'x/client'), decide('x/peer', 'x/client'), decide('ext', 'x/server'), decide('x/server', 'ext'), decide('x/client', 'ext')];
    expect(decisions).toEqual([true, false, true, true, false, true]);
  }, 60_000);

  it('well made: fragments whose first carries the TCP flags are decided by them, and a plain SYN on a closing flow is policy\'s', () => {
    const [open, closed] = [sport(), sport()];
    expect([seg('x/client', 'x/server', open, PORT, TCP.SYN), seg('x/server', 'x/client', PORT, open, TCP.SYN | TCP.ACK)]).toEqual([true, true]);
    expect(fullFirst('x/server', 'x/client', PORT, open, TCP.ACK)).toEqual([true, true]);
    expect(fullFirst('x/peer', 'x/client', PORT, sport(), TCP.SYN)).toEqual([true, true]);
    closedFlow('ext', closed);
    expect(seg('x/server', 'ext', PORT, closed, TCP.SYN)).toBe(false);
    expect(fullFirst('x/server', 'ext', PORT, closed, TCP.SYN)).toEqual([false, false]);
    expect(fullFirst('x/client', 'ext', sport(), PORT, TCP.SYN)).toEqual([true, true]);
  });

  it('260: a SYN whose flags lie past the first fragment\'s IP length passed the server\'s egress as the reply of a closing flow', () => {
    // The frame's padding read as ACK: no reopening SYN, so the closing entry admitted it as a reply;
    // the router trims the padding and `ext` reassembles the real SYN from the second fragment.
    const p = sport();
    closedFlow('ext', p);
    expect(tinyFirst('x/server', 'ext', PORT, p, TCP.ACK, TCP.SYN)).toEqual([false, false]);
  });

  it('260: a first fragment too short for the TCP flags is dropped, also when policy allows its ports', () => {
    // Before the fix it passed the sender's program; a receiving endpoint's program dropped it (the
    // router forwards it without the padding, so the flags are past the frame's end), `ext` has none.
    expect(tinyFirst('x/client', 'ext', sport(), PORT, TCP.SYN, TCP.SYN)).toEqual([false, false]);
    expect(tinyFirst('x/peer', 'x/client', PORT, sport(), TCP.SYN, TCP.SYN)).toEqual([false, false]);
  });

  it('IPv4 options: the L4 header is found behind them (IHL > 5)', () => {
    const nops = [1, 1, 1, 1];
    const syn = (dp: number): number[] => tcp(sport(), dp, TCP.SYN);
    expect(send('x/client', 'x/server', { id: 1, offset: 0, more: false, payload: syn(81), options: nops })).toBe(true);
    expect(send('x/client', 'x/server', { id: 2, offset: 0, more: false, payload: syn(80), options: nops })).toBe(false);
  });

  /** An ND message of `type` (ICMPv6 header, reserved word, zero target), tagged. */
  const nd = (type: number): number[] => [type, 0, 0, 0, 0, 0, 0, 0, ...Array<number>(16).fill(0), ...tag()];

  it('261: a neighbour solicitation or advertisement that left its link skipped the receiver\'s policy', () => {
    const ip6 = (name: string): string => b().address(name, 'ipv6').ip;
    /** ICMPv6 `type` from one pod to another's address, sent with `hop` as its hop limit. */
    const send6 = (from: string, to: string, type: number, hop: number): boolean => {
      const f = ipv6(ip6(from), ip6(to), 58, nd(type));
      f[9] = hop;
      return arrives(b(), from, to, f);
    };
    // Well made: the peer, which the client's ingress admits, reaches it with ND types as with any.
    expect([send6('x/peer', 'x/client', 135, 64), send6('x/peer', 'x/client', 136, 255)]).toEqual([true, true]);
    // The client's ingress denies the server: forwarded ND (hop limit 254 or less at the client) is policy's.
    expect([send6('x/server', 'x/client', 135, 64), send6('x/server', 'x/client', 135, 255), send6('x/server', 'x/client', 136, 255)]).toEqual([false, false, false]);
  });

  it('261: an IPv4 packet of protocol 58 whose first byte reads 135 or 136 skipped policy as if it were ND', () => {
    expect([135, 136].map((t) => arrives(b(), 'x/server', 'x/client', ipv4(ip('x/server'), ip('x/client'), 58, nd(t))))).toEqual([false, false]);
  });

  it('IPv6: three extension headers are skipped to the TCP header; a fourth is the parser\'s bound (as Cilium\'s ipv6_hdrlen_offset) and drops', () => {
    const ip6 = (name: string): string => b().address(name, 'ipv6').ip;
    /** A SYN to `dp` behind `n` destination options headers (8 bytes each, one PadN option). */
    const chain = (n: number, dp: number): number[] => {
      let [payload, next] = [tcp(sport(), dp, TCP.SYN), 6];
      for (let i = 0; i < n; i++) [payload, next] = [[next, 0, 1, 4, 0, 0, 0, 0, ...payload], 60];
      return ipv6(ip6('x/client'), ip6('x/server'), next, payload);
    };
    const sent = [chain(3, 81), chain(3, 80), chain(4, 81)].map((f) => arrives(b(), 'x/client', 'x/server', f));
    expect(sent).toEqual([true, false, false]);
  });
});
