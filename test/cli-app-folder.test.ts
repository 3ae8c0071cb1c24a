import { describe, expect, it } from 'vitest';
import { cli, expectBadInput, tmpDir, tmpFile } from './cli-helpers.js';

/**
 * An app folder as operators keep it (`k8s/`): Deployment, Service and ConfigMap next to the
 * NetworkPolicy, in one multi-document file or in a `kubectl get -o yaml` List. Built-in kinds
 * without policy are skipped with a warning; anything distill cannot classify is refused.
 */

const DEPLOYMENT = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}`;
const SERVICE = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {selector: {app: web}, ports: [{port: 80}]}`;
const CONFIGMAP = `apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, namespace: shop}
data: {a: b}`;
const POLICY = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: 80}]}]`;

const MULTI = [DEPLOYMENT, SERVICE, CONFIGMAP, POLICY].join('\n---\n');
const indent = (doc: string): string => doc.replace(/^/, '- ').replace(/\n/g, '\n  ');
const LIST = `apiVersion: v1\nkind: List\nitems:\n${[DEPLOYMENT, SERVICE, CONFIGMAP, POLICY].map(indent).join('\n')}\n`;

const SCENARIO = `namespaces: [{name: shop}]
pods:
  - {name: shop/web, labels: {app: web}}
  - {name: shop/client, labels: {app: client}}
  - {name: shop/other, labels: {app: other}}
steps:
  - probes: [{to: shop/web, port: 80}]
`;

describe('validate an app folder', () => {
  it.each([
    ['app.yaml', MULTI, (i: number) => `#${i + 1}`],
    ['list.yaml', LIST, (i: number) => `#1.items[${i}]`],
  ])('%s: the policy is read, Deployment, Service and ConfigMap skipped with a warning naming file, document and kind', (name, text, docMark) => {
    const dir = tmpDir();
    const file = tmpFile(name, text, dir);
    const r = cli('validate', dir, '-o', 'json');
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out)).toEqual([{ file, valid: true, policies: 1, rules: 1, podsAndNamespaces: 0, skipped: 3, names: ['NetworkPolicy/shop/allow-web'] }]);
    const lines = ['Deployment shop/web) kind: Deployment (apps/v1)', 'Service shop/web) kind: Service (v1)', 'ConfigMap shop/cfg) kind: ConfigMap (v1)'];
    expect(r.err.trimEnd().split('\n')).toEqual(lines.map((l, i) => `warning: ${file}${docMark(i)} (${l} carries no network policy: skipped`));
  });

  it('trace -f on the app folder applies its policy and warns about the skipped objects', () => {
    const dir = tmpDir();
    tmpFile('app.yaml', MULTI, dir);
    const scenario = tmpFile('scenario.yaml', SCENARIO, tmpDir());
    for (const [from, verdict] of [['shop/client', 'FORWARDED'], ['shop/other', 'DROPPED']]) {
      const r = cli('trace', '--scenario', scenario, '-f', dir, '--from', from!, '--to', 'shop/web', '--port', '80/TCP', '-o', 'json');
      expect(r.code, r.err).toBe(0);
      expect(JSON.parse(r.out)).toMatchObject({ verdict });
      expect(r.err).toContain('(Deployment shop/web) kind: Deployment (apps/v1) carries no network policy: skipped');
    }
  });
});

describe('what cannot be classified is refused, never skipped', () => {
  it.each([
    ['a misspelt Cilium kind', 'apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicys', '#2 (CiliumNetworkPolicys shop/x) kind: "CiliumNetworkPolicys" is not a supported kind (expected one of: NetworkPolicy, CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy, ClusterNetworkPolicy, Pod, Namespace, List'],
    ['an unknown cilium.io version', 'apiVersion: cilium.io/v3\nkind: CiliumNetworkPolicy', '#2 (CiliumNetworkPolicy shop/x) apiVersion: "cilium.io/v3" is not the apiVersion of CiliumNetworkPolicy'],
    ['a NetworkPolicy typo', 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicies', '#2 (NetworkPolicies shop/x) kind: "NetworkPolicies" is not a supported kind'],
    ['a Cilium kind distill does not read', 'apiVersion: cilium.io/v2\nkind: CiliumEnvoyConfig', '#2 (CiliumEnvoyConfig shop/x) kind:'],
    // A CiliumCIDRGroup is read since 26g (its spec checked): this one has none of its fields.
    ['a CiliumCIDRGroup with a policy\'s spec', 'apiVersion: cilium.io/v2alpha1\nkind: CiliumCIDRGroup', '#2 (CiliumCIDRGroup shop/x) spec.externalCIDRs:'],
    ['a CRD object', 'apiVersion: example.com/v1\nkind: Widget', '#2 (Widget shop/x) kind: "Widget" is not a supported kind'],
    ['a built-in kind at an unknown apiVersion', 'apiVersion: apps/v2\nkind: Deployment', '#2 (Deployment shop/x) apiVersion: "apps/v2" is not an apiVersion distill knows for Deployment (expected apps/v1)'],
    ['a built-in kind in a policy group', 'apiVersion: cilium.io/v2\nkind: Service', '#2 (Service shop/x) apiVersion: "cilium.io/v2" is not an apiVersion distill knows for Service (expected v1)'],
  ])('%s', (_what, head, message) => {
    const file = tmpFile('app.yaml', `${SERVICE}\n---\n${head}\nmetadata: {name: x, namespace: shop}\nspec: {endpointSelector: {}}\n`);
    const r = cli('validate', file);
    expectBadInput(r, `${file}${message}`);
    expect(r.out).toBe('');
  });

  it('in a List too, naming the item', () => {
    const bad = 'apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicys\nmetadata: {name: x, namespace: shop}\nspec: {endpointSelector: {}}';
    const file = tmpFile('list.yaml', `apiVersion: v1\nkind: List\nitems:\n${[SERVICE, bad].map(indent).join('\n')}\n`);
    expectBadInput(cli('validate', file), `${file}#1.items[1] (CiliumNetworkPolicys shop/x) kind: "CiliumNetworkPolicys" is not a supported kind`);
  });

  it('errors inside a policy name its kind and name next to file#N', () => {
    const file = tmpFile('np.yaml', POLICY.replace('port: 80', 'port: 99999'));
    expectBadInput(cli('validate', file), `${file}#1 (NetworkPolicy shop/allow-web) spec.ingress[0].ports[0].port:`);
  });
});

describe('replay on a file that is not a trace', () => {
  it.each([
    ['a manifest', MULTI],
    ['JSON without a trace header', '{"apiVersion": "v1", "kind": "List", "items": []}\n'],
  ])('%s: says it is not a trace and points to distill gen and docs/traces.md', (_what, text) => {
    const file = tmpFile('x.jsonl', text);
    const r = cli('replay', file);
    expectBadInput(r, `${file}:1`);
    expect(r.err).toContain('is not a distill trace');
    expect(r.err).toContain('`distill gen` (see docs/traces.md)');
  });
});
