import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { applyChangeSet } from '../../src/backend/backend.js';
import { PROBE_TOOL } from '../../src/datapath/loader.js';
import { netnsPath, run } from '../../src/datapath/netns.js';
import { Testbed } from '../../src/datapath/testbed.js';
import type { ClusterState } from '../../src/model/cluster.js';
import { parseScenario } from '../../src/scenario/format.js';
import { scenarioStates } from '../../src/scenario/run.js';
import { addr, arrives, csum, fragmentHeader, ipv4, ipv6, sleep, tag, TCP, tcp, u16 } from './frames-9.js';
import { kernel } from './gate.js';
import { counterGrowth, nodeCounters } from './kernel-counters.js';
import { cnp } from './yaml.js';

/**
 * Attack round 19d on real packets (docs/attack-findings-19d.md). The client may send anything to
 * the world (`ext`, 20.1.1.1, which runs no program) but UDP/TCP port 80, and admits the guarded pod
 * only. `sender` and `receiver` are for packets sent while a transaction is written: the receiver
 * admits one label on UDP/7000, the sender carries the other, and step 1 swaps both (the sender's
 * identity and the receiver's policy change in one transaction, denied before and after); step 2
 * opens the flow. `ha` and `hb` hold the two labels, so both identities and their entries live.
 * Step 3 starts `newcomer`, which admits the client only (finding 1161), so its test runs last.
 */
const FLOOD_PORT = 7000;
const NEWCOMER_IP = '10.244.201.2';
const receiverIn = (app: string): string => cnp('receiver-in', 'receiver', `ingress: [{fromEndpoints: [{matchLabels: {app: ${app}}}], toPorts: [{ports: [{port: "${FLOOD_PORT}", protocol: UDP}]}]}]`);
const CLUSTER = `
namespaces: [{name: x, labels: {}}]
pods:
  - {name: x/client, labels: {app: client}}
  - {name: x/guarded, labels: {app: guarded}}
  - {name: x/sender, labels: {app: a}}
  - {name: x/receiver, labels: {app: receiver}}
  - {name: x/ha, labels: {app: a}}
  - {name: x/hb, labels: {app: b}}
externals: [{name: ext, ip: 20.1.1.1}]
policies:
  - ${cnp('client-in', 'client', 'ingress: [{fromEndpoints: [{matchLabels: {app: guarded}}]}]')}
  - ${cnp('client-out', 'client', `egress: [{toEntities: [world]}]
            egressDeny: [{toEntities: [world], toPorts: [{ports: [{port: "80", protocol: UDP}, {port: "80", protocol: TCP}]}]}]`)}
  - ${receiverIn('b')}
  - ${cnp('newcomer-in', 'newcomer', 'ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}]')}
steps:
  - changes:
      - {setPodLabels: {pod: x/sender, labels: {app: b}}}
      - apply: ${receiverIn('a')}
  - changes:
      - apply: ${receiverIn('b')}
  - changes:
      - {addPod: {name: x/newcomer, labels: {app: newcomer}, ip: ${NEWCOMER_IP}}}
`;

/** How a transaction is written: the backend's order, or the ipcache first with a pause (a wrong order, to show the flood check sees a leak). */
let order: 'plan' | 'ipcache-first' = 'plan';
const pause = (ms: number): void => void Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

let bed: Testbed | undefined;
let states: ClusterState[] = [];
afterAll(() => bed?.close(), 60_000);

const b = (): Testbed => bed as Testbed;
const ip4 = (name: string): string => b().address(name, 'ipv4').ip;
const sport = (): number => randomInt(20000, 60000);

/** A TCP segment from `src` to `dst` with its checksum (so the receiving kernel takes it whole), 8 tag bytes of data. */
function tcp4(src: string, dst: string, sp: number, dp: number, flags: number): number[] {
  const seg = tcp(sp, dp, flags);
  for (let i = 4; i < 8; i++) seg[i] = randomInt(256); // the sequence number, so each first fragment's tail differs
  const c = csum([...addr(src), ...addr(dst), 0, 6, ...u16(seg.length), ...seg]);
  seg[16] = c >> 8;
  seg[17] = c & 0xff;
  return seg;
}

kernel('attack round 19d: the datapath on hand-made packets', () => {
  beforeAll(() => {
    states = scenarioStates(parseScenario(CLUSTER, 'attacks-19d.yaml'));
    bed = new Testbed({
      listen: new Set(['UDP:81', 'TCP:81']),
      write: (backend, cs, between) => {
        if (order === 'plan') return void applyChangeSet(backend, cs, between);
        between();
        pause(300);
        applyChangeSet(backend, cs);
      },
    });
    const decide = (s: number, from: string, to: string, port: number, protocol: 'UDP' | 'TCP' = 'UDP'): boolean => b().decide(states[s] as ClusterState, { from, to, port, protocol }).allowed;
    expect([decide(0, 'x/client', 'ext', 81), decide(0, 'x/client', 'ext', 80), decide(0, 'ext', 'x/client', 81, 'TCP'), decide(0, 'x/guarded', 'x/client', 81)]).toEqual([true, false, false, true]);
  }, 180_000);

  it('1160: an IPv4 first fragment\'s TCP flags were read from bytes the receiver cuts off: a SYN on a closed flow passed as its reply', () => {
    // The client's flow to ext:81, closed both ways by an RST before ext's SYN (ct_touch: both ways closing).
    const cp = sport();
    expect([TCP.SYN, TCP.RST].map((fl) => arrives(b(), 'x/client', 'ext', ipv4(ip4('x/client'), ip4('ext'), 6, tcp(cp, 81, fl))))).toEqual([true, true]);
    // ext's SYN on that tuple: a SYN on a closing entry is a new flow (ct_reopens, Cilium's
    // ACTION_CREATE), which the client's ingress denies.
    expect(arrives(b(), 'ext', 'x/client', ipv4(ip4('ext'), ip4('x/client'), 6, tcp4(ip4('ext'), ip4('x/client'), 81, cp, TCP.SYN)))).toBe(false);
    // The same SYN in two fragments: the first carries 14 bytes of TCP with SYN+FIN in its flags
    // byte (13), the later one the TCP header from byte 8 on with SYN. The receiving kernel keeps
    // a non-last fragment's payload in 8-byte units (ip_frag_queue: `end &= ~7`), so it drops the
    // first fragment's bytes 8-13 and reassembles the SYN; the program read SYN+FIN, a reply.
    const seg = tcp4(ip4('ext'), ip4('x/client'), 81, cp, TCP.SYN);
    const first = seg.slice(0, 14);
    first[13] = TCP.SYN | TCP.FIN;
    const id = randomInt(1, 0xffff);
    let sent: boolean[] = [];
    const [segs, resets] = counterGrowth(b(), 'x/client', ['Tcp.InSegs', 'Tcp.OutRsts'], () => {
      sent = [ipv4(ip4('ext'), ip4('x/client'), 6, first, { frag: 0x2000, id }), ipv4(ip4('ext'), ip4('x/client'), 6, seg.slice(8), { frag: 1, id })].map((f) => arrives(b(), 'ext', 'x/client', f));
    });
    // On 400db28 both pass and the client's kernel takes a SYN (and, with no socket, answers RST).
    expect({ sent, segs, resets }).toEqual({ sent: [false, false], segs: 0, resets: 0 });
  });

  it('held: a first fragment carrying whole TCP flags in its 8-byte units is decided on them, as the receiver reassembles it', () => {
    const [sp80, sp81] = [sport(), sport()];
    const frags = (sp: number, dp: number): number[][] => {
      const seg = tcp4(ip4('x/client'), ip4('ext'), sp, dp, TCP.SYN);
      const id = randomInt(1, 0xffff);
      return [ipv4(ip4('x/client'), ip4('ext'), 6, seg.slice(0, 16), { frag: 0x2000, id }), ipv4(ip4('x/client'), ip4('ext'), 6, seg.slice(16), { frag: 2, id })];
    };
    // ext listens on TCP/81: its kernel takes the SYN (then the client's reset of ext's answer).
    const send = (sp: number, dp: number): { sent: boolean[]; segs: number } => {
      let sent: boolean[] = [];
      const [segs] = counterGrowth(b(), 'ext', ['Tcp.InSegs'], () => void (sent = frags(sp, dp).map((f) => arrives(b(), 'x/client', 'ext', f))));
      return { sent, segs: segs ?? 0 };
    };
    const [to80, to81] = [send(sp80, 80), send(sp81, 81)];
    expect({ to80, sent81: to81.sent, took81: to81.segs > 0 }).toEqual({ to80: { sent: [false, false], segs: 0 }, sent81: [true, true], took81: true });
  });

  it('held: an IPv6 datagram fragmented behind destination options and a routing header (no segments left) is decided by its UDP port', () => {
    // Unfragmentable part: destination options (8 bytes), a type 0 routing header with no
    // segments left (ipv6_rthdr_rcv skips it), then the fragment header: the parser's 4-header
    // bound holds the UDP header as the 4th. ext reassembles and delivers what passed.
    const [src, dst] = [b().address('x/client', 'ipv6').ip, b().address('ext', 'ipv6').ip];
    const datagram = (dp: number): number[] => {
      const d = [...u16(sport()), ...u16(dp), ...u16(24), 0, 0, ...tag(16)];
      const c = csum([...addr(src), ...addr(dst), 0, 0, ...u16(d.length), 0, 0, 0, 17, ...d]) || 0xffff;
      [d[6], d[7]] = [c >> 8, c & 0xff];
      return d;
    };
    const frags = (dp: number): number[][] => {
      const d = datagram(dp);
      const id = randomInt(1, 0x7fffffff);
      const head = (offset: number, more: boolean): number[] => [43, 0, 1, 4, 0, 0, 0, 0, 44, 0, 0, 0, 0, 0, 0, 0, ...fragmentHeader(17, offset, more, id)];
      return [ipv6(src, dst, 60, [...head(0, true), ...d.slice(0, 16)]), ipv6(src, dst, 60, [...head(2, false), ...d.slice(16)])];
    };
    const send = (dp: number): { sent: boolean[]; delivered: number } => {
      let sent: boolean[] = [];
      const [delivered] = counterGrowth(b(), 'ext', ['Udp6InDatagrams'], () => void (sent = frags(dp).map((f) => arrives(b(), 'x/client', 'ext', f))));
      return { sent, delivered: delivered ?? 0 };
    };
    expect([send(80), send(81)]).toEqual([{ sent: [false, false], delivered: 0 }, { sent: [true, true], delivered: 1 }]);
  });

  /** Datagrams the receiver's kernel took for UDP while `f` ran, and datagrams the sender sent. */
  const flooded = (f: () => void): { received: number; sent: number } => {
    let sent = 0;
    const [inDatagrams, noPorts] = counterGrowth(b(), 'x/receiver', ['Udp.InDatagrams', 'Udp.NoPorts'], () => {
      sent = counterGrowth(b(), 'x/sender', ['Udp.OutDatagrams'], f)[0] ?? 0;
    });
    return { received: (inDatagrams ?? 0) + (noPorts ?? 0), sent };
  };

  /** Alternates the two states that deny sender → receiver:7000 (`rounds` transactions each way). */
  const swap = (rounds: number): void => {
    for (let i = 0; i < rounds; i++) for (const s of [1, 0]) b().decide(states[s] as ClusterState, { from: 'x/sender', to: 'x/receiver', port: 81, protocol: 'UDP' });
  };

  it('held: a UDP flood while transactions swap the sender\'s identity and the receiver\'s policy (denied before and after) gets nothing through', async () => {
    const [s0, s1, open] = states as [ClusterState, ClusterState, ClusterState];
    const flow = { from: 'x/sender', to: 'x/receiver', port: 81, protocol: 'UDP' } as const;
    const sender = b().address('x/sender', 'ipv4');
    const flood = spawn(PROBE_TOOL, ['flood', sender.netns, b().address('x/receiver', 'ipv4').netns, ip4('x/receiver'), String(FLOOD_PORT), '600'], { stdio: 'ignore' });
    try {
      await sleep(500);
      // Both states deny the flood, the open one lets it through, and so does a wrong order
      // (the sender's new identity meets the receiver's old policy): the check can see a leak.
      const steady = [s0, s1, open].map((s) => flooded(() => {
        b().decide(s, flow);
        pause(300);
      }));
      b().decide(s0, flow);
      order = 'ipcache-first';
      const wrong = flooded(() => swap(1));
      order = 'plan';
      b().decide(s0, flow);
      await sleep(200);
      const plan = flooded(() => swap(10));
      process.stderr.write(`attacks-19d flood: steady ${JSON.stringify(steady)}, ipcache first ${JSON.stringify(wrong)}, plan ${JSON.stringify(plan)}\n`);
      expect(steady.map((r) => r.received > 0)).toEqual([false, false, true]);
      expect(wrong.received).toBeGreaterThan(0);
      expect(plan.sent).toBeGreaterThan(1000);
      expect(plan.received).toBe(0);
    } finally {
      flood.kill('SIGTERM');
      order = 'plan';
    }
  }, 300_000);

  it('1161: a new pod\'s link carried packets before its program was attached', async () => {
    // ext (no program) floods the newcomer's address on UDP/81 (its server listens there) while
    // the testbed starts it. Until then the router drops the flood silently (a blackhole route,
    // which the newcomer's route replaces: no ICMP error stops the sender), and the flood's
    // unused receive socket sits in the router's namespace.
    run('ip', ['-n', b().router, 'route', 'add', 'blackhole', NEWCOMER_IP]);
    const flood = spawn(PROBE_TOOL, ['flood', b().address('ext', 'ipv4').netns, netnsPath(b().router), NEWCOMER_IP, '81', '600'], { stdio: 'ignore' });
    try {
      await sleep(500);
      const [sent] = counterGrowth(b(), 'ext', ['Udp.OutDatagrams'], () => {
        b().decide(states[3] as ClusterState, { from: 'x/client', to: 'ext', port: 81, protocol: 'UDP' });
        pause(300);
      });
      // The newcomer's namespace is new: its counters hold all it ever received.
      const c = nodeCounters(b(), 'x/newcomer');
      const took = ['Udp.InDatagrams', 'Udp.NoPorts', 'Ip.InReceives'].map((k) => c.get(k));
      expect(b().decide(states[3] as ClusterState, { from: 'ext', to: 'x/newcomer', port: 81, protocol: 'UDP' }).allowed).toBe(false);
      process.stderr.write(`attacks-19d newcomer: ext sent ${sent}, the newcomer took (InDatagrams, NoPorts, InReceives) ${JSON.stringify(took)}\n`);
      expect(sent).toBeGreaterThan(1000);
      expect(took).toEqual([0, 0, 0]);
    } finally {
      flood.kill('SIGTERM');
    }
  }, 120_000);
});
