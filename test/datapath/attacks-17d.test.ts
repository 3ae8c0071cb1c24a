import { randomBytes, randomInt } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { run } from '../../src/datapath/netns.js';
import { Testbed } from '../../src/datapath/testbed.js';
import type { ClusterState } from '../../src/model/cluster.js';
import { parseIp } from '../../src/model/cidr.js';
import { parseScenario } from '../../src/scenario/format.js';
import { scenarioStates } from '../../src/scenario/run.js';
import { arrives, fragmentHeader, ipv6, tag } from './frames-9.js';
import { kernel } from './gate.js';
import { cnp } from './yaml.js';

/**
 * Attack round 17d on real packets (docs/attack-findings-17d.md). The client may send anything to
 * the world but port 80 (an L3 allow and a port deny, Cilium's egress + egressDeny); `ext` is the
 * world and runs no program, so what the client's egress passes is what it receives.
 */
const CLUSTER = `
namespaces: [{name: x, labels: {}}]
pods:
  - {name: x/client, labels: {app: client}}
externals: [{name: ext, ip: 20.1.1.1}]
policies:
  - ${cnp('client-out', 'client', `egress: [{toEntities: [world]}]
            egressDeny: [{toEntities: [world], toPorts: [{ports: [{port: "80", protocol: UDP}, {port: "80", protocol: TCP}]}]}]`)}
`;

let bed: Testbed | undefined;
afterAll(() => bed?.close());

const b = (): Testbed => bed as Testbed;
const ip6 = (name: string): string => b().address(name, 'ipv6').ip;
const sport = (): number => randomInt(20000, 60000);
const u16 = (n: number): number[] => [(n >> 8) & 0xff, n & 0xff];

function addr16(text: string): number[] {
  const v = parseIp(text).value;
  return Array.from({ length: 16 }, (_, i) => Number((v >> BigInt((15 - i) * 8)) & 0xffn));
}

/** A UDP datagram from the client to `ext` with its IPv6 checksum, so `ext`'s kernel delivers it. */
function udp6(sp: number, dp: number): number[] {
  const data = tag(16);
  const len = 8 + data.length;
  const seg = [...u16(sp), ...u16(dp), ...u16(len), 0, 0, ...data];
  const pseudo = [...addr16(ip6('x/client')), ...addr16(ip6('ext')), 0, 0, ...u16(len), 0, 0, 0, 17, ...seg];
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

/** `ext`'s IPv6 counters (/proc/net/snmp6 read inside its namespace). */
function snmp6(): Map<string, number> {
  const text = run('nsenter', [`--net=${b().address('ext', 'ipv6').netns}`, 'cat', '/proc/net/snmp6']);
  return new Map(text.split('\n').filter((l) => l !== '').map((l) => { const [k, v] = l.split(/\s+/); return [k ?? '', Number(v)]; }));
}

/** How much each of `keys` grew in `ext` while `f` ran. */
function grew(keys: readonly string[], f: () => unknown): number[] {
  const before = snmp6();
  f();
  const after = snmp6();
  return keys.map((k) => (after.get(k) ?? 0) - (before.get(k) ?? 0));
}

kernel('attack round 17d: the datapath on hand-made packets', () => {
  beforeAll(() => {
    const state = scenarioStates(parseScenario(CLUSTER, 'attacks-17d.yaml'))[0] as ClusterState;
    bed = new Testbed({ listen: new Set(['UDP:80', 'UDP:81']) });
    const decide = (port: number): boolean => b().decide(state, { from: 'x/client', to: 'ext', port, protocol: 'UDP' }).allowed;
    expect([decide(81), decide(80)]).toEqual([true, false]);
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
});
