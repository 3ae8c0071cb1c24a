import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { backendLookup } from '../../src/backend/lookup.js';
import type { MapBackend } from '../../src/backend/backend.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';
import type { ClusterState } from '../../src/model/cluster.js';
import { decideFlow } from '../../src/naive/evaluator.js';
import { fcReplay, fcRuns } from '../fc-knobs.js';
import { objectHistory, type Objects } from '../k8s/object-history.js';
import { settledAgent } from './settled-agent.js';

/*
 * Finding 2430: random histories of namespace relabels, pod relabels and policy changes where the engine refuses what
 * gives a local pod two conflicting L7 parsers on a port (an HTTP rule on app=other, a Kafka rule on the namespace
 * label team=<t>), so namespace relabels and pod changes are refused alone, with a wildcard allow and a deny on a
 * namespace label around them. After every flush, no flow at a local endpoint (ingress, and egress of a local source)
 * that the maps allow is denied by both the input before the flush and the input after it, as the reference evaluator
 * (src/naive/) reads them.
 */
const RUNS = fcRuns(process.env.DISTILL_LONG ? 1000 : 60);
const PODS = [
  { ns: 'x', name: 'server', ip: '10.0.0.1', local: true },
  { ns: 'c', name: 'p0', ip: '10.0.0.2', local: false },
  { ns: 'c', name: 'p1', ip: '10.0.0.3', local: true },
  { ns: 'c', name: 'p2', ip: '10.0.0.4', local: true },
] as const;

type Op =
  | { readonly k: 'ns'; readonly team: string | null }
  | { readonly k: 'pod'; readonly pod: number; readonly app: string }
  | { readonly k: 'deny'; readonly team: string | null }
  | { readonly k: 'http'; readonly on: boolean }
  | { readonly k: 'kafka'; readonly team: string | null };

const team = fc.constantFrom('a', 'b', null);
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ k: fc.constant('ns' as const), team }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('pod' as const), pod: fc.integer({ min: 1, max: 3 }), app: fc.constantFrom('client', 'other') }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('deny' as const), team }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('http' as const), on: fc.constant(true) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('http' as const), on: fc.constant(false) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('kafka' as const), team }) },
);

const { item, set: setObject, inputState: readInput } = objectHistory();
const teamSel = (t: string) => ({ matchLabels: { 'k8s:io.cilium.k8s.namespace.labels.team': t } });
const ccnp = (name: string, spec: Record<string, unknown>) => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name }, spec });
const l7 = (name: string, selector: Record<string, unknown>, rules: Record<string, unknown>) => ccnp(name, { endpointSelector: selector, ingress: [{ fromEntities: ['all'], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }], rules }] }] });

function applyOp(objects: Objects, o: Op): WatchItem {
  const set = (key: string, object: Record<string, unknown> | null): WatchItem => setObject(objects, key, object, () => ccnp(key, {}));
  switch (o.k) {
    case 'ns':
      return set('ns/c', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'c', labels: o.team === null ? {} : { team: o.team } } });
    case 'pod':
      return set(`pod/${o.pod}`, podObject(o.pod, o.app));
    case 'deny':
      return set('deny-team', o.team === null ? null : ccnp('deny-team', { endpointSelector: { matchLabels: { app: 'server' } }, ingressDeny: [{ fromEndpoints: [teamSel(o.team)] }] }));
    case 'http':
      return set('http-other', o.on ? l7('http-other', { matchLabels: { app: 'other' } }, { http: [{ method: 'GET' }] }) : null);
    case 'kafka':
      return set('kafka-team', o.team === null ? null : l7('kafka-team', teamSel(o.team), { kafka: [{ topic: 't' }] }));
  }
}

function podObject(i: number, app: string): Record<string, unknown> {
  const p = PODS[i] as (typeof PODS)[number];
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name: p.name, namespace: p.ns, labels: { app } }, spec: { nodeName: p.local ? 'n1' : 'n2', containers: [] }, status: { phase: 'Running', podIP: p.ip } };
}

/** The input as the reference evaluator reads it. */
const inputState = (objects: Objects): ClusterState => readInput(objects, { namespaces: new Map(), pods: new Map(), externals: new Map(), policies: new Map() });

function initial(): Objects {
  const objects: Objects = new Map();
  objects.set('ns/x', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x' } });
  objects.set('ns/c', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'c', labels: { team: 'a' } } });
  objects.set('pod/0', podObject(0, 'server'));
  for (let i = 1; i < PODS.length; i++) objects.set(`pod/${i}`, podObject(i, i === 1 ? 'client' : 'other'));
  objects.set('allow-all', ccnp('allow-all', { endpointSelector: {}, ingress: [{ fromEntities: ['all'] }], egress: [{ toEntities: ['all'] }] }));
  return objects;
}

/** Flows the maps allow that both inputs deny, as `from → to dir`. */
function openings(agent: Agent, backend: MapBackend, before: ClusterState, after: ClusterState): string[] {
  const out: string[] = [];
  const mapAllows = (endpoint: string, peerIp: string, dir: 'ingress' | 'egress'): boolean => {
    const hit = backendLookup(backend, endpoint, agent.engine.identityOfIp(parseIp(peerIp)), dir, 6, 80);
    return hit !== undefined && !hit.entry.deny;
  };
  const inputAllows = (s: ClusterState, from: string, to: string, dir: 'ingress' | 'egress'): boolean => {
    const d = decideFlow(s, { from, to, port: 80, protocol: 'TCP' });
    return (dir === 'ingress' ? d.ingress : d.egress)?.allowed ?? true;
  };
  for (const src of PODS) {
    for (const dst of PODS) {
      if (src === dst) continue;
      const from = `${src.ns}/${src.name}`;
      const to = `${dst.ns}/${dst.name}`;
      for (const [dir, endpoint, peer, local] of [['ingress', to, src.ip, dst.local], ['egress', from, dst.ip, src.local]] as const) {
        if (!local || !mapAllows(endpoint, peer, dir)) continue;
        if (!inputAllows(before, from, to, dir) && !inputAllows(after, from, to, dir)) out.push(`${from} → ${to} ${dir}`);
      }
    }
  }
  return out;
}

describe('2430: refused namespace relabels and pods never open a flow both inputs deny', () => {
  it('random histories through the agent', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 3 }), fc.array(fc.array(op, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 10 }), (start, steps) => {
        const objects = initial();
        for (const o of start) applyOp(objects, o);
        const { agent, backend, settle } = settledAgent();
        settle([...objects.values()].map((o) => item('ADDED', o)));
        let before = inputState(objects);
        for (const ops of steps) {
          const items = ops.map((o) => applyOp(objects, o));
          settle(items);
          const after = inputState(objects);
          expect(openings(agent, backend, before, after)).toEqual([]);
          before = after;
        }
      }),
      { numRuns: RUNS, ...fcReplay(20261202) },
    );
  });
});
