import { describe, expect, it } from 'vitest';
import { ciliumExtendedKey } from '../src/model/labels.js';
import { httpRuleMatches, kafkaRuleMatches } from '../src/model/l7.js';
import { parseManifest } from '../src/policy/manifest.js';
import { failClosedStandIn } from '../src/policy/stand-in.js';
import { cnp, errorOf } from './policy/helpers.js';

/*
 * Round 16n (docs/attack-findings-16n.md): names and spellings read differently by distill and Cilium.
 */

const ccnp = (spec: Record<string, unknown>) => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name: 'p' }, spec });
const peer = (ml: Record<string, string>) => cnp({ endpointSelector: { matchLabels: { app: 'server' } }, ingress: [{ fromEndpoints: [{ matchLabels: ml }] }] });

describe('760. Cilium 1.19 validates a selector key as its extended form <source>.<key>', () => {
  it('extends keys as GetExtendedKeyFrom does', () => {
    expect(ciliumExtendedKey('app')).toBe('any.app');
    expect(ciliumExtendedKey(':app')).toBe('any.app');
    expect(ciliumExtendedKey('k8s:app')).toBe('k8s.app');
    expect(ciliumExtendedKey('$host')).toBe('reserved.host');
    expect(ciliumExtendedKey('example.com/app')).toBe('any.example.com/app');
  });

  // Kubernetes' IsQualifiedName on the extended key refuses these (EndpointSelector.Sanitize); the raw key alone passes.
  const refused: [string, Record<string, string>][] = [
    ['a 60-character key (any.<60> is 64)', { ['a'.repeat(60)]: 'x' }],
    ['a 63-character key', { ['a'.repeat(63)]: 'x' }],
    ['k8s: and a 60-character key', { ['k8s:' + 'a'.repeat(60)]: 'x' }],
    ['a namespace-label key of 29 characters (any.io.cilium.k8s.namespace.labels.<29> is 64)', { ['io.cilium.k8s.namespace.labels.' + 'b'.repeat(29)]: 'x' }],
    ['a 250-character prefix (any.<250> is 254)', { ['a'.repeat(250) + '/b']: 'x' }],
    ['an upper-case source before a prefix (K8S.a is no DNS subdomain)', { 'K8S:a/b': 'x' }],
    ['an empty reserved key', { 'reserved:': '' }],
  ];
  it.each(refused)('refuses %s, naming the extended key (accepted before)', (_, ml) => {
    const e = errorOf(() => parseManifest(peer(ml), 'f'));
    expect(e.fieldPath.startsWith('spec.ingress[0].fromEndpoints[0].matchLabels')).toBe(true);
    expect(e.fieldPath).toContain(Object.keys(ml)[0]);
    expect(e.message).toMatch(/Cilium validates it as "[^"]+" \(source\.key\)/);
  });

  it('refuses the same in a subject, an expression key and a clusterwide policy', () => {
    const long = 'a'.repeat(61);
    expect(errorOf(() => parseManifest(cnp({ endpointSelector: { matchLabels: { [long]: 'x' } }, ingress: [{}] }), 'f')).fieldPath).toBe(`spec.endpointSelector.matchLabels.${long}`);
    expect(errorOf(() => parseManifest(cnp({ endpointSelector: {}, egress: [{ toEndpoints: [{ matchExpressions: [{ key: long, operator: 'Exists' }] }] }] }), 'f')).fieldPath).toBe('spec.egress[0].toEndpoints[0].matchExpressions[0].key');
    expect(errorOf(() => parseManifest(ccnp({ endpointSelector: {}, ingress: [{ fromEndpoints: [{ matchLabels: { [long]: 'x' } }] }] }), 'f')).fieldPath).toBe(`spec.ingress[0].fromEndpoints[0].matchLabels.${long}`);
  });

  // Valid once extended (any._legacy): Cilium enforces the policy, which isolates its subject and
  // selects no peer (no Kubernetes label key starts with "_"); refusing it made the agent skip it.
  it.each(['_legacy', '-legacy', '.legacy', 'k8s:_legacy'])('accepts %j (refused before; the scenario cilium-diff/a16-cnp-selector-key-valid-once-extended.yaml shows the isolation)', (key) => {
    const set = parseManifest(peer({ [key]: 'x' }), 'f');
    expect(set.rules).toHaveLength(1);
  });

  it('keeps accepting keys whose extended form fits: 59 characters, a 28-character namespace label, a 249-character prefix', () => {
    for (const k of ['a'.repeat(59), 'k8s:' + 'a'.repeat(59), 'io.cilium.k8s.namespace.labels.' + 'b'.repeat(28), 'a'.repeat(249) + '/b', 'reserved:host', '$host', 'example.com:8080']) {
      expect(() => parseManifest(peer({ [k]: '' }), 'f')).not.toThrow();
    }
  });
});

describe("761. a toPorts port name folds ASCII letters only, as iana.IsSvcName reads it", () => {
  const port = (p: string) => cnp({ endpointSelector: {}, ingress: [{ toPorts: [{ ports: [{ port: p, protocol: 'TCP' }] }] }] });
  it.each(['\u212Aafka', 'htt\u212A', '\u212A8s'])('refuses %j (a KELVIN SIGN, read as "k" before)', (p) => {
    expect(errorOf(() => parseManifest(port(p), 'f')).fieldPath).toBe('spec.ingress[0].toPorts[0].ports[0].port');
  });
  it('still reads ASCII upper case as the lower-case name', () => {
    const set = parseManifest(port('HTTP-Alt'), 'f');
    expect(set.rules[0]!.ports).toEqual([{ l4: { kind: 'named', protocol: 'TCP', name: 'http-alt' } }]);
  });
});

describe("762. a Kafka apiKey is lower-cased as Go's strings.ToLower does (simple case mapping)", () => {
  const kafka = (apiKey: string) => cnp({ endpointSelector: {}, ingress: [{ toPorts: [{ ports: [{ port: '9092', protocol: 'TCP' }], rules: { kafka: [{ apiKey }] } }] }] });
  it('accepts "l\u0130stgroups" (Go: listgroups; JavaScript: "li\u0307stgroups", refused before) and matches listgroups only', () => {
    expect(() => parseManifest(kafka('l\u0130stgroups'), 'f')).not.toThrow();
    expect(kafkaRuleMatches({ apiKey: 'l\u0130stgroups' }, { apiKey: 'listgroups' })).toBe(true);
    expect(kafkaRuleMatches({ apiKey: 'l\u0130stgroups' }, { apiKey: 'produce' })).toBe(false);
  });
  it('a KELVIN SIGN folds to k in both (saslhandsha\u212Ae is saslhandshake), a dotless i does not fold to i', () => {
    expect(() => parseManifest(kafka('saslhandsha\u212Ae'), 'f')).not.toThrow();
    expect(errorOf(() => parseManifest(kafka('l\u0131stgroups'), 'f')).fieldPath).toBe('spec.ingress[0].toPorts[0].rules.kafka[0].apiKey');
  });
});

describe("763. an HTTP rule's header name folds ASCII letters only, as Envoy's LowerCaseString", () => {
  const req = { method: 'GET', path: '/', headers: { 'k-id': 'x' } };
  it.each([
    ['a headers entry with a value', { headers: ['\u212A-Id x'] }],
    ['a headers entry (presence)', { headers: ['\u212A-Id'] }],
    ['a headerMatches entry', { headerMatches: [{ name: '\u212A-Id', value: 'x' }] }],
  ])('%s naming "\u212A-Id" (KELVIN SIGN) does not match a request header k-id (it did: fail-open)', (_, rule) => {
    expect(httpRuleMatches(rule, req)).toBe(false);
  });
  it('ASCII case still folds (K-Id matches k-id)', () => {
    expect(httpRuleMatches({ headers: ['K-Id x'] }, req)).toBe(true);
  });
});

describe('764. two matchLabels keys that are one extended key for Cilium (`app` and `:app`) with different values', () => {
  const doc = cnp({ endpointSelector: { matchLabels: { role: 'server' } }, ingress: [{ fromEndpoints: [{}] }], ingressDeny: [{ fromEndpoints: [{ matchLabels: { ':app': 'a', app: 'b' } }] }] });
  it('are not supported by distill (Cilium keeps one value, by Go map order; distill ANDed both and denied nothing)', () => {
    const e = errorOf(() => parseManifest(doc, 'f'));
    expect(e.fieldPath).toBe('spec.ingressDeny[0].fromEndpoints[0].matchLabels.app');
    expect(e.message).toMatch(/same key for Cilium \("any\.app"\).*not supported by distill/);
  });
  it('so the agent enforces the fail-closed stand-in: the deny rule denies every peer', () => {
    const stood = failClosedStandIn(doc, 'f', (() => { try { parseManifest(doc, 'f'); } catch (e) { return e; } })());
    expect(stood).toBeDefined();
    const deny = stood!.rules.filter((x) => x.verdict === 'deny');
    expect(deny).toHaveLength(1);
    expect(deny[0]!.peers).toEqual([expect.objectContaining({ kind: 'selector', entity: 'all' })]);
  });
  it('equal values, or keys of different sources (k8s:app and app), are read as before', () => {
    expect(() => parseManifest(cnp({ endpointSelector: { matchLabels: { ':app': 'a', app: 'a' } }, ingress: [{}] }), 'f')).not.toThrow();
    expect(() => parseManifest(cnp({ endpointSelector: { matchLabels: { 'k8s:app': 'a', app: 'b' } }, ingress: [{}] }), 'f')).not.toThrow();
  });
});
