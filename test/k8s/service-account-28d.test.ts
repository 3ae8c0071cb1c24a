import { describe, expect, it } from 'vitest';
import { traceToWatch } from '../../src/cluster/watch-objects.js';
import { parseTrace } from '../../src/churn/trace.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { ClusterMirror } from '../../src/k8s/mirror.js';
import { mirrorAgent } from './mirror-agent.js';

/**
 * Finding 2460 (docs/attack-findings-28d.md): a pod without `spec.serviceAccountName` got the identity label
 * `io.cilium.k8s.policy.serviceaccount=default`. The ServiceAccount admission plugin sets `default` on every pod but
 * a static pod's mirror pod, which "may not reference service accounts" (kubernetes
 * plugin/pkg/admission/serviceaccount/admission.go `Admit`), and Cilium's `SanitizePodLabels` (pkg/k8s/utils)
 * deletes the key for an empty service account: Cilium's identity of a mirror pod has no service-account label.
 * On the base the first four fail (the third and fourth: an empty `serviceAccountName` made the pod unreadable).
 */
type Obj = Record<string, unknown>;
const ev = (type: string, object: Obj): string => JSON.stringify({ type, object });
const pod = (name: string, node: string, ip: string, app: string, spec: Obj = {}, annotations: Obj = {}): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'x', resourceVersion: '1', labels: { app }, annotations },
  spec: { nodeName: node, containers: [{ name: 'c', image: 'i' }], ...spec },
  status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
});
const mirrorPod = (ip: string): Obj => pod('static-web-n2', 'n2', ip, 'static', {}, { 'kubernetes.io/config.mirror': 'abc' });
const ccnp = (name: string, spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name, resourceVersion: '5' }, spec: { endpointSelector: { matchLabels: { app: 'server' } }, ...spec } });
const SA = 'io.cilium.k8s.policy.serviceaccount';

function cluster() {
  const a = mirrorAgent();
  a.step('pods', ev('ADDED', pod('server', 'n1', '10.0.0.1', 'server', { serviceAccountName: 'default' })), ev('ADDED', mirrorPod('10.0.0.9')), ev('ADDED', pod('web', 'n2', '10.0.0.8', 'web', { serviceAccountName: 'default' })));
  return a;
}

describe('a pod without a service account has no service-account label (2460)', () => {
  it('2460. an allow from the service account `default` does not admit a mirror pod', () => {
    const a = cluster();
    a.step('policies', ev('ADDED', ccnp('allow-default-sa', { ingress: [{ fromEndpoints: [{ matchLabels: { [SA]: 'default' } }] }] })));
    expect(a.verdict('10.0.0.8')).toBe('allow');
    expect(a.verdict('10.0.0.9')).toBe('none');
  });

  it('2460. a deny of pods without a service account denies the mirror pod past an allow of every peer', () => {
    const a = cluster();
    a.step('policies', ev('ADDED', ccnp('allow-all', { ingress: [{ fromEntities: ['all'] }] })), ev('ADDED', ccnp('deny-no-sa', { ingressDeny: [{ fromEndpoints: [{ matchExpressions: [{ key: SA, operator: 'DoesNotExist' }] }] }] })));
    expect(a.verdict('10.0.0.8')).toBe('allow');
    expect(a.verdict('10.0.0.9')).toBe('deny');
  });

  it('2460. the deprecated `spec.serviceAccount` counts when `serviceAccountName` is empty, as the API server converts it', () => {
    const a = mirrorAgent();
    a.step('pods', ev('ADDED', pod('server', 'n1', '10.0.0.1', 'server')), ev('ADDED', pod('old', 'n2', '10.0.0.7', 'old', { serviceAccountName: '', serviceAccount: 'builder' })));
    a.step('policies', ev('ADDED', ccnp('allow-builder', { ingress: [{ fromEndpoints: [{ matchLabels: { [SA]: 'builder' } }] }] })));
    expect(a.verdict('10.0.0.7')).toBe('allow');
  });

  it('2460. any other pod without one has `default`, as the ServiceAccount admission plugin sets it', () => {
    const a = mirrorAgent();
    a.step('pods', ev('ADDED', pod('server', 'n1', '10.0.0.1', 'server')), ev('ADDED', pod('plain', 'n2', '10.0.0.5', 'plain', { serviceAccountName: '' })));
    a.step('policies', ev('ADDED', ccnp('allow-default-sa', { ingress: [{ fromEndpoints: [{ matchLabels: { [SA]: 'default' } }] }] })));
    expect(a.verdict('10.0.0.5')).toBe('allow');
  });

  it('2460. a service account that is not a string leaves the pod unreadable', () => {
    const a = mirrorAgent();
    a.step('pods', ev('ADDED', pod('server', 'n1', '10.0.0.1', 'server')), ev('ADDED', pod('odd', 'n2', '10.0.0.6', 'odd', { serviceAccountName: 7 })));
    expect(a.mirror.counts.invalid).toBe(1);
  });
});

describe('a trace pod without a service account (2460)', () => {
  const header = JSON.stringify({ distillTrace: 1, description: 'mirror pod' });
  const line = (o: Obj): string => JSON.stringify(o);
  const text = [
    header,
    line({ type: 'upsertNamespace', name: 'x', labels: {} }),
    line({ type: 'upsertPod', pod: { namespace: 'x', name: 'server', labels: { app: 'server' }, ip: '10.0.0.1' }, local: true }),
    line({ type: 'upsertPod', pod: { namespace: 'x', name: 'mirror', labels: { app: 'static' }, ip: '10.0.0.9', serviceAccount: '' }, local: false }),
    line({ type: 'upsertPolicy', manifest: ccnp('allow-default-sa', { ingress: [{ fromEndpoints: [{ matchLabels: { [SA]: 'default' } }] }] }) }),
  ].join('\n');

  it('2460. the engine fed the trace and a mirror fed it as watch events (distill cluster) agree: no service-account label', () => {
    const engine = new Engine();
    for (const item of parseTrace(text, 't.jsonl').items) if (item.kind === 'event') engine.apply([item.event]);
    const mirror = new ClusterMirror({ nodeName: 'node-0' });
    const fed = new Engine();
    for (const item of traceToWatch(text, 't.jsonl', 1).items) mirror.observe(item, 'feed');
    const b = mirror.flush();
    fed.apply(b.events as EngineEvent[]);
    b.commit();
    const labelsOf = (e: Engine): string[] | undefined => {
      const id = e.ipcache().find((x) => x.prefix === '10.0.0.9/32')?.identity;
      return id === undefined ? undefined : e.identityLabels(id)?.map((l) => `${l.source}:${l.key}=${l.value}`).sort();
    };
    expect(labelsOf(engine)?.some((l) => l.includes(SA))).toBe(false);
    expect(labelsOf(fed)).toEqual(labelsOf(engine));
  });
});
