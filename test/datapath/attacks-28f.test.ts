import { randomInt } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Testbed } from '../../src/datapath/testbed.js';
import type { ClusterState } from '../../src/model/cluster.js';
import { parseScenario } from '../../src/scenario/format.js';
import { scenarioStates } from '../../src/scenario/run.js';
import { arrives, ipv4, ipv6, tag, TCP, tcp, udp } from './frames-9.js';
import { kernel } from './gate.js';
import { CLIENT_SERVER_PEER_EXT, cnp } from './yaml.js';

/**
 * Attack round 28f on real packets (docs/attack-findings-28f.md), on round 10d's cluster: the
 * server's ingress admits the client at L3 but denies its TCP/80 (ingressDeny).
 */

let bed: Testbed | undefined;
afterAll(() => bed?.close());

const b = (): Testbed => bed as Testbed;
const ip = (name: string): string => b().address(name, 'ipv4').ip;
const ip6 = (name: string): string => b().address(name, 'ipv6').ip;
const sport = (): number => randomInt(20000, 60000);

kernel('attack round 28f: protocols Cilium does not track', () => {
  beforeAll(() => {
    const state = scenarioStates(parseScenario(CLIENT_SERVER_PEER_EXT, 'attacks-28f.yaml'))[0] as ClusterState;
    bed = new Testbed({ listen: new Set(['TCP:81']) });
    const decide = (port: number): boolean => b().decide(state, { from: 'x/client', to: 'x/server', port, protocol: 'TCP' }).allowed;
    expect([decide(80), decide(81)]).toEqual([false, true]);
  }, 60_000);

  it('2480: a tunnel packet from an L3-allowed peer passed, carrying a flow both states deny', () => {
    // The denied flow itself, and the allowed one beside it.
    const syn = (dp: number): number[] => ipv4(ip('x/client'), ip('x/server'), 6, tcp(sport(), dp, TCP.SYN));
    expect([arrives(b(), 'x/client', 'x/server', syn(80)), arrives(b(), 'x/client', 'x/server', syn(81))]).toEqual([false, true]);
    // The same SYN to TCP/80 inside IPIP (4) and GRE (47): a tunnel device in the server would
    // deliver it past the deny. Cilium drops the outer packet (DROP_CT_UNKNOWN_PROTO).
    const inner = syn(80).slice(2);
    const ipip = ipv4(ip('x/client'), ip('x/server'), 4, inner);
    const gre = ipv4(ip('x/client'), ip('x/server'), 47, [0, 0, 0x08, 0, ...inner]);
    const six = ipv6(ip6('x/client'), ip6('x/server'), 41, ipv6(ip6('x/client'), ip6('x/server'), 6, tcp(sport(), 80, TCP.SYN)).slice(2));
    expect([arrives(b(), 'x/client', 'x/server', ipip), arrives(b(), 'x/client', 'x/server', gre), arrives(b(), 'x/client', 'x/server', six)]).toEqual([false, false, false]);
  });

  it('2480: other protocols, and ICMP of the other family, are dropped whatever the L3 allow says', () => {
    const v4 = (proto: number): boolean => arrives(b(), 'x/client', 'x/server', ipv4(ip('x/client'), ip('x/server'), proto, [8, 0, 0, 0, 0, 1, 0, 1, ...tag()]));
    const v6 = (next: number): boolean => arrives(b(), 'x/client', 'x/server', ipv6(ip6('x/client'), ip6('x/server'), next, [8, 0, 0, 0, 0, 1, 0, 1, ...tag()]));
    // ESP, VRRP, an experimental number, ICMPv6 inside IPv4; ICMP inside IPv6, ESP over IPv6.
    expect([v4(50), v4(112), v4(253), v4(58), v6(1), v6(50)]).toEqual([false, false, false, false, false, false]);
    // What Cilium tracks still passes on the L3 allow: UDP, ICMP echo, ICMPv6 echo.
    const echo4 = ipv4(ip('x/client'), ip('x/server'), 1, [8, 0, 0, 0, 0, 7, 0, 1, ...tag()]);
    const echo6 = ipv6(ip6('x/client'), ip6('x/server'), 58, [128, 0, 0, 0, 0, 7, 0, 1, ...tag()]);
    const udp4 = ipv4(ip('x/client'), ip('x/server'), 17, udp(sport(), 9999));
    expect([arrives(b(), 'x/client', 'x/server', udp4), arrives(b(), 'x/client', 'x/server', echo4), arrives(b(), 'x/client', 'x/server', echo6)]).toEqual([true, true, true]);
  });
});

/** The server admits the client at L3 and denies it TCP and UDP `port: "0", endPort: 100`, which Cilium keys 0..100. */
const PORT_ZERO_DENY = `
namespaces: [{name: x, labels: {}}]
pods:
  - {name: x/client, labels: {app: client}}
  - {name: x/server, labels: {app: server}}
policies:
  - ${cnp('server-in', 'server', `ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}]
            ingressDeny: [{fromEndpoints: [{matchLabels: {app: client}}], toPorts: [{ports: [{port: "0", endPort: 100, protocol: TCP}, {port: "0", endPort: 100, protocol: UDP}]}]}]`)}
`;

let zeroBed: Testbed | undefined;
afterAll(() => zeroBed?.close());

kernel('attack round 28f: destination port 0', () => {
  const z = (): Testbed => zeroBed as Testbed;
  const zip = (name: string): string => z().address(name, 'ipv4').ip;
  beforeAll(() => {
    const state = scenarioStates(parseScenario(PORT_ZERO_DENY, 'attacks-28f-port0.yaml'))[0] as ClusterState;
    zeroBed = new Testbed({ listen: new Set(['TCP:101']) });
    const decide = (port: number): boolean => z().decide(state, { from: 'x/client', to: 'x/server', port, protocol: 'TCP' }).allowed;
    expect([decide(1), decide(100), decide(101)]).toEqual([false, false, true]);
  }, 60_000);

  it('2484: TCP and UDP to port 0 passed a deny of port "0" to endPort, which Cilium keys from 0 (PortRangeToMaskedPorts(0, end))', () => {
    const send = (proto: number, dp: number): boolean => {
      const l4 = proto === 6 ? tcp(sport(), dp, TCP.SYN) : udp(sport(), dp);
      return arrives(z(), 'x/client', 'x/server', ipv4(zip('x/client'), zip('x/server'), proto, l4));
    };
    // The range denies 1..100 and the L3 allow admits 101, both ways as before.
    expect([send(6, 1), send(6, 100), send(6, 101), send(17, 50), send(17, 101)]).toEqual([false, false, true, false, true]);
    // Port 0: no TCP or UDP socket can bind it, a raw socket in the pod reads it; Cilium's deny covers it.
    expect([send(6, 0), send(17, 0)]).toEqual([false, false]);
  });
});
