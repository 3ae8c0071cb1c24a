import { describe, expect, it } from 'vitest';
import { mirrorAgent } from './mirror-agent.js';

/**
 * Finding 2462 (docs/attack-findings-28d.md): a pod distill could not read the first time it saw it was nothing, so
 * its addresses read as world, which a wildcard allow admits past a deny on its labels. Cilium reads it (its
 * `ValidIPs` takes every address of `podIP` and `podIPs`). Now it is held fail-closed at the addresses that still
 * parse, as 27q holds a pod whose update cannot be read. Only a source Kubernetes validation would refuse sends one
 * (here: two IPv4 addresses in `status.podIPs`). On the base the first two fail (`expected 'allow' to be 'deny'`: world under the wildcard allow).
 */
type Obj = Record<string, unknown>;
const ev = (type: string, object: Obj): string => JSON.stringify({ type, object });
const pod = (name: string, node: string, ips: string[], app: string, rv: number, extra: Obj = {}): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'x', resourceVersion: String(rv), labels: { app } },
  spec: { nodeName: node, serviceAccountName: 'default', containers: [{ name: 'c', image: 'i' }] },
  status: { phase: 'Running', podIP: ips[0], podIPs: ips.map((ip) => ({ ip })), ...extra },
});
const ccnp = (name: string, spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name, resourceVersion: '5' }, spec: { endpointSelector: { matchLabels: { app: 'server' } }, ...spec } });

/** The verdict for `ip` at x/server, an address without an ipcache entry read as world (2), as the datapath does. */
function verdictOf(a: ReturnType<typeof mirrorAgent>, ip: string): string {
  const id = a.engine.ipcache().find((e) => e.prefix === `${ip}/32`)?.identity ?? 2;
  const hit = a.engine.lookup('x/server', id, 'ingress', 6, 80);
  return hit === undefined ? 'none' : hit.entry.deny ? 'deny' : 'allow';
}

function cluster() {
  const a = mirrorAgent();
  a.step('pods', ev('ADDED', pod('server', 'n1', ['10.0.0.1'], 'server', 10)));
  a.step('policies', ev('ADDED', ccnp('allow-all', { ingress: [{ fromEntities: ['all'] }] })), ev('ADDED', ccnp('deny-evil', { ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'evil' } }] }] })));
  return a;
}

describe('a pod never readable is held fail-closed where its addresses parse (2462)', () => {
  it('2462. evil re-created at its address in one batch, unreadable: denied before and after, and in between', () => {
    const a = cluster();
    a.step('pods', ev('ADDED', pod('evil', 'n2', ['10.0.0.9'], 'evil', 11)));
    expect(verdictOf(a, '10.0.0.9')).toBe('deny');
    a.step('pods', ev('DELETED', pod('evil', 'n2', ['10.0.0.9'], 'evil', 12)), ev('ADDED', pod('evil2', 'n2', ['10.0.0.9', '10.0.0.10'], 'evil', 13)));
    expect(verdictOf(a, '10.0.0.9')).toBe('deny');
    expect(a.mirror.counts.invalid).toBe(1);
    // Readable again: the pod's own reading.
    a.step('pods', ev('MODIFIED', pod('evil2', 'n2', ['10.0.0.9'], 'evil', 14)));
    expect(verdictOf(a, '10.0.0.9')).toBe('deny');
    a.step('pods', ev('MODIFIED', pod('evil2', 'n2', ['10.0.0.9'], 'good', 15)));
    expect(verdictOf(a, '10.0.0.9')).toBe('allow');
  });

  it('2462. the same in a relist: an unreadable listed pod is held fail-closed', () => {
    const a = cluster();
    a.step('pods', JSON.stringify({ kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: '20' }, items: [pod('server', 'n1', ['10.0.0.1'], 'server', 10), pod('evil', 'n2', ['10.0.0.9', '10.0.0.10'], 'evil', 19)] }));
    expect(verdictOf(a, '10.0.0.9')).toBe('deny');
  });

  it('2462. nothing when no address parses, or when it would be no endpoint anyway (terminal phase)', () => {
    const a = cluster();
    a.step('pods', ev('ADDED', pod('gone', 'n2', ['10.0.0.7', '10.0.0.8'], 'evil', 11, { phase: 'Succeeded' })), ev('ADDED', pod('bad', 'n2', ['not-an-ip'], 'evil', 12)));
    expect(verdictOf(a, '10.0.0.7')).toBe('allow');
    expect(a.engine.ipcache().some((e) => e.prefix.startsWith('10.0.0.7/'))).toBe(false);
  });
});
