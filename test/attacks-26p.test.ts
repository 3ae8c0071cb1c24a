import { describe, expect, it } from 'vitest';
import { agentVerdicts } from './k8s/agent-verdicts.js';
import { parseManifest } from '../src/policy/manifest.js';

/*
 * Round 26p (docs/attack-findings-26p.md). Sources: Cilium 1.19 pkg/labels/array.go (`LabelArray.Has`/`Get`: a key of
 * source `any` compares the key only, whatever the label's source), pkg/policy/k8s/cilium_cidr_group.go `applyCIDRGroup`
 * (a group's prefixes carry its metadata.labels under the source `cidrgroup`, io.cilium.k8s* keys dropped), pkg/ipcache/
 * metadata.go `mergeParentLabels` (longer prefixes inherit them), pkg/k8s/apis/cilium.io/utils/utils.go
 * `getEndpointSelector` (a selector with a `reserved:` key is not scoped to pods).
 */

type Obj = Record<string, unknown>;
const cnp = (spec: Obj): Obj => ({
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumNetworkPolicy',
  metadata: { name: 'p', namespace: 'x', resourceVersion: '10' },
  spec: { endpointSelector: { matchLabels: { app: 'server' } }, ...spec },
});
const world = { 'reserved:world': '' };
const STAND_IN = ['policy enforced fail-closed: it uses what distill does not read'];
const NOT_SUPPORTED = /keys without a source also match the `cidrgroup:` and `cidr:` labels/;

describe('2020. a key without a source in a selector that reaches addresses outside the cluster ignored their group and CIDR labels', () => {
  // Cilium: `team: a` is `any:team=a`, which matches `cidrgroup:team=a` on the prefixes of a CiliumCIDRGroup labelled
  // team=a (and `10.0.0.0/8` the label cidr:10.0.0.0/8). distill's CIDR identities carry their reserved labels only, so
  // on 3889216 the deny below denied no address of the group and the DoesNotExist allow admitted all of world.
  const denies: Obj[] = [
    { matchLabels: { ...world, team: 'a' } },
    { matchLabels: world, matchExpressions: [{ key: 'io.cilium.policy.cidrgroupname/blocklist', operator: 'Exists' }] },
    { matchLabels: { ...world, '10.0.0.0/8': '' } },
    // unscoped whatever the stack mode (a raw reserved:world matches CIDR identities in single-stack clusters only)
    { matchLabels: { team: 'a' }, matchExpressions: [{ key: 'io.kubernetes.pod.namespace', operator: 'NotIn', values: ['x'] }] },
  ];
  const allows: Obj[] = [
    { matchLabels: world, matchExpressions: [{ key: 'team', operator: 'DoesNotExist' }] },
    { matchLabels: world, matchExpressions: [{ key: 'team', operator: 'NotIn', values: ['a'] }] },
  ];
  it('a deny with a positive such requirement, an allow with a negative one: not supported (was read)', () => {
    for (const sel of denies) expect(() => parseManifest(cnp({ egressDeny: [{ toEndpoints: [sel] }] }), 't'), JSON.stringify(sel)).toThrow(NOT_SUPPORTED);
    for (const sel of allows) expect(() => parseManifest(cnp({ egress: [{ toEndpoints: [sel] }] }), 't'), JSON.stringify(sel)).toThrow(NOT_SUPPORTED);
  });
  it('the agent enforces the stand-in: the deny rule denies every peer of its direction (was: the pods allowed, the group not denied)', () => {
    const { warn, verdict } = agentVerdicts(cnp({ egress: [{ toEndpoints: [{}] }], egressDeny: [{ toEndpoints: [denies[0]] }] }));
    expect(warn).toEqual(STAND_IN);
    expect(verdict('client', 'egress')).toBe('deny');
  });
  it('the same in a clusterwide policy whose subject names reserved:init (its peers are not scoped)', () => {
    const ccnp: Obj = {
      apiVersion: 'cilium.io/v2',
      kind: 'CiliumClusterwideNetworkPolicy',
      metadata: { name: 'p', resourceVersion: '10' },
      spec: { endpointSelector: { matchLabels: { 'reserved:init': '' } }, egressDeny: [{ toEndpoints: [{ matchLabels: { team: 'a' } }] }] },
    };
    expect(() => parseManifest(ccnp, 't')).toThrow(NOT_SUPPORTED);
  });
  it('selectors that cannot differ stay read (control)', () => {
    const read: [string, Obj][] = [
      // scoped to the policy's namespace: the k8s: namespace requirement excludes every outside identity
      ['egressDeny', { matchLabels: { team: 'a' } }],
      // a positive requirement no outside identity meets
      ['egressDeny', { matchLabels: { 'reserved:host': '', team: 'a' } }],
      ['egressDeny', { matchLabels: { ...world, 'k8s:team': 'a' } }],
      // a deny only wider in distill (negative), an allow only narrower (positive)
      ['egressDeny', { matchLabels: world, matchExpressions: [{ key: 'team', operator: 'DoesNotExist' }] }],
      ['egress', { matchLabels: { ...world, team: 'a' } }],
      // the pod namespace named without a source (Cilium's own connectivity tests) is read as pods only
      ['egressDeny', { matchLabels: { 'io.kubernetes.pod.namespace': 'x', kind: 'echo' } }],
      // finding 1101's negative namespace deny
      ['egressDeny', { matchExpressions: [{ key: 'io.kubernetes.pod.namespace', operator: 'NotIn', values: ['x'] }] }],
      ['egressDeny', { matchLabels: world }],
    ];
    for (const [field, sel] of read) expect(() => parseManifest(cnp({ [field]: [{ toEndpoints: [sel] }] }), 't'), JSON.stringify(sel)).not.toThrow();
  });
});

describe('2021. with enable-node-selector-labels, an endpoint selector that could match Node labels skipped the policy', () => {
  // Finding 570 makes such a selector "not supported" so the agent fails its rule closed; the stand-in recognised that
  // by the words "is not supported by distill", which this message lacked. On 3889216 the agent skipped the object:
  // its isolating allow (to app=other only) was lost and x/server reached x/client, which Cilium denies.
  const policy = cnp({ egress: [{ toEndpoints: [{ matchLabels: { app: 'other' } }] }], egressDeny: [{ toEndpoints: [{ matchLabels: { 'reserved:remote-node': '', pool: 'gpu' } }] }] });
  it('is enforced by the stand-in: the deny rule denies every peer, the policy still isolates', () => {
    const { warn, verdict } = agentVerdicts(policy, [], { nodeSelectorLabels: true });
    expect(warn).toEqual(STAND_IN);
    expect(verdict('client', 'egress')).toBe('deny');
    expect(verdict('other', 'egress')).toBe('deny');
  });
  it('every deferred "not supported" error is a stand-in case, whatever its wording', async () => {
    const { Reader } = await import('../src/policy/reader.js');
    const { failClosedStandIn } = await import('../src/policy/stand-in.js');
    const r = new Reader('t', true);
    r.unsupported('spec.egress[0].toEndpoints[0]', 'some wording without the usual words');
    let error: unknown;
    try {
      r.throwDeferred();
    } catch (e) {
      error = e;
    }
    expect(failClosedStandIn(cnp({ egress: [{ toEndpoints: [{ matchLabels: { app: 'other' } }] }] }), 't', error)).toBeDefined();
  });
});

describe('2022. a NetworkPolicy without spec was refused', () => {
  // k8s.io/api networking/v1: `Spec NetworkPolicySpec` is `+optional` (`json:"spec,omitempty"`); the API server stores
  // the empty spec, which isolates every pod of the namespace for ingress. On 3889216: "spec: expected an object".
  it('is read as the empty spec: every pod of its namespace, ingress isolated, no rule', () => {
    for (const spec of [undefined, null]) {
      const policy = parseManifest({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'p', namespace: 'x' }, ...(spec === null ? { spec } : {}) }, 't');
      expect(policy.enforcements.map((e) => e.direction)).toEqual(['ingress']);
      expect(policy.rules).toEqual([]);
    }
  });
});

describe('2024. a subject writing one Cilium key twice with different values skipped the policy', () => {
  // `app: server` and `:app: other` are both `any.app` to Cilium, which keeps one value by Go's map order (finding 764):
  // its subject is app=server or app=other. On 3889216 the stand-in could not read the subject and the agent skipped
  // the object, so x/server's egress stayed open although Cilium may isolate it (allowing only app=nothing).
  const policy = (spec: Obj): Obj => ({ ...cnp({}), spec: { endpointSelector: { matchLabels: { app: 'server', ':app': 'other' } }, ...spec } });
  it('each candidate subject is isolated with no allow', () => {
    const { warn, verdict } = agentVerdicts(policy({ egress: [{ toEndpoints: [{ matchLabels: { app: 'nothing' } }] }] }));
    expect(warn).toEqual(STAND_IN);
    expect(verdict('client', 'egress')).toBe('deny');
    expect(verdict('other', 'egress')).toBe('deny');
  });
  it('a deny-only spec isolates its direction only, as Rule.Sanitize defaults it; the other direction stays open', () => {
    const { warn, verdict } = agentVerdicts(policy({ ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }] }] }));
    expect(warn).toEqual(STAND_IN);
    expect(verdict('client', 'ingress')).toBe('deny');
    expect(verdict('client', 'egress')).toBe('allow');
  });
});
