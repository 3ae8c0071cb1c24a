import { describe, expect, it } from 'vitest';
import { parseManifestFile } from '../src/policy/manifest.js';

/*
 * Round 22p (docs/attack-findings-22p.md): the manifest readers against the CiliumNetworkPolicy CRD's
 * OpenAPI schema at Cilium's v1.19 branch point (devodev/cilium 2ba24a2a) and the network-policy-api CRD.
 */

const withRules = (rules: string, port = '{port: "80", protocol: TCP}'): string => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [${port}], rules: ${rules}}]
`;

describe('1660. a toPorts `rules` object setting none or several of http, kafka, dns, l7proto was read as no L7 rules', () => {
  // pkg/policy/api/l4.go L7Rules: `+kubebuilder:validation:OneOf` on HTTP, Kafka, DNS and L7Proto, so the CRD
  // gives `rules` oneOf [{required: [http]}, {required: [kafka]}, {required: [dns]}, {required: [l7proto]}]:
  // the API server refuses `{}` (no branch) and `{http: [], kafka: []}` (two branches). On 7d066af distill read
  // each as a plain allow of port 80 (L7Rules.IsEmpty), a policy the cluster never stores.
  // `{}` the agent alone would read (a policy stored before the oneOf, 1.16): "not supported", so the agent's
  // stand-in drops the allow (test/k8s/stand-in-22p.test.ts); several fields L7Rules.sanitize refuses too.
  const none = /sets none of http, kafka, dns, l7proto: the CRD's oneOf \(Cilium 1\.16\+\) refuses it.*is not supported by distill/;
  const several = /multiple L7 protocol rule types in one rule \((.+)\): the CRD's oneOf and Cilium's L7Rules\.sanitize refuse the policy/;
  it('refuses rules: {}', () => {
    expect(() => parseManifestFile(withRules('{}'), 'f')).toThrow(none);
  });
  it('refuses a field the API server prunes as null (rules: {http: null} is {})', () => {
    expect(() => parseManifestFile(withRules('{http: null}'), 'f')).toThrow(none);
  });
  it('refuses l7 without l7proto as invalid (not a branch of the oneOf; L7Rules.sanitize refuses it too)', () => {
    expect(() => parseManifestFile(withRules('{l7: [{a: b}]}'), 'f')).toThrow(/may only be specified when a 'l7proto' is also specified/);
  });
  it('refuses two empty lists', () => {
    expect(() => parseManifestFile(withRules('{http: [], kafka: []}'), 'f')).toThrow(several);
    expect(() => parseManifestFile(withRules('{http: [], dns: []}', '{port: "53", protocol: UDP}'), 'f')).toThrow(several);
  });
  it('refuses http with l7proto as invalid, not as "not supported" (the agent never sees such an object)', () => {
    expect(() => parseManifestFile(withRules('{http: [{}], l7proto: r2d2}'), 'f')).toThrow(several);
  });
  it('still reads one empty list as no L7 rules, and one non-empty list as its parser (control)', () => {
    expect(parseManifestFile(withRules('{http: []}'), 'f')[0]!.rules[0]!.ports[0]!.l7).toBeUndefined();
    expect(parseManifestFile(withRules('{kafka: []}'), 'f')[0]!.rules[0]!.ports[0]!.l7).toBeUndefined();
    expect(parseManifestFile(withRules('{http: [{method: GET}]}'), 'f')[0]!.rules[0]!.ports[0]!.l7).toEqual({ parser: 'http', http: [{ method: 'GET' }] });
  });
});

describe('1661. a Kafka rule with `topic: ""` was refused; Cilium 1.19 reads it as no topic', () => {
  // kafka.go PortRule.Sanitize (cilium/proxy, vendored by 1.19): `if len(kr.Topic) > 0 { ...TopicValidChar... }`;
  // the CRD has maxLength 255 and no minLength. On 7d066af the refusal made the agent skip the policy,
  // leaving its subject (isolated by it) open.
  const kafka = (rule: string): string => withRules(`{kafka: [${rule}]}`, '{port: "9092", protocol: TCP}');
  it('reads topic: "" as a rule without a topic', () => {
    const l7 = parseManifestFile(kafka('{role: produce, topic: ""}'), 'f')[0]!.rules[0]!.ports[0]!.l7;
    expect(l7).toEqual({ parser: 'kafka', kafka: [{ role: 'produce', topic: '' }] });
  });
  it('still refuses a topic TopicValidChar refuses, and one over 255 characters (control)', () => {
    expect(() => parseManifestFile(kafka('{topic: "a b"}'), 'f')).toThrow(/not a valid Kafka topic name/);
    expect(() => parseManifestFile(kafka(`{topic: ${'a'.repeat(256)}}`), 'f')).toThrow(/not a valid Kafka topic name/);
  });
});
