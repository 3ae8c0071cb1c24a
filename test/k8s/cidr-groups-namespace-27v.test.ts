import { describe, expect, it } from 'vitest';
import { parseIp } from '../../src/model/cidr.js';
import { rollingMirrorAgent } from './mirror-agent.js';

/**
 * Review 27v of fix2172 (docs/attack-findings-27v.md): an allow whose `any:` pod-namespace selector also
 * selects CIDR-group prefixes (src/policy/cilium-scope.ts `groupReading`, mode `all`: every value of the key
 * Cilium may hold must match) while another group on the same prefix cannot be read. Cilium reads that group
 * (it is a valid object to Cilium), so the prefix's identity may carry its value of the key
 * (pkg/ipcache/metadata.go merges the labels of the resources on one prefix); distill does not know the value,
 * so an allow must not admit the prefix then (as the cidrGroupSelector peers read as their stand-in while a
 * group cannot be read: src/k8s/engine-batches.ts).
 */
type Obj = Record<string, unknown>;
const NS = 'io.kubernetes.pod.namespace';
const line = (type: string, object: Obj): string => JSON.stringify({ type, object });
const md = (name: string, rv: number, extra: Obj = {}): Obj => ({ name, resourceVersion: String(rv), ...extra });
const group = (name: string, rv: number, cidrs: readonly string[], labels: Readonly<Record<string, string>>, spec: Obj = {}): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumCIDRGroup', metadata: md(name, rv, { labels }), spec: { externalCIDRs: cidrs, ...spec } });
const namespace: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: md('x', 2) };
const pod = (name: string, ip: string, app: string): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: md(name, 3, { namespace: 'x', labels: { app } }),
  spec: { nodeName: 'n1', containers: [{ name: 'c', image: 'nginx', ports: [{ containerPort: 80, protocol: 'TCP' }] }] },
  status: { phase: 'Running', podIP: ip },
});
const cnp = (name: string, rv: number, spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: md(name, rv, { namespace: 'x' }), spec });
const POLICIES = [cnp('client', 12, { endpointSelector: { matchLabels: { app: 'client' } }, egress: [{ toEndpoints: [{ matchLabels: { [NS]: 'x' } }] }] })];

function node() {
  const { feed, engine } = rollingMirrorAgent({}, { cidrGroups: true });
  const verdict = (podName: string, ip: string, dir: 'ingress' | 'egress'): string => {
    const hit = engine.lookup(podName, engine.identityOfIp(parseIp(ip)), dir, 6, 80);
    return hit === undefined ? 'none' : hit.entry.deny ? 'deny' : 'allow';
  };
  feed(line('ADDED', namespace), line('ADDED', pod('client', '10.0.0.2', 'client')), ...POLICIES.map((p) => line('ADDED', p)));
  return { feed, verdict };
}

describe('review 27v (2324): an `any:` namespace allow while a group on the same prefix cannot be read', () => {
  it('control: both groups read, values x and y on one prefix: the allow does not admit it', () => {
    const n = node();
    n.feed(line('ADDED', group('gx', 20, ['198.51.100.128/25'], { [NS]: 'x' })), line('ADDED', group('gy', 21, ['198.51.100.128/25'], { [NS]: 'y' })));
    expect(n.verdict('x/client', '198.51.100.200', 'egress')).toBe('none');
  });
  it('the y group turns unreadable (a field distill does not know): the allow still does not admit the prefix', () => {
    const n = node();
    n.feed(line('ADDED', group('gx', 20, ['198.51.100.128/25'], { [NS]: 'x' })), line('ADDED', group('gy', 21, ['198.51.100.128/25'], { [NS]: 'y' })));
    n.feed(line('MODIFIED', group('gy', 22, ['198.51.100.128/25'], { [NS]: 'y' }, { futureField: true })));
    expect(n.verdict('x/client', '198.51.100.200', 'egress')).toBe('none');    // Read again, now labelled x too: the allow admits the prefix (the group peer is read again).
    n.feed(line('MODIFIED', group('gy', 23, ['198.51.100.128/25'], { [NS]: 'x' })));
    expect(n.verdict('x/client', '198.51.100.200', 'egress')).toBe('allow');
  });
  it('a group created unreadable next to the x group: the allow does not admit the prefix', () => {
    const n = node();
    n.feed(line('ADDED', group('gx', 20, ['198.51.100.128/25'], { [NS]: 'x' })), line('ADDED', group('gy', 21, ['198.51.100.0/24'], { [NS]: 'y' }, { futureField: true })));
    expect(n.verdict('x/client', '198.51.100.200', 'egress')).toBe('none');
  });
});
