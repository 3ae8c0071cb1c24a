import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../src/engine/events.js';
import { Engine } from '../src/engine/engine.js';
import { ClusterMirror } from '../src/k8s/mirror.js';
import { WatchStreamParser } from '../src/k8s/watch.js';

/*
 * Review 26s (docs/attack-findings-26s.md) of fix2050 (stack mode) and att26policy (2020-2024). Sources: Cilium 1.19
 * pkg/k8s/apis/cilium.io/utils/utils.go getEndpointSelector and pkg/policy/api/selector.go NewESFromK8sLabelSelector
 * (matchLabels rebuilt as a Go map of extended keys: `a` and `:a` are both `any.a`, one value kept by map order,
 * finding 764), pkg/policy/rule.go (a rule's subject is isolated in a direction it has rules for).
 */
type Obj = Record<string, unknown>;
const ev = (type: string, object: Obj): string => JSON.stringify({ type, object });
const ns: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x', resourceVersion: '1' } };
const pod = (name: string, rv: number, node: string, ip: string, labels: Record<string, string>): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'x', resourceVersion: String(rv), labels: { app: name, ...labels } },
  spec: { nodeName: node, containers: [] },
  status: { phase: 'Running', podIP: ip },
});

/** The agent's mirror reading one policy beside x/server (local, with `serverLabels`) and x/client: warnings and server's TCP/80 verdicts. */
function agentRead(policy: Obj, serverLabels: Record<string, string>): { warn: string[]; verdict: (direction: 'ingress' | 'egress') => 'allow' | 'deny' } {
  const warn: string[] = [];
  const mirror = new ClusterMirror({ nodeName: 'n1', warn: (m) => warn.push(m) });
  const engine = new Engine();
  const parser = new WatchStreamParser('w');
  const lines = [ev('ADDED', ns), ev('ADDED', pod('server', 2, 'n1', '10.0.0.1', serverLabels)), ev('ADDED', pod('client', 3, 'n2', '10.0.0.2', {})), ev('ADDED', policy)];
  for (const item of parser.push(lines.join('\n'))) mirror.observe(item, 'w');
  const batch = mirror.flush();
  engine.apply(batch.events as EngineEvent[]);
  batch.commit();
  return {
    warn,
    verdict: (direction) => {
      const hit = engine.lookup('x/server', engine.identityOfPod('x/client') as number, direction, 6, 80);
      return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
    },
  };
}

const STAND_IN = ['policy enforced fail-closed: it uses what distill does not read'];

describe('2140. a subject writing more than four Cilium keys twice skipped the policy (the 2024 stand-in gave up past 16 candidates)', () => {
  // Five keys each written as `k` and `:k` with different values: 32 candidate subjects, one of which Cilium keeps
  // (Go map order). The candidate {app: server, a: 1, ..., e: 1} selects x/server and isolates its egress (only
  // app=nothing allowed). On c802ed50 subjectCandidates returned undefined past 16 candidates, the stand-in was
  // undefined and the agent skipped the object: x/server's egress stayed open.
  const keys = ['a', 'b', 'c', 'd', 'e'];
  const matchLabels: Record<string, string> = { app: 'server' };
  for (const k of keys) Object.assign(matchLabels, { [k]: '1', [`:${k}`]: '2' });
  const serverLabels = Object.fromEntries(keys.map((k) => [k, '1']));
  const policy = (spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p', namespace: 'x', resourceVersion: '10' }, spec: { endpointSelector: { matchLabels }, ...spec } });
  it('egress: every candidate subject isolated, x/server included', () => {
    const { warn, verdict } = agentRead(policy({ egress: [{ toEndpoints: [{ matchLabels: { app: 'nothing' } }] }] }), serverLabels);
    expect(warn).toEqual(STAND_IN);
    expect(verdict('egress')).toBe('deny');
    expect(verdict('ingress')).toBe('allow');
  });
  it('a deny rule is kept for every candidate subject', () => {
    const { warn, verdict } = agentRead(policy({ ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }] }] }), serverLabels);
    expect(warn).toEqual(STAND_IN);
    expect(verdict('ingress')).toBe('deny');
  });
  it('the same with the source-less spelling written first (`:k` before `k`)', () => {
    const reversed: Record<string, string> = { app: 'server' };
    for (const k of keys) Object.assign(reversed, { [`:${k}`]: '2', [k]: '1' });
    const spec = { endpointSelector: { matchLabels: reversed }, egress: [{ toEndpoints: [{ matchLabels: { app: 'nothing' } }] }] };
    const { warn, verdict } = agentRead({ ...policy({}), spec }, serverLabels);
    expect(warn).toEqual(STAND_IN);
    expect(verdict('egress')).toBe('deny');
  });
  it('(control) a pod no candidate selects is left alone', () => {
    const { verdict } = agentRead(policy({ egress: [{ toEndpoints: [{ matchLabels: { app: 'nothing' } }] }] }), { ...serverLabels, e: '3' });
    expect(verdict('egress')).toBe('allow');
  });
});
