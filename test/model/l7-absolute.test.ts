import { describe, expect, it } from 'vitest';
import { httpRuleMatches } from '../../src/model/l7.js';
import { absoluteTarget } from '../../src/model/l7-path.js';

// Envoy's HTTP/1 codec (codec_impl.cc ServerConnectionImpl::handlePath, allow_absolute_url on by
// default: Http1Settings parseHttp1Settings) turns an absolute-form target into :authority + :path
// before any filter, replacing the Host header (RFC 9110 §7.2), so Cilium's HTTP rules see those.
describe('an HTTP/1 absolute-form request target', () => {
  const get = (path: string, headers?: Record<string, string>) => ({ method: 'GET', path, ...(headers ? { headers } : {}) });

  it('is judged on its path and host, as the proxy sees them', () => {
    expect(httpRuleMatches({ path: '/admin' }, get('http://shop/admin'))).toBe(true);
    expect(httpRuleMatches({ path: '/' }, get('http://shop'))).toBe(true);
    expect(httpRuleMatches({ path: '/a', host: 'shop:8080' }, get('HTTP://shop:8080/a'))).toBe(true);
    expect(httpRuleMatches({ path: '/a' }, get('https://shop/a?x=1'))).toBe(false);
    expect(httpRuleMatches({ path: '/a.*' }, get('https://shop/a?x=1'))).toBe(true);
  });

  it('replaces the Host header: a host rule sees the target host, not the header', () => {
    expect(httpRuleMatches({ host: 'shop' }, get('http://evil/x', { Host: 'shop' }))).toBe(false);
    expect(httpRuleMatches({ host: 'shop' }, get('http://shop/x', { Host: 'evil' }))).toBe(true);
    expect(httpRuleMatches({ headers: ['Host: shop'] }, get('http://evil/x', { Host: 'shop' }))).toBe(false);
  });

  it('is normalized like any path: it cannot step out of an allowed prefix', () => {
    expect(httpRuleMatches({ path: '/public/.*' }, get('http://shop/public/../admin'))).toBe(false);
    expect(httpRuleMatches({ path: '/public/.*' }, get('http://shop/public/%2e%2e/admin'))).toBe(false);
    expect(httpRuleMatches({ path: '/admin' }, get('http://shop/public/../admin'))).toBe(true);
  });

  it('is refused when the codec answers 400 or the path is not a path (no rule matches, not even match-all)', () => {
    for (const t of ['ftp://shop/a', 'http:///a', 'http://user@shop/a', 'http://shop?x', 'http://shop/a#f']) {
      expect(httpRuleMatches({}, get(t)), t).toBe(false);
    }
    expect(absoluteTarget('ftp://shop/a')).toBeNull();
    expect(absoluteTarget('/a')).toBeUndefined();
    expect(absoluteTarget('shop/a')).toBeUndefined();
  });
});
