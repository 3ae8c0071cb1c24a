import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../../src/engine/events.js';
import type { ClusterState } from '../../src/model/cluster.js';
import { parseIp } from '../../src/model/cidr.js';
import type { FlowProtocol } from '../../src/model/ports.js';
import type { Policy } from '../../src/model/rules.js';
import { decideFlow } from '../../src/naive/evaluator.js';
import { ManifestError } from '../../src/policy/errors.js';
import { parseManifest } from '../../src/policy/manifest.js';
import type { ParseOptions } from '../../src/policy/cilium-options.js';
import { failClosedStandIn } from '../../src/policy/stand-in.js';
import { applyToModel, INITIAL_CLUSTER } from '../engine/gen.js';

/*
 * Review 27w of finding 2247's fix (a8a89feb): with identities from outside the mirror reads a ClusterNetworkPolicy
 * egress rule with a `networks` peer or a `destinationNamedPort` as "not supported" (ParseOptions.identitySplits
 * false) and the agent enforces the fail-closed stand-in. For every tier (Admin, Baseline), action (Deny, Pass,
 * Accept), version (v1alpha2, v1beta1) and kind of rule, beside lower-priority policies that could decide what the
 * rule hands on, the reference evaluator decides every flow between the pods and to and from the externals under the
 * policy as written (identities local: the engine splits them) and under its stand-in: every flow the written policy
 * denies the stand-in denies too, and every ingress decision is the written policy's (its ingress rules read as
 * they are). The same check with the policy left out (what the agent enforced before the fix) fails for the Deny
 * rules, so it can fail.
 */
const MIRROR: ParseOptions = { cidrGroups: true, served: true };
const EXTERNAL: ParseOptions = { ...MIRROR, identitySplits: false };

const pod = (ns: string, name: string, labels: Record<string, string>, ip: string, named: boolean): EngineEvent => ({
  type: 'upsertPod',
  pod: { namespace: ns, name, labels, ip: parseIp(ip), serviceAccount: 'default', ports: named ? [{ name: 'http', port: 80, protocol: 'TCP' }, { name: 'dns', port: 53, protocol: 'UDP' }] : [{ port: 443, protocol: 'TCP' }] },
  local: true,
});
const CLUSTER: EngineEvent[] = [
  { type: 'upsertNamespace', name: 'n0', labels: { team: 'a' } },
  { type: 'upsertNamespace', name: 'n1', labels: {} },
  pod('n0', 'web', { app: 'web' }, '10.244.0.2', false),
  pod('n0', 'db', { app: 'db' }, '10.244.0.3', true),
  pod('n1', 'db', { app: 'db' }, '10.244.1.3', true),
  pod('n1', 'api', { app: 'api' }, '10.244.1.4', true),
];
const ENDPOINTS = ['n0/web', 'n0/db', 'n1/db', 'n1/api', 'ext-lan', 'ext-dns', 'ext-ten'];
const PROBES: { protocol: FlowProtocol; port: number }[] = [
  { protocol: 'TCP', port: 80 },
  { protocol: 'TCP', port: 81 },
  { protocol: 'TCP', port: 443 },
  { protocol: 'UDP', port: 53 },
];

const cnp = (version: string, name: string, spec: Record<string, unknown>): Record<string, unknown> => ({ apiVersion: `policy.networking.k8s.io/${version}`, kind: 'ClusterNetworkPolicy', metadata: { name }, spec });
const POD_PEER = { pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: 'db' } } } };
/** The rule under test, by kind: a networks peer (with a pods peer beside it), or a named port on a pods peer. */
const RULES: Record<string, (action: string) => Record<string, unknown>> = {
  networks: (action) => ({ name: 'r', action, to: [{ networks: ['10.244.0.0/24', '8.8.8.0/24'] }, POD_PEER], protocols: [{ tcp: { destinationPort: { number: 80 } } }, { tcp: { destinationPort: { number: 443 } } }] }),
  networksOnly: (action) => ({ name: 'r', action, to: [{ networks: ['10.244.1.3/32'] }] }),
  named: (action) => ({ name: 'r', action, to: [POD_PEER], protocols: [{ destinationNamedPort: 'http' }] }),
};

/** Lower-priority policies a Pass or a dropped Accept hands flows on to (they read the same under both options). */
function background(version: string): unknown[] {
  return [
    cnp(version, 'admin-later', { tier: 'Admin', priority: 50, subject: { namespaces: {} }, egress: [{ name: 'no-api', action: 'Deny', to: [{ pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: 'api' } } } }] }] }),
    cnp(version, 'baseline', { tier: 'Baseline', priority: 50, subject: { namespaces: {} }, egress: [{ name: 'open', action: 'Accept', to: [{ pods: { namespaceSelector: {}, podSelector: {} } }] }, { name: 'closed', action: 'Deny', to: [{ networks: ['0.0.0.0/0'] }] }] }),
  ];
}

function stateWith(policies: readonly unknown[], options: ParseOptions): ClusterState {
  const events: EngineEvent[] = [...CLUSTER, ...policies.map((m): EngineEvent => ({ type: 'upsertPolicy', policy: parseManifest(m, 'review27w', options) }))];
  return events.reduce(applyToModel, INITIAL_CLUSTER);
}

interface Compared {
  /** Flows the written policy denies and the compared one allows. */
  opened: string[];
  /** Flows whose ingress decision differs. */
  ingressChanged: string[];
  denied: number;
}

function compare(written: ClusterState, other: ClusterState): Compared {
  const out: Compared = { opened: [], ingressChanged: [], denied: 0 };
  for (const from of ENDPOINTS)
    for (const to of ENDPOINTS) {
      if (from === to || (from.startsWith('ext-') && to.startsWith('ext-'))) continue;
      for (const p of PROBES) {
        const flow = { from, to, ...p };
        const a = decideFlow(written, flow);
        const b = decideFlow(other, flow);
        const what = `${from} -> ${to} ${p.protocol}/${p.port}`;
        if (!a.allowed) out.denied++;
        if (!a.allowed && b.allowed) out.opened.push(what);
        if (a.ingress?.allowed !== b.ingress?.allowed) out.ingressChanged.push(what);
      }
    }
  return out;
}

describe('review 27w: the identity-splits stand-in denies what the written rule denies (2247, every tier, action, version)', () => {
  for (const version of ['v1alpha2', 'v1beta1'])
    for (const tier of ['Admin', 'Baseline'])
      for (const action of ['Deny', 'Pass', 'Accept'])
        for (const kind of Object.keys(RULES)) {
          it(`${version} ${tier} ${action}, ${kind}`, () => {
            const ingress = [{ name: 'in', action: 'Deny', from: [{ pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: 'api' } } } }], protocols: [{ tcp: { destinationPort: { number: 80 } } }] }];
            const egress = [{ name: 'first', action: 'Accept', to: [{ pods: { namespaceSelector: { matchLabels: { team: 'a' } }, podSelector: { matchLabels: { app: 'web' } } } }] }, (RULES[kind] as (a: string) => Record<string, unknown>)(action)];
            const m = cnp(version, 'under-test', { tier, priority: 10, subject: { namespaces: {} }, ingress, egress });
            let written: ClusterState;
            try {
              written = stateWith([m, ...background(version)], MIRROR);
            } catch (e) {
              // The API refuses it (a Pass in v1beta1's Baseline, ...): refused under both options alike.
              expect(e).toBeInstanceOf(ManifestError);
              expect(() => parseManifest(m, 'review27w', EXTERNAL)).toThrow(ManifestError);
              return;
            }
            let error: unknown;
            try {
              parseManifest(m, 'review27w', EXTERNAL);
            } catch (e) {
              error = e;
            }
            expect(error).toBeInstanceOf(ManifestError);
            const standIn = failClosedStandIn(m, 'review27w', error, EXTERNAL);
            expect(standIn).toBeDefined();
            // The stand-in's rules: the ingress rule as written, the first egress rule as written, the rule under test failed closed.
            const rules = standIn?.tiered?.rules ?? [];
            expect(rules.map((r) => `${r.direction} ${r.action} ${r.peers.map((p) => p.kind).join(',')}`)).toEqual(['ingress Deny pods', 'egress Accept pods', `egress ${action} unknown`]);
            const other = [...background(version).map(readExternal), standIn as Policy];
            const stood = other.reduce(asState, CLUSTER.reduce(applyToModel, INITIAL_CLUSTER));
            const c = compare(written, stood);
            expect(c.opened).toEqual([]);
            expect(c.ingressChanged).toEqual([]);
            expect(c.denied).toBeGreaterThan(0);
          });
        }

  it('the check can fail: the policy left out (the agent before a8a89feb) opens flows a written Deny denies', () => {
    for (const version of ['v1alpha2', 'v1beta1'])
      for (const kind of Object.keys(RULES)) {
        const m = cnp(version, 'under-test', { tier: 'Admin', priority: 10, subject: { namespaces: {} }, egress: [(RULES[kind] as (a: string) => Record<string, unknown>)('Deny')] });
        const written = stateWith([m, ...background(version)], MIRROR);
        const without = stateWith(background(version), MIRROR);
        expect(compare(written, without).opened.length, `${version} ${kind}`).toBeGreaterThan(0);
      }
  });
});

/** As the mirror reads a policy with identities from outside: the policy, or its stand-in. */
function readExternal(m: unknown): Policy {
  try {
    return parseManifest(m, 'review27w', EXTERNAL);
  } catch (e) {
    const standIn = failClosedStandIn(m, 'review27w', e, EXTERNAL);
    if (standIn === undefined) throw e;
    return standIn;
  }
}

function asState(state: ClusterState, policy: Policy): ClusterState {
  return applyToModel(state, { type: 'upsertPolicy', policy });
}
