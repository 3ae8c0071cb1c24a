import { describe, expect, it } from 'vitest';
import { ciliumNodeOf, nodeOf, podEndpoint } from '../src/k8s/objects.js';
import { isValidIp, parseCidr, parseIp } from '../src/model/cidr.js';
import { parseManifest } from '../src/policy/manifest.js';
import { cnp, errorOf, np } from './policy/helpers.js';

/*
 * Round 15a (docs/attack-findings-15a.md): text forms of addresses, read as Go's netip reads them.
 */

type Obj = Record<string, unknown>;

describe("650. addresses are read with Go's netip.ParseAddr rules", () => {
  // Go src/net/netip/netip_test.go TestParseAddr `invalidIPs`, minus the zone rows distill refuses anyway,
  // plus the fuzz corpus row "::ffff:1.2.03.4" (netip fuzz_test.go) and leading zeros after other groups.
  const invalid = [
    '', 'bad', '1234', '1.2.3.4%eth0', '.1.2.3', '1.2.3.', '1..2.3', '1.2.3.4.5', '0300.0250.0214.0377', '0xc0.0xa8.0x8c.0xff',
    '192.168.12345', '127.0.1', '192.1234567', '127.1', '192.168.300.1', '192.168.0.1.5.6', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9',
    '1:2:3:4::5:6:7:8', 'fe801::1', 'fe80:tail:scal:e::', 'fe80::1%', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:192.168.140.255',
    'ffff::ffff:ffff:ffff:ffff:ffff:ffff:192.168.140.255', '::ffff:192.168.140.bad', 'fe80::1::1', 'fe80:1?:1', 'fe80:',
    '0:0:0:0:0:ffff:0:00000', '0:0:0:0:00000:ffff:127.1.2.3', '::ffff:1.2.03.4',
    '::010.0.0.1', '::01.2.3.4', '::ffff:010.0.0.1', '1::01.2.3.4', '0:0:0:0:0:0:010.0.0.1', '::1.2.3.04', '::00.0.0.0',
  ];
  it.each(invalid)('refuses %j (ipaddr.js read the leading-zero embedded forms, `::` ones as IPv4-mapped)', (s) => {
    expect(isValidIp(s)).toBe(false);
    expect(() => parseIp(s)).toThrow(/not a valid IP address/);
  });

  // TestParseAddr `validIPs` (their `str`, netip's text, is RFC 5952 as distill's).
  const valid: [string, string][] = [
    ['0.0.0.0', '0.0.0.0'], ['192.168.140.255', '192.168.140.255'], ['::', '::'], ['::1', '::1'],
    ['fd7a:115c:a1e0:ab12:4843:cd96:626b:430b', 'fd7a:115c:a1e0:ab12:4843:cd96:626b:430b'], ['fd7a:115c::626b:430b', 'fd7a:115c::626b:430b'],
    ['fd7a:115c:a1e0:ab12:4843:cd96::', 'fd7a:115c:a1e0:ab12:4843:cd96::'], ['fd7a:115c:a1e0:ab12:4843:cd96:626b::', 'fd7a:115c:a1e0:ab12:4843:cd96:626b:0'],
    ['fd7a:115c:a1e0::4843:cd96:626b:430b', 'fd7a:115c:a1e0:0:4843:cd96:626b:430b'], ['::ffff:192.168.140.255', '::ffff:c0a8:8cff'],
    ['FD9E:1A04:F01D::1', 'fd9e:1a04:f01d::1'], ['::10.0.0.1', '::a00:1'], ['::0.0.0.0', '::'], ['1::0.0.0.1', '1::1'], ['0102:0304::0', '102:304::'],
  ];
  it.each(valid)('reads %j as %s', (s, text) => {
    expect(parseIp(s).text).toBe(text);
  });

  it('a CIDR with a leading-zero embedded IPv4 is refused; without, it is the netip prefix', () => {
    expect(() => parseCidr('::010.0.0.0/104')).toThrow();
    expect(() => parseCidr('::ffff:010.0.0.0/104')).toThrow();
    expect(parseCidr('::10.0.0.0/104').text).toBe('::a00:0/104');
  });

  it('CNP fromCIDR / toCIDRSet and NetworkPolicy ipBlock with such a CIDR are refused, naming the field', () => {
    // Before: the NetworkPolicy below allowed ::ffff:10.0.0.0/104 (ipaddr.js), an address range neither
    // Kubernetes (ParseCIDRSloppy: ::a00:0/104) nor Cilium (netip.ParsePrefix: an error) reads from it.
    const cases: [unknown, string][] = [
      [np({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '::010.0.0.0/104' } }] }] }), 'spec.ingress[0].from[0].ipBlock.cidr'],
      [np({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '::/0', except: ['::010.0.0.0/104'] } }] }] }), 'spec.ingress[0].from[0].ipBlock.except[0]'],
      [cnp({ endpointSelector: {}, ingressDeny: [{ fromCIDR: ['::010.0.0.0/104'] }] }), 'spec.ingressDeny[0].fromCIDR[0]'],
      [cnp({ endpointSelector: {}, egress: [{ toCIDRSet: [{ cidr: '::ffff:010.0.0.0/104' }] }] }), 'spec.egress[0].toCIDRSet[0].cidr'],
    ];
    for (const [doc, field] of cases) expect(errorOf(() => parseManifest(doc, 'f')).fieldPath).toBe(field);
  });

  it('a Node or CiliumNode address `::010.0.0.9` is no node address (before: remote-node 10.0.0.9 via the IPv4-mapped reading)', () => {
    const node: Obj = { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-b', resourceVersion: '3' }, status: { addresses: [{ type: 'InternalIP', address: '::ffff:010.0.0.9' }, { type: 'InternalIP', address: '192.0.2.11' }] } };
    expect(nodeOf(node, 'node-a', 'nodes').ips.map((a) => a.text)).toEqual(['192.0.2.11']);
    const cn: Obj = { apiVersion: 'cilium.io/v2', kind: 'CiliumNode', metadata: { name: 'node-b', resourceVersion: '4' }, spec: { addresses: [{ type: 'CiliumInternalIP', ip: '::010.244.1.1' }], health: { ipv4: '::ffff:010.244.1.200' } } };
    const n = ciliumNodeOf(cn, 'node-a', 'ciliumnodes');
    expect(n.ips).toEqual([]);
    expect(n.health ?? []).toEqual([]);
  });

  it('a Pod status.podIP `::ffff:010.244.1.9` is refused (before: the pod took 10.244.1.9)', () => {
    const pod: Obj = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'bad', namespace: 'ns', uid: 'uid-bad', resourceVersion: '2', labels: { app: 'bad' } },
      spec: { nodeName: 'node-b', containers: [{ name: 'c', image: 'i' }] },
      status: { phase: 'Running', podIP: '::ffff:010.244.1.9', podIPs: [{ ip: '::ffff:010.244.1.9' }] },
    };
    expect(() => podEndpoint(pod, 'node-a', 'pods')).toThrow(/podIPs\[0\]\.ip|not a valid IP/);
  });
});

describe('651. a NetworkPolicy ipBlock prefix length with a leading zero', () => {
  // Kubernetes (ParseCIDRSloppy) admits "10.0.0.0/024"; Cilium reads ipBlock with netip.ParsePrefix, which
  // refuses it, so no Cilium agent allows 10.0.0.0/24 from it. distill read /24 and allowed it.
  it('is refused as in Cilium CIDRs, cidr and except', () => {
    expect(errorOf(() => parseManifest(np({ podSelector: {}, egress: [{ to: [{ ipBlock: { cidr: '10.0.0.0/024' } }] }] }), 'f')).fieldPath).toBe('spec.egress[0].to[0].ipBlock.cidr');
    expect(errorOf(() => parseManifest(np({ podSelector: {}, egress: [{ to: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['10.1.0.0/016'] } }] }] }), 'f')).fieldPath).toBe('spec.egress[0].to[0].ipBlock.except[0]');
    expect(parseManifest(np({ podSelector: {}, egress: [{ to: [{ ipBlock: { cidr: '10.0.0.0/0' } }] }] }), 'f').rules[0]!.peers).toHaveLength(1);
  });
});
