import { describe, expect, it } from 'vitest';
import { cidrContainsCidr, cidrContainsIp, parseCidr, parseIp } from '../../src/model/cidr.js';

describe('CIDRs', () => {
  it('normalises host bits and bare addresses', () => {
    expect(parseCidr('10.1.2.3/8').text).toBe('10.0.0.0/8');
    expect(parseCidr('20.1.1.1').text).toBe('20.1.1.1/32');
    expect(parseCidr('2001:db8::1/32').text).toBe('2001:db8::/32');
  });
  it('rejects malformed input', () => {
    for (const bad of ['10.0.0.0/33', '300.1.1.1/8', 'abc', '10.0.0/8', '10.0.0.0/x', '::/129']) {
      expect(() => parseCidr(bad), bad).toThrow();
    }
  });
  it('containment respects families and prefixes', () => {
    const c = parseCidr('10.0.0.0/8');
    expect(cidrContainsIp(c, parseIp('10.255.0.1'))).toBe(true);
    expect(cidrContainsIp(c, parseIp('11.0.0.1'))).toBe(false);
    expect(cidrContainsIp(c, parseIp('::a00:1'))).toBe(false);
    expect(cidrContainsIp(parseCidr('0.0.0.0/0'), parseIp('1.2.3.4'))).toBe(true);
    expect(cidrContainsCidr(c, parseCidr('10.96.0.0/12'))).toBe(true);
    expect(cidrContainsCidr(parseCidr('10.96.0.0/12'), c)).toBe(false);
  });
});
