import { randomInt } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { run } from '../../src/datapath/netns.js';
import { Testbed } from '../../src/datapath/testbed.js';
import type { ClusterState } from '../../src/model/cluster.js';
import { parseScenario } from '../../src/scenario/format.js';
import { scenarioStates } from '../../src/scenario/run.js';
import { arrives, ipv4, sleep, TCP, tcp, udp } from './frames-9.js';
import { kernel } from './gate.js';
import { cnp } from './yaml.js';

/**
 * Conntrack lifetimes on real packets (bpf/datapath.c ct_touch / ct_get). The client reaches the
 * server and the peer; the client's ingress admits the peer only, so a packet from the server to
 * the client passes only as the reply of a tracked flow. The testbed's lifetimes are short
 * (seconds) so that entries expire while the test waits.
 */
const SCENARIO = `
namespaces: [{name: x, labels: {}}]
pods:
  - {name: x/client, labels: {app: client}}
  - {name: x/server, labels: {app: server}}
  - {name: x/peer, labels: {app: peer}}
policies:
  - ${cnp('client-in', 'client', 'ingress: [{fromEndpoints: [{matchLabels: {app: peer}}]}]')}
  - ${cnp('server-in', 'server', 'ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}]')}
  - ${cnp('peer-in', 'peer', 'ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}]')}
`;

const LIFETIMES = { syn: 5, tcp: 60, close: 1, any: 2 };
const PORT = 8081; // nothing listens on it: receivers drop the frames after the probe saw them

let bed: Testbed | undefined;
afterAll(() => bed?.close());

const b = (): Testbed => bed as Testbed;
const ip = (name: string): string => b().address(name, 'ipv4').ip;
const sport = (): number => randomInt(20000, 60000);
/** A TCP segment (or UDP datagram) between two pods, `from` sending from `fromPort`. */
const seg = (from: string, to: string, fromPort: number, toPort: number, flags: number): boolean => arrives(b(), from, to, ipv4(ip(from), ip(to), 6, tcp(fromPort, toPort, flags)));
const dgram = (from: string, to: string, fromPort: number, toPort: number): boolean => arrives(b(), from, to, ipv4(ip(from), ip(to), 17, udp(fromPort, toPort)));
/** client → server SYN, SYN-ACK, ACK: every segment arrives. */
function handshake(p: number): boolean[] {
  return [seg('x/client', 'x/server', p, PORT, TCP.SYN), seg('x/server', 'x/client', PORT, p, TCP.SYN | TCP.ACK), seg('x/client', 'x/server', p, PORT, TCP.ACK)];
}

kernel('conntrack lifetimes: expiry, and FIN/RST closing early, on real packets', () => {
  beforeAll(() => {
    const state = scenarioStates(parseScenario(SCENARIO, 'ct-9.yaml'))[0] as ClusterState;
    bed = new Testbed({ listen: new Set(['TCP:81']), ctLifetimes: LIFETIMES });
    const decide = (from: string, to: string): boolean => b().decide(state, { from, to, port: 81, protocol: 'TCP' }).allowed;
    // New flows by policy: the client reaches both, the server does not reach the client, the peer does.
    expect([decide('x/client', 'x/server'), decide('x/client', 'x/peer'), decide('x/server', 'x/client'), decide('x/peer', 'x/client')]).toEqual([true, true, false, true]);
  }, 60_000);

  it('UDP: a reply within the non-TCP lifetime passes; after it the reply is a new flow, which the client\'s ingress decides', async () => {
    const p = sport();
    expect([dgram('x/client', 'x/server', p, 5353), dgram('x/client', 'x/peer', p, 5353)]).toEqual([true, true]);
    expect([dgram('x/server', 'x/client', 5353, p), dgram('x/peer', 'x/client', 5353, p)]).toEqual([true, true]);
    await sleep((LIFETIMES.any + 1) * 1000);
    // Expired: the server's reply is denied by the client's ingress, the peer's is allowed by it.
    expect([dgram('x/server', 'x/client', 5353, p), dgram('x/peer', 'x/client', 5353, p)]).toEqual([false, true]);
    // The client's next datagram tracks the flow again.
    expect([dgram('x/client', 'x/server', p, 5353), dgram('x/server', 'x/client', 5353, p)]).toEqual([true, true]);
  }, 30_000);

  it('TCP: a flow that saw only SYNs lives the SYN lifetime, one that saw a segment without SYN the established lifetime', async () => {
    const [synOnly, open] = [sport(), sport()];
    expect([seg('x/client', 'x/server', synOnly, PORT, TCP.SYN), seg('x/server', 'x/client', PORT, synOnly, TCP.SYN | TCP.ACK)]).toEqual([true, true]);
    expect(handshake(open)).toEqual([true, true, true]);
    await sleep((LIFETIMES.syn + 1) * 1000);
    // The SYN-only flow expired both ways: its reply is denied, and so is its opener's next segment.
    expect(seg('x/server', 'x/client', PORT, synOnly, TCP.SYN | TCP.ACK)).toBe(false);
    expect(seg('x/client', 'x/server', synOnly, PORT, TCP.ACK)).toBe(false);
    expect([seg('x/server', 'x/client', PORT, open, TCP.ACK), seg('x/client', 'x/server', open, PORT, TCP.ACK)]).toEqual([true, true]);
  }, 30_000);

  it('TCP: FIN both ways moves the flow to the close lifetime; FIN one way does not', async () => {
    const [closed, halfClosed, open] = [sport(), sport(), sport()];
    for (const p of [closed, halfClosed, open]) expect(handshake(p)).toEqual([true, true, true]);
    expect([seg('x/client', 'x/server', closed, PORT, TCP.FIN | TCP.ACK), seg('x/server', 'x/client', PORT, closed, TCP.FIN | TCP.ACK)]).toEqual([true, true]);
    expect(seg('x/client', 'x/server', halfClosed, PORT, TCP.FIN | TCP.ACK)).toBe(true);
    await sleep((LIFETIMES.close + 1.5) * 1000);
    expect(seg('x/server', 'x/client', PORT, closed, TCP.ACK)).toBe(false);
    expect([seg('x/server', 'x/client', PORT, halfClosed, TCP.ACK), seg('x/server', 'x/client', PORT, open, TCP.ACK)]).toEqual([true, true]);
  }, 30_000);

  it('TCP: an RST before both SYNs closes the flow both ways; after both SYNs it closes only its own way', async () => {
    const [refused, reset, pending] = [sport(), sport(), sport()];
    expect([seg('x/client', 'x/server', refused, PORT, TCP.SYN), seg('x/server', 'x/client', PORT, refused, TCP.RST | TCP.ACK)]).toEqual([true, true]);
    expect(handshake(reset)).toEqual([true, true, true]);
    expect(seg('x/client', 'x/server', reset, PORT, TCP.RST)).toBe(true);
    expect(seg('x/client', 'x/server', pending, PORT, TCP.SYN)).toBe(true);
    await sleep((LIFETIMES.close + 1.5) * 1000);
    expect(seg('x/server', 'x/client', PORT, refused, TCP.SYN | TCP.ACK)).toBe(false);
    // Still within the SYN lifetime and the established lifetime, as Cilium keeps them.
    expect([seg('x/server', 'x/client', PORT, pending, TCP.SYN | TCP.ACK), seg('x/server', 'x/client', PORT, reset, TCP.ACK)]).toEqual([true, true]);
  }, 30_000);

  it('TCP: a SYN from the peer of a closing flow is a new flow, which policy decides (attack finding 220)', () => {
    // Cilium (bpf/lib/conntrack.h __ct_lookup, ACTION_CREATE on a closing entry): "Return CT_NEW so
    // that the caller creates a new entry", so the reverse lookup is no reply and policy decides.
    const [closed, halfClosed] = [sport(), sport()];
    for (const p of [closed, halfClosed]) expect(handshake(p)).toEqual([true, true, true]);
    expect([seg('x/client', 'x/server', closed, PORT, TCP.FIN | TCP.ACK), seg('x/server', 'x/client', PORT, closed, TCP.FIN | TCP.ACK)]).toEqual([true, true]);
    expect(seg('x/client', 'x/server', halfClosed, PORT, TCP.FIN | TCP.ACK)).toBe(true);
    // The client's ingress denies the server: its SYNs on the reversed tuples are dropped.
    expect([seg('x/server', 'x/client', PORT, closed, TCP.SYN), seg('x/server', 'x/client', PORT, halfClosed, TCP.SYN)]).toEqual([false, false]);
  }, 30_000);

  it('TCP: a SYN reopening a closed flow starts it over: the SYN lifetime again, not the established one (attack finding 221)', async () => {
    const p = sport();
    expect(handshake(p)).toEqual([true, true, true]);
    expect([seg('x/client', 'x/server', p, PORT, TCP.FIN | TCP.ACK), seg('x/server', 'x/client', PORT, p, TCP.FIN | TCP.ACK)]).toEqual([true, true]);
    expect(seg('x/client', 'x/server', p, PORT, TCP.SYN)).toBe(true);
    await sleep((LIFETIMES.syn + 1) * 1000);
    expect(seg('x/server', 'x/client', PORT, p, TCP.SYN | TCP.ACK)).toBe(false);
  }, 30_000);

  it('the loader writes Cilium\'s lifetimes when none are given (60 s SYN, 8000 s established, 10 s close, 60 s other)', () => {
    const plain = new Testbed({ listen: new Set() });
    try {
      const dump = JSON.parse(run('bpftool', ['-j', 'map', 'dump', 'pinned', `${plain.pinRoot}/ct_lifetimes`])) as { value: string[] }[];
      const bytes = Buffer.from((dump[0]?.value ?? []).map((h) => Number(h)));
      expect([0, 4, 8, 12].map((o) => bytes.readUInt32LE(o))).toEqual([60, 8000, 10, 60]);
    } finally {
      plain.close();
    }
  });
});
