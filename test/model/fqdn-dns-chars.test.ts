import { describe, expect, it } from 'vitest';
import { compileFqdnSelector, normalizeFqdn } from '../../src/model/fqdn.js';
import { dnsRuleMatches } from '../../src/model/l7.js';

// Cilium compiles a star inside a label to `[-a-zA-Z0-9_]*` (pkg/fqdn/matchpattern/matchpattern.go
// ToAnchoredRegexp, allowedDNSCharsREGroup; TestAnchoredMatchPatternREConversion), for DNS rules and
// toFQDNs selectors alike. The readers refuse other names, so these hold the selector matcher
// itself to it, as the DNS rule matcher already was (defence in depth for names from other paths).
describe('a toFQDNs star matches DNS characters only, as Cilium compiles it', () => {
  it('a star inside a label, and the labels a leading **. stands for', () => {
    expect(dnsRuleMatches({ matchPattern: '*.example.com' }, { name: 'a b.example.com' })).toBe(false);
    const m = compileFqdnSelector({ matchPattern: '*.example.com' });
    expect(m('ok.example.com')).toBe(true);
    expect(m('a\\032b.example.com')).toBe(false);
    expect(m('a b.example.com')).toBe(false);
    const multi = compileFqdnSelector({ matchPattern: '**.example.com' });
    expect(multi('a.b.example.com')).toBe(true);
    expect(multi('a\\.b.example.com')).toBe(false);
  });

  it('names are lower-cased in ASCII only: the Kelvin sign is not k', () => {
    expect(normalizeFqdn('API.Example.COM.')).toBe('api.example.com');
    expect(normalizeFqdn('\u212Aube.io')).not.toBe('kube.io');
  });
});
