import { randomBytes, randomInt } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Testbed } from '../../src/datapath/testbed.js';
import type { ClusterState } from '../../src/model/cluster.js';
import { parseScenario } from '../../src/scenario/format.js';
import { scenarioStates } from '../../src/scenario/run.js';
import { addr, arrives, fragmentHeader, ipv4, ipv6, tag, u16, udp } from './frames-9.js';
import { kernel } from './gate.js';
import { cnp } from './yaml.js';
import { counterGrowth } from './kernel-counters.js';

/**
 * Attack round 17d on real packets (docs/attack-findings-17d.md). The client may send anything to
 * the world but port 80 (an L3 allow and a port deny, Cilium's egress + egressDeny); `ext` is the
 * world and runs no program, so what the client's egress passes is what it receives. The guarded
 * pod admits the client only, and sends anywhere.
 */
const CLUSTER = `
namespaces: [{name: x, labels: {}}]
pods:
  - {name: x/client, labels: {app: client}}
  - {name: x/guarded, labels: {app: guarded}}
externals: [{name: ext, ip: 20.1.1.1}]
policies:
  - ${cnp('guarded-in', 'guarded', 'ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}]')}
  - ${cnp('client-out', 'client', `egress: [{toEntities: [world]}]
            egressDeny: [{toEntities: [world], toPorts: [{ports: [{port: "80", protocol: UDP}, {port: "80", protocol: TCP}]}]}]`)}
`;

let bed: Testbed | undefined;
afterAll(() => bed?.close());

const b = (): Testbed => bed as Testbed;
const ip4 = (name: string): string => b().address(name, 'ipv4').ip;
const ip6 = (name: string): string => b().address(name, 'ipv6').ip;
const sport = (): number => randomInt(20000, 60000);


/** A UDP datagram from the client to `ext` with its IPv6 checksum, so `ext`'s kernel delivers it. */
function udp6(sp: number, dp: number): number[] {
  const data = tag(16);
  const len = 8 + data.length;
  const seg = [...u16(sp), ...u16(dp), ...u16(len), 0, 0, ...data];
  const pseudo = [...addr(ip6('x/client')), ...addr(ip6('ext')), 0, 0, ...u16(len), 0, 0, 0, 17, ...seg];
  let s = 0;
  for (let i = 0; i < pseudo.length; i += 2) s += ((pseudo[i] ?? 0) << 8) | (pseudo[i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >> 16);
  const c = ~s & 0xffff || 0xffff;
  seg[6] = c >> 8;
  seg[7] = c & 0xff;
  return seg;
}

/** A destination options header of 8 bytes whose one option (type 0x1e: skip if unknown) carries random bytes. */
const destOpts = (next: number): number[] => [next, 0, 0x1e, 4, ...randomBytes(4)];

/** How much each of `keys` grew in `ext`'s IP counters while `f` ran. */
const grew = (keys: readonly string[], f: () => unknown): number[] => counterGrowth(b(), 'ext', keys, f);

kernel('attack round 17d: the datapath on hand-made packets', () => {
  beforeAll(() => {
    const state = scenarioStates(parseScenario(CLUSTER, 'attacks-17d.yaml'))[0] as ClusterState;
    bed = new Testbed({ listen: new Set(['UDP:80', 'UDP:81']) });
    const decide = (port: number): boolean => b().decide(state, { from: 'x/client', to: 'ext', port, protocol: 'UDP' }).allowed;
    expect([decide(81), decide(80), b().decide(state, { from: 'ext', to: 'x/guarded', port: 81, protocol: 'UDP' }).allowed]).toEqual([true, false, false]);
  }, 60_000);

  it('well made: UDP over IPv6 to `ext` arrives on 81 and not on 80, whole or in honest fragments', () => {
    const whole = (dp: number): boolean => arrives(b(), 'x/client', 'ext', ipv6(ip6('x/client'), ip6('ext'), 17, udp6(sport(), dp)));
    expect([whole(81), whole(80)]).toEqual([true, false]);
    // Two destination options headers and the UDP datagram, split after the first header: the
    // first fragment holds the whole chain, so its program decides on the UDP port.
    const honest = (dp: number): boolean[] => {
      const id = randomInt(1, 0x7fffffff);
      const first = [...destOpts(17), ...udp6(sport(), dp)];
      const cut = 16;
      return [
        arrives(b(), 'x/client', 'ext', ipv6(ip6('x/client'), ip6('ext'), 44, [...fragmentHeader(60, 0, true, id), ...first.slice(0, cut)])),
        arrives(b(), 'x/client', 'ext', ipv6(ip6('x/client'), ip6('ext'), 44, [...fragmentHeader(60, cut / 8, false, id), ...first.slice(cut)])),
      ];
    };
    expect([...honest(81), ...honest(80)]).toEqual([true, true, false, false]);
  });

  it('895: an IPv6 first fragment whose header chain went on in the frame\'s padding was decided on the padding', () => {
    // First fragment: fragment header, one destination options header that names another one
    // next, and the datagram ends. The frame's padding (past the IPv6 payload length, which the
    // router trims) holds that next header, naming GRE: the program took the datagram for GRE
    // (port 0, allowed at L3) and registered its later fragments as GRE. Linux accepts such a
    // first fragment (ipv6frag_thdr_truncated: ipv6_skip_exthdr cannot read the next header,
    // returns -1, and the fragment counts as not truncated), and `ext` reassembles the real
    // chain: a second destination options header from the later fragment, then UDP to port 80.
    const id = randomInt(1, 0x7fffffff);
    const opts = destOpts(60);
    const fake = [47, 0, 0x1e, 4, 0, 0, 0, 0];
    const first = ipv6(ip6('x/client'), ip6('ext'), 44, [...fragmentHeader(60, 0, true, id), ...opts]);
    const later = ipv6(ip6('x/client'), ip6('ext'), 44, [...fragmentHeader(60, 1, false, id), ...destOpts(17), ...udp6(sport(), 80)]);
    let sent: boolean[] = [];
    const delivered = grew(['Ip6ReasmOKs', 'Udp6InDatagrams'], () => {
      sent = [arrives(b(), 'x/client', 'ext', [...first, ...fake, ...opts]), arrives(b(), 'x/client', 'ext', later)];
    });
    expect({ sent, delivered }).toEqual({ sent: [false, false], delivered: [0, 0] });
  });

  it('held: IPv4-mapped and IPv4-compatible IPv6 sources are not the pod\'s own (the source check drops them)', () => {
    // Linux drops a v4-mapped source itself (ip6_rcv_core); the compatible form (::a.b.c.d) it
    // accepts, but no route leads back to the client for either, so its egress drops both.
    const from = (src: string): boolean => arrives(b(), 'x/client', 'ext', ipv6(src, ip6('ext'), 17, udp6(sport(), 81)));
    expect([from(ip6('x/client')), from(`::ffff:${ip4('x/client')}`), from(`::${ip4('x/client')}`)]).toEqual([true, false, false]);
  });

  it('held: UDP behind an authentication header is decided by its port; ESP is dropped whatever the L3 allow (DROP_CT_UNKNOWN_PROTO in Cilium, finding 2480)', () => {
    // AH of 12 bytes (payload length 1: (1 + 2) * 4), then UDP.
    const ah = (dp: number): number[] => ipv6(ip6('x/client'), ip6('ext'), 51, [17, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, ...udp6(sport(), dp)]);
    const esp = ipv6(ip6('x/client'), ip6('ext'), 50, [0, 0, 1, 0, 0, 0, 0, 1, ...tag()]);
    expect([ah(81), ah(80), esp].map((f) => arrives(b(), 'x/client', 'ext', f))).toEqual([true, false, false]);
  });

  it('held: an ICMP echo reply passes only for the echo id and the addresses of a request the guarded pod sent', () => {
    const echo = (from: string, to: string, type: number, id: number): boolean => arrives(b(), from, to, ipv4(ip4(from), ip4(to), 1, [type, 0, 0, 0, ...u16(id), 0, 1, ...tag()]));
    const [id, other] = [randomInt(1, 0x7fff), randomInt(0x8000, 0xffff)];
    expect(echo('x/guarded', 'ext', 8, id)).toBe(true);
    // The reply; one with another id; a request (not a reply) with the tracked id.
    expect([echo('ext', 'x/guarded', 0, id), echo('ext', 'x/guarded', 0, other), echo('ext', 'x/guarded', 8, id)]).toEqual([true, false, false]);
    // A reply the guarded pod sends first opens nothing: `ext`'s request with that id is policy's.
    const id2 = randomInt(1, 0xffff);
    expect([echo('x/guarded', 'ext', 0, id2), echo('ext', 'x/guarded', 8, id2)]).toEqual([true, false]);
    // A UDP flow whose source port is a tracked echo id is another protocol's key.
    expect(arrives(b(), 'ext', 'x/guarded', ipv4(ip4('ext'), ip4('x/guarded'), 17, udp(8, id)))).toBe(false);
  });

  it('a tunnelled packet (IPIP) does not pass on the outer L3 allow: its inner datagram would not be judged (finding 2480)', () => {
    // Cilium drops the outer packet (DROP_CT_UNKNOWN_PROTO): an unwrapping receiver would deliver
    // the inner datagram (from any address, to the denied UDP/80). Nothing reaches `ext`.
    const inner = ipv4('8.8.8.8', ip4('ext'), 17, udp(sport(), 80)).slice(2);
    let sent = false;
    const seen = grew(['Ip.InUnknownProtos', 'Udp.InDatagrams'], () => {
      sent = arrives(b(), 'x/client', 'ext', ipv4(ip4('x/client'), ip4('ext'), 4, inner));
    });
    expect({ sent, seen }).toEqual({ sent: false, seen: [0, 0] });
  });
});
