import { describe, expect, it } from 'vitest';
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
