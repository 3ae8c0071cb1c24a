import fc from 'fast-check';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Agent, type AgentIpcache } from '../../src/agent/agent.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';
import { LOCAL_IDENTITY_FLAG, RESERVED_IDENTITIES, UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';

/**
 * Finding 2220 (docs/attack-findings-27c.md): with `--identities crd|etcd` a remote pod whose labels have no
 * CiliumIdentity yet (a pod or namespace relabelled before the new label set's id exists) was 255 in the ipcache,
 * denied by every local map. Cilium's ipcache takes a remote pod's number from its CiliumEndpoint
 * (pkg/k8s/watchers/cilium_endpoint.go `endpointUpdated`: `status.identity.id` for each `ipv4`/`ipv6` of
 * `status.networking.addressing`, source custom-resource, skipped while `status.networking.node` is empty), which
 * keeps the old number until the pod's node allocates the new one. The agent now reads CiliumEndpoint objects: such
 * a pod takes its endpoint's number where it is a readable external identity, and keeps 255 under every hostile
 * endpoint (an unknown, reserved, node-local or unreadable number, another pod's or a local pod's or the node's
 * address, another namespace, too many addresses, no node IP).
 *
 * The objects are in the wire format of the API (`kubectl get ciliumendpoint -o json`, cilium.io/v2 CiliumEndpoint:
 * pkg/k8s/apis/cilium.io/v2/types.go `EndpointStatus`, `EndpointIdentity`, `EndpointNetworking`, `AddressPair`).
 */
const logger = pino({ level: 'silent' });
let rv = 1;
const meta = (name: string, extra: Record<string, unknown> = {}) => ({ name, resourceVersion: String(rv++), ...extra });
const ns = (name: string): WatchItem => ({ type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: meta(name) } });
const pod = (name: string, node: string, ip: string, labels: Record<string, string> = { app: name }, namespace = 'shop'): WatchItem => ({
  type: 'ADDED',
  object: { apiVersion: 'v1', kind: 'Pod', metadata: meta(name, { namespace, labels }), spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] } },
});
const podLabels = (app: string, namespace = 'shop'): Record<string, string> => ({
  'k8s:app': app,
  'k8s:io.kubernetes.pod.namespace': namespace,
  [`k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name`]: namespace,
  'k8s:io.cilium.k8s.policy.cluster': 'default',
  'k8s:io.cilium.k8s.policy.serviceaccount': 'default',
});
const identity = (type: 'ADDED' | 'MODIFIED' | 'DELETED', id: number, labels: unknown): WatchItem => ({
  type,
  object: { apiVersion: 'cilium.io/v2', kind: 'CiliumIdentity', metadata: meta(String(id)), 'security-labels': labels },
});
/** A CiliumEndpoint as its agent writes it. */
const cep = (type: 'ADDED' | 'MODIFIED' | 'DELETED', name: string, id: unknown, addressing: unknown[], opts: { namespace?: string; node?: string | null } = {}): WatchItem => ({
  type,
  object: {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumEndpoint',
    metadata: meta(name, {
      namespace: opts.namespace ?? 'shop',
      uid: `uid-cep-${name}`,
      generation: 1,
      ownerReferences: [{ apiVersion: 'v1', kind: 'Pod', name, uid: `uid-pod-${name}`, blockOwnerDeletion: true }],
    }),
    status: {
      id: 1844,
      identity: { id, labels: ['k8s:app=client', 'k8s:io.kubernetes.pod.namespace=shop'] },
      networking: { addressing, ...(opts.node === null ? {} : { node: opts.node ?? '192.0.2.20' }) },
      encryption: {},
      'named-ports': [],
      state: 'ready',
    },
  },
});

const WEB = '10.0.0.2';
const CLIENT = '10.0.1.3';
const OTHER = '10.0.1.4';
const NODE2 = '192.0.2.20';

/** web admits app=client only (TCP/80 from anywhere else is denied). */
const policy: WatchItem = {
  type: 'ADDED',
  object: {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: meta('web', { namespace: 'shop' }),
    spec: { endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }] }] },
  },
};
const node2: WatchItem = {
  type: 'ADDED',
  object: { apiVersion: 'v1', kind: 'Node', metadata: meta('n2'), spec: {}, status: { addresses: [{ type: 'InternalIP', address: NODE2 }] } },
};

function agent() {
  const backend = new MemoryBackend();
  /** The datapath's ipcache as the agent writes it: only the deltas reach it after the first sync. */
  const kernel = new Map<string, number>();
  const ipcache: AgentIpcache = {
    apply(deltas) {
      for (const d of deltas) {
        if (d.op === 'delete') kernel.delete(d.prefix);
        else kernel.set(d.prefix, d.identity);
      }
    },
    sync(wanted) {
      kernel.clear();
      for (const [k, v] of wanted) kernel.set(k, v);
      return wanted.size;
    },
    close() {},
  };
  const a = new Agent({ node: 'n1', watch: [], backend, ipcache, logger, registry: new Registry(), identities: 'external' });
  const feed = (...items: WatchItem[]): void => {
    for (const item of items) a.mirror.observe(item, 'test');
    a.flush();
    expect(a.summary.refusals).toBe(0);
  };
  const idOf = (ip: string): number => a.engine.identityOfIp(parseIp(ip));
  /** web's TCP/80 verdict for a packet from `ip`: the ipcache's identity, then the map. */
  const from = (ip: string): 'allow' | 'deny' => {
    const hit = backendLookup(backend, 'shop/web', idOf(ip), 'ingress', 6, 80);
    return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
  };
  /** The kernel's ipcache (what the agent wrote), by prefix; checked against the engine's own view. */
  const kernelIpcache = (): Map<string, number> => {
    const pods = (m: Map<string, number>) => new Map([...m].filter(([k]) => k.startsWith('10.')));
    expect(pods(kernel)).toEqual(pods(new Map(a.engine.ipcache().map((e) => [e.prefix, e.identity]))));
    return new Map(kernel);
  };
  /** client relabelled (rev=2) before its new label set has an id: its CiliumEndpoint still names 301 (app=client). */
  const start = (): void => feed(ns('shop'), identity('ADDED', 300, podLabels('web')), identity('ADDED', 301, podLabels('client')), node2, pod('web', 'n1', WEB), policy, pod('client', 'n2', CLIENT, { app: 'client', rev: '2' }));
  return { a, feed, idOf, from, kernelIpcache, start };
}

describe('2220. a remote pod without an identity for its labels takes its CiliumEndpoint\'s number', () => {
  it('relabelled before its new id exists: its endpoint\'s number, as Cilium\'s ipcache (was 255, denied)', () => {
    const { a, feed, idOf, from, kernelIpcache, start } = agent();
    start();
    expect(idOf(CLIENT)).toBe(UNALLOCATED_POD_IDENTITY);
    expect(from(CLIENT)).toBe('deny');
    feed(cep('ADDED', 'client', 301, [{ ipv4: CLIENT }]));
    expect(idOf(CLIENT)).toBe(301);
    expect(a.engine.identityOfPod('shop/client')).toBe(301);
    expect(kernelIpcache().get(`${CLIENT}/32`)).toBe(301);
    expect(from(CLIENT)).toBe('allow');
    // Its node allocates the new id: the labels' id wins (the endpoint is updated after, with the same number).
    feed(identity('ADDED', 305, { ...podLabels('client'), 'k8s:rev': '2' }));
    expect(idOf(CLIENT)).toBe(305);
    expect(from(CLIENT)).toBe('allow');
    // The new id deleted again: back to the endpoint's number.
    feed(identity('DELETED', 305, { ...podLabels('client'), 'k8s:rev': '2' }));
    expect(idOf(CLIENT)).toBe(301);
    // The endpoint deleted: nothing says which number it has, 255.
    feed(cep('DELETED', 'client', 301, [{ ipv4: CLIENT }]));
    expect(idOf(CLIENT)).toBe(UNALLOCATED_POD_IDENTITY);
    expect(from(CLIENT)).toBe('deny');
  });

  it('the endpoint before the pod, and the number\'s CiliumIdentity deleted and re-created', () => {
    const { feed, idOf, from, kernelIpcache } = agent();
    feed(ns('shop'), identity('ADDED', 300, podLabels('web')), identity('ADDED', 301, podLabels('client')), pod('web', 'n1', WEB), policy);
    feed(cep('ADDED', 'client', 301, [{ ipv4: CLIENT }]));
    feed(pod('client', 'n2', CLIENT, { app: 'client', rev: '2' }));
    expect(idOf(CLIENT)).toBe(301);
    feed(identity('DELETED', 301, podLabels('client')));
    expect(idOf(CLIENT)).toBe(UNALLOCATED_POD_IDENTITY);
    expect(kernelIpcache().get(`${CLIENT}/32`)).toBe(UNALLOCATED_POD_IDENTITY);
    expect(from(CLIENT)).toBe('deny');
    feed(identity('ADDED', 301, podLabels('client')));
    expect(idOf(CLIENT)).toBe(301);
    expect(from(CLIENT)).toBe('allow');
  });

  it('its namespace relabelled before the new id exists: the endpoint\'s number (namespace labels may lag, its name may not)', () => {
    const { feed, idOf, from } = agent();
    feed(ns('shop'), identity('ADDED', 300, podLabels('web')), identity('ADDED', 301, podLabels('client')), pod('web', 'n1', WEB), policy, pod('client', 'n2', CLIENT));
    expect(idOf(CLIENT)).toBe(301);
    feed(cep('ADDED', 'client', 301, [{ ipv4: CLIENT }]));
    // The namespace gains a label: every pod's label set is new, web's id too (300 → 314) and client's has none yet.
    feed({ type: 'MODIFIED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: meta('shop', { labels: { team: 'a' } }) } }, identity('ADDED', 314, { ...podLabels('web'), 'k8s:io.cilium.k8s.namespace.labels.team': 'a' }));
    expect(idOf(CLIENT)).toBe(301);
    expect(from(CLIENT)).toBe('allow');
  });

  it('a pod whose labels have an id keeps it (the endpoint is read only where distill had no answer)', () => {
    const { feed, idOf } = agent();
    feed(ns('shop'), identity('ADDED', 300, podLabels('web')), identity('ADDED', 301, podLabels('client')), identity('ADDED', 302, podLabels('db')), pod('web', 'n1', WEB), policy, pod('db', 'n2', OTHER, { app: 'db' }));
    feed(cep('ADDED', 'db', 301, [{ ipv4: OTHER }]));
    expect(idOf(OTHER)).toBe(302);
  });
});

describe('2221–2227. hostile CiliumEndpoints keep the fail-closed 255', () => {
  const cases: [string, (f: ReturnType<typeof agent>) => void][] = [
    ['an identity number no CiliumIdentity holds', ({ feed }) => feed(cep('ADDED', 'client', 999, [{ ipv4: CLIENT }]))],
    ['a reserved number (host)', ({ feed }) => feed(cep('ADDED', 'client', RESERVED_IDENTITIES.host, [{ ipv4: CLIENT }]))],
    ['a reserved number (world)', ({ feed }) => feed(cep('ADDED', 'client', RESERVED_IDENTITIES.world, [{ ipv4: CLIENT }]))],
    ['a reserved number (init)', ({ feed }) => feed(cep('ADDED', 'client', RESERVED_IDENTITIES.init, [{ ipv4: CLIENT }]))],
    ['the unallocated number itself', ({ feed }) => feed(cep('ADDED', 'client', UNALLOCATED_POD_IDENTITY, [{ ipv4: CLIENT }]))],
    ['a node-local (CIDR) number', ({ feed }) => feed(cep('ADDED', 'client', LOCAL_IDENTITY_FLAG + 1, [{ ipv4: CLIENT }]))],
    ['a number past uint32 (Cilium truncates it to 301)', ({ feed }) => feed(cep('ADDED', 'client', 2 ** 32 + 301, [{ ipv4: CLIENT }]))],
    ['a negative, fractional or text number', ({ feed }) => feed(cep('ADDED', 'client', -301, [{ ipv4: CLIENT }]), cep('ADDED', 'client', 301.5, [{ ipv4: CLIENT }]), cep('ADDED', 'client', '301', [{ ipv4: CLIENT }]))],
    ['an unreadable (stand-in) identity', ({ feed }) => feed(identity('ADDED', 306, { ...podLabels('client'), 'k8s:note': 'x'.repeat(600) }), cep('ADDED', 'client', 306, [{ ipv4: CLIENT }]))],
    ['a readable number of another namespace\'s pods (the pod would read as theirs)', ({ feed }) => feed(ns('kube-system'), identity('ADDED', 310, podLabels('client', 'kube-system')), cep('ADDED', 'client', 310, [{ ipv4: CLIENT }]))],
    ['a readable number of another service account', ({ feed }) => feed(identity('ADDED', 311, { ...podLabels('client'), 'k8s:io.cilium.k8s.policy.serviceaccount': 'admin' }), cep('ADDED', 'client', 311, [{ ipv4: CLIENT }]))],
    ['a readable number of another cluster', ({ feed }) => feed(identity('ADDED', 312, { ...podLabels('client'), 'k8s:io.cilium.k8s.policy.cluster': 'other' }), cep('ADDED', 'client', 312, [{ ipv4: CLIENT }]))],
    ['a readable number without namespace labels', ({ feed }) => feed(identity('ADDED', 313, { 'k8s:app': 'client' }), cep('ADDED', 'client', 313, [{ ipv4: CLIENT }]))],
    ['another pod\'s endpoint listing its address', ({ feed }) => feed(cep('ADDED', 'ghost', 301, [{ ipv4: CLIENT }]))],
    ['its name in another namespace', ({ feed }) => feed(ns('other'), cep('ADDED', 'client', 301, [{ ipv4: CLIENT }], { namespace: 'other' }))],
    ['its own endpoint not listing its address', ({ feed }) => feed(cep('ADDED', 'client', 301, [{ ipv4: OTHER }]))],
    ['no node IP (Cilium upserts nothing)', ({ feed }) => feed(cep('ADDED', 'client', 301, [{ ipv4: CLIENT }], { node: null }))],
    ['an unparsable node IP', ({ feed }) => feed(cep('ADDED', 'client', 301, [{ ipv4: CLIENT }], { node: 'n2' }))],
    ['no identity (Cilium: unmanaged)', ({ feed }) => feed(cep('ADDED', 'client', undefined, [{ ipv4: CLIENT }]))],
    ['too many address pairs', ({ feed }) => feed(cep('ADDED', 'client', 301, [{ ipv4: CLIENT }, ...Array.from({ length: 8 }, (_, i) => ({ ipv4: `10.9.0.${i + 1}` }))]))],
    ['a million address pairs', ({ feed }) => feed(cep('ADDED', 'client', 301, Array.from({ length: 1_000_000 }, () => ({ ipv4: CLIENT }))))],
    ['an unparsable address beside its own', ({ feed }) => feed(cep('ADDED', 'client', 301, [{ ipv4: CLIENT }, { ipv6: 'zz::1' }]))],
  ];
  for (const [what, apply] of cases) {
    it(what, () => {
      const f = agent();
      f.start();
      apply(f);
      expect(f.idOf(CLIENT)).toBe(UNALLOCATED_POD_IDENTITY);
      expect(f.from(CLIENT)).toBe('deny');
      expect(f.kernelIpcache().get(`${CLIENT}/32`)).toBe(UNALLOCATED_POD_IDENTITY);
    });
  }

  it('an update distill cannot read drops the endpoint (its old number may be stale): 255 again', () => {
    const { feed, idOf, start } = agent();
    start();
    feed(cep('ADDED', 'client', 301, [{ ipv4: CLIENT }]));
    expect(idOf(CLIENT)).toBe(301);
    feed(cep('MODIFIED', 'client', 2 ** 40, [{ ipv4: CLIENT }]));
    expect(idOf(CLIENT)).toBe(UNALLOCATED_POD_IDENTITY);
  });

  it('a local pod: its endpoint is never read (its own agent\'s number is not in the state), 255', () => {
    const { feed, idOf } = agent();
    feed(ns('shop'), identity('ADDED', 301, podLabels('client')), pod('client', 'n1', CLIENT, { app: 'client', rev: '2' }));
    feed(cep('ADDED', 'client', 301, [{ ipv4: CLIENT }], { node: '192.0.2.10' }));
    expect(idOf(CLIENT)).toBe(UNALLOCATED_POD_IDENTITY);
  });

  it('the node\'s address: a node stays remote-node, whatever endpoint lists it', () => {
    const { feed, idOf, start } = agent();
    start();
    feed(cep('ADDED', 'client', 301, [{ ipv4: CLIENT }, { ipv4: NODE2 }]));
    expect(idOf(NODE2)).toBe(RESERVED_IDENTITIES['remote-node']);
    expect(idOf(CLIENT)).toBe(301);
  });

  it('two endpoints claiming one address: only the pod\'s own counts', () => {
    const { feed, idOf, start } = agent();
    start();
    feed(identity('ADDED', 302, podLabels('db')), cep('ADDED', 'ghost', 302, [{ ipv4: CLIENT }]), cep('ADDED', 'client', 301, [{ ipv4: CLIENT }]), cep('MODIFIED', 'ghost', 302, [{ ipv4: CLIENT }]));
    expect(idOf(CLIENT)).toBe(301);
  });

  it('prototype names: pods and endpoints named constructor, tostring, hasownproperty', () => {
    const { feed, idOf } = agent();
    feed(ns('constructor'), identity('ADDED', 301, podLabels('client', 'constructor')));
    for (const [i, name] of ['constructor', 'tostring', 'hasownproperty'].entries()) {
      feed(pod(name, 'n2', `10.0.2.${i + 1}`, { app: 'client', rev: '2' }, 'constructor'));
    }
    feed(cep('ADDED', 'constructor', 301, [{ ipv4: '10.0.2.1' }], { namespace: 'constructor' }), cep('ADDED', 'tostring', 999, [{ ipv4: '10.0.2.2' }], { namespace: 'constructor' }));
    expect(idOf('10.0.2.1')).toBe(301);
    expect(idOf('10.0.2.2')).toBe(UNALLOCATED_POD_IDENTITY);
    expect(idOf('10.0.2.3')).toBe(UNALLOCATED_POD_IDENTITY);
  });
});

describe('2228. the ipcache under every order of endpoint, identity and pod events is the one a fresh agent computes', () => {
  it('a property: incremental equals from scratch', () => {
    type Step = { kind: 'cep'; name: 'client' | 'ghost'; id: number; ip: string } | { kind: 'cepDel'; name: 'client' | 'ghost' } | { kind: 'id'; id: 301 | 302; on: boolean } | { kind: 'pod'; labels: 'old' | 'new' };
    const step: fc.Arbitrary<Step> = fc.oneof(
      fc.record({ kind: fc.constant('cep' as const), name: fc.constantFrom('client' as const, 'ghost' as const), id: fc.constantFrom(301, 302, 999, 1, LOCAL_IDENTITY_FLAG + 1), ip: fc.constantFrom(CLIENT, OTHER) }),
      fc.record({ kind: fc.constant('cepDel' as const), name: fc.constantFrom('client' as const, 'ghost' as const) }),
      fc.record({ kind: fc.constant('id' as const), id: fc.constantFrom(301 as const, 302 as const), on: fc.boolean() }),
      fc.record({ kind: fc.constant('pod' as const), labels: fc.constantFrom('old' as const, 'new' as const) }),
    );
    fc.assert(
      fc.property(fc.array(step, { maxLength: 12 }), (steps) => {
        const inc = agent();
        inc.start();
        // The state the steps leave, replayed at once into a fresh agent.
        const ceps = new Map<string, [number, string]>();
        const ids = new Map<number, boolean>([[301, true]]);
        let labels: 'old' | 'new' = 'new';
        const idItem = (id: 301 | 302, on: boolean): WatchItem => identity(on ? 'ADDED' : 'DELETED', id, podLabels(id === 301 ? 'client' : 'db'));
        const podItem = (l: 'old' | 'new'): WatchItem => pod('client', 'n2', CLIENT, l === 'old' ? { app: 'client' } : { app: 'client', rev: '2' });
        for (const s of steps) {
          if (s.kind === 'cep') {
            ceps.set(s.name, [s.id, s.ip]);
            inc.feed(cep('ADDED', s.name, s.id, [{ ipv4: s.ip }]));
          } else if (s.kind === 'cepDel') {
            const had = ceps.get(s.name);
            ceps.delete(s.name);
            if (had) inc.feed(cep('DELETED', s.name, had[0], [{ ipv4: had[1] }]));
          } else if (s.kind === 'id') {
            if ((ids.get(s.id) ?? false) === s.on) continue;
            ids.set(s.id, s.on);
            inc.feed(idItem(s.id, s.on));
          } else {
            labels = s.labels;
            inc.feed(podItem(s.labels));
          }
        }
        const fresh = agent();
        fresh.feed(ns('shop'), identity('ADDED', 300, podLabels('web')), node2, pod('web', 'n1', WEB), policy);
        for (const [id, on] of ids) if (on) fresh.feed(idItem(id as 301 | 302, true));
        fresh.feed(podItem(labels), ...[...ceps].map(([name, [id, ip]]) => cep('ADDED', name, id, [{ ipv4: ip }])));
        expect(inc.kernelIpcache()).toEqual(fresh.kernelIpcache());
        expect(inc.from(CLIENT)).toBe(fresh.from(CLIENT));
        expect(inc.kernelIpcache().get(`${CLIENT}/32`)).toBe(inc.idOf(CLIENT));
      }),
      { numRuns: 60 },
    );
  });
});

describe('2229. with local identities the agent sends no endpoint event (the engine numbers pods itself)', () => {
  it('a CiliumEndpoint naming some number changes nothing, and is no refusal', () => {
    const backend = new MemoryBackend();
    const a = new Agent({ node: 'n1', watch: [], backend, logger, registry: new Registry() });
    const seen: string[] = [];
    const apply = a.engine.apply.bind(a.engine);
    a.engine.apply = (events) => {
      for (const e of events) seen.push(e.type);
      return apply(events);
    };
    for (const item of [ns('shop'), pod('client', 'n2', CLIENT), cep('ADDED', 'client', 301, [{ ipv4: CLIENT }])]) a.mirror.observe(item, 'test');
    a.flush();
    expect(a.summary.refusals).toBe(0);
    expect(seen).toContain('upsertPod');
    expect(seen).not.toContain('upsertEndpoint');
    expect(a.engine.identityOfIp(parseIp(CLIENT))).not.toBe(301);
  });
});
