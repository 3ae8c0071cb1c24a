import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BpfBackend, bpfUnavailableReason } from '../../src/backend/bpf.js';
import type { MapBackend } from '../../src/backend/backend.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';
import { UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';
import { settledAgent } from './settled-agent.js';

/**
 * Finding 2430 (27q's open question): a namespace relabel the engine refuses alone kept the namespace's last labels,
 * and its pods the identities of those labels, while the policy changes around it committed. Namespace c holds
 * c/client (remote, n2) and c/other (local, n1); x/server is local. `allow-all` admits every peer; `deny-team`
 * denies x/server's ingress from pods of namespaces labelled team=<t>. Two CCNPs give c/other port 80 with an HTTP
 * rule (app=other) and with a Kafka rule (namespaces team=b): once c is team=b they conflict
 * (pkg/policy/l4.go `mergePortProto` "cannot merge conflicting L7 parsers"), so the engine refuses c's relabel.
 * Old input: c team=a, deny team=a (client → server denied). New input: c team=b, deny team=b (denied). The
 * engine held deny team=b with c at team=a: client → server allowed, which both inputs deny.
 */
let rv = 1;
const meta = (name: string, extra: Record<string, unknown> = {}) => ({ name, resourceVersion: String(rv++), ...extra });
const namespace = (type: 'ADDED' | 'MODIFIED', name: string, labels: Record<string, string>): WatchItem => ({ type, object: { apiVersion: 'v1', kind: 'Namespace', metadata: meta(name, { labels }) } });
const pod = (ns: string, name: string, ip: string, node: string): WatchItem => ({
  type: 'ADDED',
  object: { apiVersion: 'v1', kind: 'Pod', metadata: meta(name, { namespace: ns, labels: { app: name } }), spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip } },
});
const ccnp = (type: 'ADDED' | 'MODIFIED', name: string, spec: Record<string, unknown>): WatchItem => ({ type, object: { apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: meta(name), spec } });
const team = (t: string) => ({ matchLabels: { 'k8s:io.cilium.k8s.namespace.labels.team': t } });
const allowAll = ccnp('ADDED', 'allow-all', { endpointSelector: {}, ingress: [{ fromEntities: ['all'] }], egress: [{ toEntities: ['all'] }] });
const denyTeam = (type: 'ADDED' | 'MODIFIED', t: string) => ccnp(type, 'deny-team', { endpointSelector: { matchLabels: { app: 'server' } }, ingressDeny: [{ fromEndpoints: [team(t)] }] });
const l7 = (name: string, selector: Record<string, unknown>, rules: Record<string, unknown>) =>
  ccnp('ADDED', name, { endpointSelector: selector, ingress: [{ fromEntities: ['all'], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }], rules }] }] });
const httpOther = l7('http-other', { matchLabels: { app: 'other' } }, { http: [{ method: 'GET' }] });
const kafkaTeamB = l7('kafka-team-b', team('b'), { kafka: [{ topic: 't' }] });

function run(backend?: MapBackend) {
  const { agent, settle, decide } = settledAgent(backend ? { backend } : {});
  settle([
    namespace('ADDED', 'c', { team: 'a' }),
    namespace('ADDED', 'x', {}),
    pod('x', 'server', '10.0.0.1', 'n1'),
    pod('c', 'client', '10.0.0.2', 'n2'),
    pod('c', 'other', '10.0.0.3', 'n1'),
    allowAll,
    denyTeam('ADDED', 'a'),
    httpOther,
    kafkaTeamB,
  ]);
  return { agent, settle, decide };
}

describe('2430: a namespace relabel the engine refuses never leaves a flow open that both inputs deny', () => {
  it('policy change committed, then the relabel refused: client → server stays denied', () => {
    const { agent, settle, decide } = run();
    expect(decide('x/server', '10.0.0.2', 'ingress')).toBe('deny');
    settle([denyTeam('MODIFIED', 'b')]);
    // Between the two changes (c team=a, deny team=b) the cluster itself allows the flow.
    expect(decide('x/server', '10.0.0.2', 'ingress')).toBe('allow');
    settle([namespace('MODIFIED', 'c', { team: 'b' })]);
    expect(agent.summary.refusals).toBeGreaterThan(0);
    expect(decide('x/server', '10.0.0.2', 'ingress')).toBe('deny');
    // Only the pod the engine cannot enforce under the new labels stays held fail-closed; client has team=b's identity.
    expect(agent.engine.identityOfIp(parseIp('10.0.0.3'))).toBe(UNALLOCATED_POD_IDENTITY);
    expect(agent.engine.identityOfIp(parseIp('10.0.0.2'))).toBe(agent.engine.identityOfPod('c/client'));
    expect(agent.mirror.refusedObjects()).toEqual(['Pod/c/other']);
    for (const peer of ['10.0.0.1', '192.0.2.9']) expect(decide('c/other', peer, 'ingress')).toBe('deny');
    // The rule proper: at a later change both inputs (c team=b, deny team=b) deny the flow.
    settle([namespace('ADDED', 'unrelated', {})]);
    expect(decide('x/server', '10.0.0.2', 'ingress')).toBe('deny');
  });
  it('the relabel refused first, then the policy change: client → server stays denied', () => {
    const { agent, settle, decide } = run();
    settle([namespace('MODIFIED', 'c', { team: 'b' })]);
    const between = decide('x/server', '10.0.0.2', 'ingress');
    const otherBetween = agent.engine.identityOfIp(parseIp('10.0.0.3'));
    settle([denyTeam('MODIFIED', 'b')]);
    expect(decide('x/server', '10.0.0.2', 'ingress')).toBe('deny');
    expect(agent.summary.refusals).toBeGreaterThan(0);
    // Between them (c team=b under deny team=a) the cluster allows the flow, and the engine reads it so (the base over-denied there).
    expect(between).toBe('allow');
    expect(otherBetween).toBe(UNALLOCATED_POD_IDENTITY);
  });
  it('once the conflict goes, other is read as written under the new labels', () => {
    const { agent, settle, decide } = run();
    settle([denyTeam('MODIFIED', 'b'), namespace('MODIFIED', 'c', { team: 'b' })]);
    expect(decide('x/server', '10.0.0.2', 'ingress')).toBe('deny');
    settle([{ type: 'DELETED', object: (httpOther as { object: unknown }).object } as WatchItem]);
    expect(agent.engine.identityOfIp(parseIp('10.0.0.3'))).toBe(agent.engine.identityOfPod('c/other'));
    expect(decide('x/server', '10.0.0.3', 'ingress')).toBe('deny');
    expect(decide('c/other', '10.0.0.1', 'ingress')).toBe('allow');
    expect(agent.mirror.refusedObjects()).toEqual([]);
  });
});

const unavailable = bpfUnavailableReason();
const PIN_ROOT = `/sys/fs/bpf/distill-test-a28ns-${process.pid}`;
afterAll(() => {
  if (!unavailable) rmSync(PIN_ROOT, { recursive: true, force: true });
});
(unavailable ? describe.skip : describe)('2430 in pinned kernel maps', () => {
  it('the relabel refused after the policy change: client → server denied by the kernel maps, other at 255', () => {
    const backend = new BpfBackend({ pinDir: join(PIN_ROOT, 'a') });
    try {
      const { agent, settle, decide } = run(backend);
      settle([denyTeam('MODIFIED', 'b')]);
      settle([namespace('MODIFIED', 'c', { team: 'b' })]);
      settle([namespace('ADDED', 'unrelated', {})]);
      expect(decide('x/server', '10.0.0.2', 'ingress')).toBe('deny');
      expect(agent.engine.identityOfIp(parseIp('10.0.0.3'))).toBe(UNALLOCATED_POD_IDENTITY);
      expect(decide('x/server', '10.0.0.3', 'ingress')).toBe('deny');
      expect(decide('x/server', '192.0.2.9', 'ingress')).toBe('allow');
    } finally {
      backend.close();
    }
  });
});
