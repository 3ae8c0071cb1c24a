import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Testbed } from '../../src/datapath/testbed.js';
import type { ClusterState } from '../../src/model/cluster.js';
import { parseScenario } from '../../src/scenario/format.js';
import { scenarioStates } from '../../src/scenario/run.js';
import { arrives, fragmentHeader, ipv6, tag, TCP, tcp, udp } from './frames-9.js';
import { kernel } from './gate.js';
import { cnp } from './yaml.js';

/**
 * IPv6 fragments on real packets: a first fragment registers its L4 fields, later fragments are
 * decided by them (Cilium: bpf/lib/ipv6.h ipv6_handle_fragmentation, cilium_ipv6_frag_datagrams),
 * an orphan later fragment is dropped (DROP_FRAG_NOT_FOUND). As in attacks-7c.test.ts: the server
 * allows the client at L3 but denies its TCP/80; the client's egress reaches the server only.
 */
const SCENARIO = `
namespaces: [{name: x, labels: {}}]
pods:
  - {name: x/client, labels: {app: client}}
  - {name: x/server, labels: {app: server}}
  - {name: x/other, labels: {app: other}}
policies:
  - ${cnp('server-in', 'server', `ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}]
            ingressDeny: [{fromEndpoints: [{matchLabels: {app: client}}], toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]`)}
  - ${cnp('client-out', 'client', 'egress: [{toEndpoints: [{matchLabels: {app: server}}]}]')}
`;

let bed: Testbed | undefined;
afterAll(() => bed?.close());

const ip6 = (name: string): string => (bed as Testbed).address(name, 'ipv6').ip;
const id = (): number => randomBytes(4).readUInt32BE(0);
const DEST_OPTS = (next: number): number[] => [next, 0, 1, 4, 0, 0, 0, 0];

/** One fragment from the client to `to`: `payload` behind a fragment header (offset in 8-byte units). */
function fragment(to: string, next: number, offset: number, more: boolean, fragId: number, payload: readonly number[]): boolean {
  return arrives(bed as Testbed, 'x/client', to, ipv6(ip6('x/client'), ip6(to), 44, [...fragmentHeader(next, offset, more, fragId), ...payload]));
}
/** A first fragment: a TCP SYN (20 bytes) and 12 bytes of data, 32 in all. */
const synFirst = (port: number): number[] => tcp(41000, port, TCP.SYN, 12);
/** A later fragment's payload whose first bytes read as a SYN to `port`. */
const looksLikeSyn = (port: number): number[] => tcp(42000, port, TCP.SYN);

kernel('IPv6 fragments: later fragments decided by their first fragment', () => {
  beforeAll(() => {
    const state = scenarioStates(parseScenario(SCENARIO, 'frag6-9.yaml'))[0] as ClusterState;
    bed = new Testbed({ listen: new Set(['TCP:80', 'TCP:81']) });
    const decide = (to: string, port: number): boolean => (bed as Testbed).decide(state, { from: 'x/client', to, port, protocol: 'TCP' }).allowed;
    expect([decide('x/server', 81), decide('x/server', 80), decide('x/other', 81)]).toEqual([true, false, false]);
  }, 60_000);

  it('a later fragment of an allowed datagram passes, whatever its bytes read as', () => {
    const f = id();
    expect(fragment('x/server', 6, 0, true, f, synFirst(81))).toBe(true);
    expect(fragment('x/server', 6, 4, true, f, [...Array<number>(16).fill(0), ...tag()])).toBe(true);
    expect(fragment('x/server', 6, 7, false, f, looksLikeSyn(80))).toBe(true);
  });

  it('a later fragment of a denied datagram is dropped, also when its bytes read as an allowed SYN', () => {
    const f = id();
    expect(fragment('x/server', 6, 0, true, f, synFirst(80))).toBe(false);
    expect(fragment('x/server', 6, 4, false, f, looksLikeSyn(81))).toBe(false);
  });

  it('an orphan later fragment is dropped: no first fragment, or one of another identification or protocol', () => {
    expect(fragment('x/server', 6, 4, false, id(), looksLikeSyn(81))).toBe(false);
    const f = id();
    expect(fragment('x/server', 6, 0, true, f, synFirst(81))).toBe(true);
    expect(fragment('x/server', 6, 4, false, (f + 1) >>> 0, looksLikeSyn(81))).toBe(false);
    expect(fragment('x/server', 17, 4, false, f, udp(40000, 53))).toBe(false);
  });

  it('a first fragment with a destination options header behind the fragment header is decided by its TCP header', () => {
    const [allowed, denied] = [id(), id()];
    expect(fragment('x/server', 60, 0, true, allowed, [...DEST_OPTS(6), ...tcp(41000, 81, TCP.SYN, 4)])).toBe(true);
    expect(fragment('x/server', 60, 4, false, allowed, [...Array<number>(8).fill(0), ...tag()])).toBe(true);
    expect(fragment('x/server', 60, 0, true, denied, [...DEST_OPTS(6), ...tcp(41000, 80, TCP.SYN, 4)])).toBe(false);
    expect(fragment('x/server', 60, 4, false, denied, [...Array<number>(8).fill(0), ...tag()])).toBe(false);
  });

  it('UDP: the client\'s egress decides a fragmented datagram by its first fragment\'s ports and peer', () => {
    const [toServer, toOther] = [id(), id()];
    expect(fragment('x/server', 17, 0, true, toServer, udp(40000, 53))).toBe(true);
    expect(fragment('x/server', 17, 2, false, toServer, [...Array<number>(8).fill(0), ...tag()])).toBe(true);
    expect(fragment('x/other', 17, 0, true, toOther, udp(40000, 53))).toBe(false);
    expect(fragment('x/other', 17, 2, false, toOther, [...Array<number>(8).fill(0), ...tag()])).toBe(false);
  });
});
