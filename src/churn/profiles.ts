import { ciliumPolicy, externalCidr, networkPolicy, PodRecord, seededRandom, TraceBuilder } from './generate.js';

/**
 * Cluster shapes to replay. Each builds an initial state (phase "initial") and then churn (phase
 * "churn"); sources for the shapes are in docs/traces.md.
 */
export interface Profile {
  readonly name: string;
  readonly description: string;
  /** Churn events generated after the initial state unless overridden. */
  readonly churnEvents: number;
  /** Whether `build` honours a scale other than 1 (small is a fixed shape). */
  readonly scalable: boolean;
  build(b: TraceBuilder, scale: number): ProfileShape;
}

/** What churn needs to know about a profile's cluster. */
interface ProfileShape {
  /** A new policy in the profile's style, numbered `i`. */
  policy(i: number): Record<string, unknown>;
  /** Labels and namespace for a new workload (a new identity). */
  newWorkload(i: number): { namespace: string; labels: Record<string, string> };
  /** Whether the n-th pod created lands on this node. */
  isLocal(n: number): boolean;
  /** toFQDNs profiles: churn is DNS answers and clock steps (fqdnChurn) instead of the pod mix. */
  readonly fqdn?: FqdnShape;
  /** CiliumCIDRGroup profiles: a group of this number (a new one past the initial ones); its churn mixes group changes into the pod mix (groupChurn). */
  readonly cidrGroup?: (i: number) => Record<string, unknown>;
}

interface Deployment {
  readonly namespace: string;
  readonly labels: Record<string, string>;
  replicas: number;
}

function deploy(b: TraceBuilder, d: Deployment, isLocal: (n: number) => boolean): void {
  for (let r = 0; r < d.replicas; r++) b.pod(d.namespace, `${d.labels.app}-${r}`, { ...d.labels }, isLocal(b.nextPodIndex()), 'pod-add');
}

const everyNth = (n: number) => (i: number) => i % n === 0;

/** The README's bundled trace: small enough to replay in a second with --verify-every 1. */
const small: Profile = {
  name: 'small',
  description: '3 namespaces, 30 pods (10 local), 12 policies (NetworkPolicy and CiliumNetworkPolicy, L3/L4/CIDR/deny/L7), then 120 churn events',
  churnEvents: 120,
  scalable: false,
  build(b) {
    const isLocal = everyNth(3);
    const nss = ['shop', 'payments', 'monitoring'];
    nss.forEach((ns, i) => b.namespace(ns, { team: `team-${i}`, env: i === 2 ? 'ops' : 'prod' }));
    const apps = ['web', 'api', 'db', 'cache', 'worker'];
    for (const ns of nss) for (const app of apps.slice(0, ns === 'monitoring' ? 2 : 5)) deploy(b, { namespace: ns, labels: { app, tier: app === 'web' ? 'front' : 'back' }, replicas: 2 + (app.length % 2) }, isLocal);
    const policy = (i: number): Record<string, unknown> => {
      const ns = nss[i % 2] as string;
      const app = apps[i % apps.length] as string;
      const peer = apps[(i + 1) % apps.length] as string;
      switch (i % 4) {
        case 0:
          return networkPolicy(ns, `allow-${peer}-to-${app}-${i}`, { podSelector: { matchLabels: { app } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: peer } } }], ports: [{ port: 8080 }] }] });
        case 1:
          return networkPolicy(ns, `egress-${app}-${i}`, { podSelector: { matchLabels: { app } }, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: '203.0.113.0/24' } }], ports: [{ port: 443 }] }, { to: [{ namespaceSelector: {} }] }] });
        case 2:
          return ciliumPolicy(ns, `l7-${app}-${i}`, { endpointSelector: { matchLabels: { app } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: peer } }], toPorts: [{ ports: [{ port: '8080', protocol: 'TCP' }], rules: { http: [{ method: 'GET', path: '/api/.*' }] } }] }] });
        default:
          return ciliumPolicy(ns, `deny-${app}-${i}`, { endpointSelector: { matchLabels: { app } }, ingressDeny: [{ fromEntities: ['world'] }, { fromEndpoints: [{ matchLabels: { 'k8s:io.kubernetes.pod.namespace': 'monitoring' } }], toPorts: [{ ports: [{ port: '22', protocol: 'TCP' }] }] }] });
      }
    };
    for (let i = 0; i < 12; i++) b.policy(policy(i));
    return { policy, newWorkload: (i) => ({ namespace: nss[i % 3] as string, labels: { app: `job-${i}`, tier: 'batch' } }), isLocal };
  },
};

/**
 * A real cluster's shape: 5,413 pods, 604 namespaces, 13,678 NetworkPolicies (3,559 empty, 495
 * deny-only); the median policy selects 6 pods with 1 port, 1 pod selector, 1 CIDR and 2 peer pods.
 * One node's view: ~110 local pods.
 */
const realistic: Profile = {
  name: 'realistic',
  description: '5,413 pods in 604 namespaces, 13,678 NetworkPolicies (3,559 empty, 495 deny-only), ~110 local pods',
  churnEvents: 2000,
  scalable: true,
  build(b, scale) {
    const namespaces = Math.round(604 * scale);
    const isLocal = everyNth(49);
    let pods = 0;
    const podTarget = Math.round(5413 * scale);
    for (let n = 0; n < namespaces; n++) {
      const ns = `ns-${n}`;
      b.namespace(ns, { team: `team-${n % 40}`, env: n % 3 === 0 ? 'prod' : 'staging' });
      // ~9 pods per namespace: a 6-replica service, a 2-replica client, sometimes a singleton.
      const sizes = [6, 2, 1];
      sizes.forEach((replicas, k) => {
        if (pods >= podTarget) return;
        const r = Math.min(replicas, podTarget - pods);
        deploy(b, { namespace: ns, labels: { app: `svc-${n}-${k}`, role: ['server', 'client', 'job'][k] as string }, replicas: r }, isLocal);
        pods += r;
      });
    }
    const policyTarget = Math.round(13678 * scale);
    const emptyTarget = Math.round(3559 * scale);
    const denyTarget = Math.round(495 * scale);
    const policy = (i: number): Record<string, unknown> => {
      const n = i % namespaces;
      const ns = `ns-${n}`;
      if (i < emptyTarget) return networkPolicy(ns, `default-deny-${i}`, { podSelector: {} });
      if (i < emptyTarget + denyTarget) return networkPolicy(ns, `deny-all-${i}`, { podSelector: { matchLabels: { app: `svc-${n}-0` } }, policyTypes: ['Ingress', 'Egress'] });
      // The median policy: 6 pods selected, 1 pod selector (2 peers), 1 CIDR, 1 port.
      return networkPolicy(ns, `allow-${i}`, {
        podSelector: { matchLabels: { app: `svc-${n}-0` } },
        ingress: [{ from: [{ podSelector: { matchLabels: { app: `svc-${n}-1` } } }, { ipBlock: { cidr: externalCidr(b) } }], ports: [{ port: 8000 + (i % 50) }] }],
      });
    };
    for (let i = 0; i < policyTarget; i++) b.policy(policy(i));
    return { policy: (i) => policy(emptyTarget + denyTarget + i), newWorkload: (i) => ({ namespace: `ns-${i % namespaces}`, labels: { app: `new-${i}`, role: 'job' } }), isLocal };
  },
};

/**
 * Cilium's CI scale test: 1,000 nodes, 30,000 pods, 6,000 identities, 30,000 policies mixing L3,
 * L4, L4+CIDR and L3+CIDR. One node's view: 30 local pods.
 */
const ciliumCi: Profile = {
  name: 'cilium-ci',
  description: '30,000 pods (6,000 identities) on 1,000 nodes, 30,000 policies (L3, L4, L4+CIDR, L3+CIDR); 30 local pods',
  churnEvents: 2000,
  scalable: true,
  build(b, scale) {
    const identities = Math.round(6000 * scale);
    const namespaces = Math.max(1, Math.round(identities / 20));
    const isLocal = everyNth(1000);
    for (let n = 0; n < namespaces; n++) b.namespace(`ns-${n}`, { team: `team-${n % 50}` });
    for (let d = 0; d < identities; d++) deploy(b, { namespace: `ns-${d % namespaces}`, labels: { app: `app-${d}` }, replicas: 5 }, isLocal);
    const policy = (i: number): Record<string, unknown> => {
      const d = i % identities;
      const round = Math.floor(i / identities); // each deployment gets ~5 policies, all different
      const ns = `ns-${d % namespaces}`;
      const peer = `app-${(d + namespaces * (1 + round)) % identities}`; // same namespace, another deployment
      const l3 = { fromEndpoints: [{ matchLabels: { app: peer } }] };
      const port = { toPorts: [{ ports: [{ port: String(8000 + (i % 100)), protocol: 'TCP' }] }] };
      const cidr = { fromCIDR: [externalCidr(b)] };
      const ingress = [[l3], [{ ...l3, ...port }], [{ ...cidr, ...port }], [l3, cidr]][(i + round) % 4];
      return ciliumPolicy(ns, `cnp-${i}`, { endpointSelector: { matchLabels: { app: `app-${d}` } }, ingress });
    };
    const policies = Math.round(30000 * scale);
    for (let i = 0; i < policies; i++) b.policy(policy(i));
    return { policy: (i) => policy(policies + i), newWorkload: (i) => ({ namespace: `ns-${i % namespaces}`, labels: { app: `new-${i}` } }), isLocal };
  },
};

/** Cilium's 2019 regeneration benchmark: one local endpoint, 3,000 rules × 1,000 identities. */
const cilium2019: Profile = {
  name: 'cilium-2019',
  description: 'one local endpoint, 1,000 peer identities, 3,000 rules selecting it',
  churnEvents: 300,
  scalable: true,
  build(b, scale) {
    b.namespace('bench', {});
    const peers = Math.round(1000 * scale);
    b.pod('bench', 'target', { app: 'target' }, true);
    for (let i = 0; i < peers; i++) b.pod('bench', `peer-${i}`, { app: `peer-${i}`, group: `g-${i % 100}` }, false);
    const policy = (i: number): Record<string, unknown> =>
      ciliumPolicy('bench', `rule-${i}`, {
        endpointSelector: { matchLabels: { app: 'target' } },
        ingress: [{ fromEndpoints: [{ matchLabels: { group: `g-${i % 100}` } }], toPorts: [{ ports: [{ port: String(8000 + (i % 30)), protocol: 'TCP' }] }] }],
      });
    const rules = Math.round(3000 * scale);
    for (let i = 0; i < rules; i++) b.policy(policy(i));
    return { policy: (i) => policy(rules + i), newWorkload: (i) => ({ namespace: 'bench', labels: { app: `new-${i}`, group: `g-${i % 100}` } }), isLocal: () => false };
  },
};

/** Antrea's worst case: 10,000 pods in one namespace, 10,000 policies each selecting every pod. */
const antreaWorst: Profile = {
  name: 'antrea-worst',
  description: '10,000 pods in one namespace (100 identities, ~100 local), 10,000 policies each selecting every pod',
  churnEvents: 300,
  scalable: true,
  build(b, scale) {
    b.namespace('flat', {});
    const pods = Math.round(10000 * scale);
    const isLocal = everyNth(100);
    for (let i = 0; i < pods; i++) b.pod('flat', `pod-${i}`, { app: `app-${i % 100}` }, isLocal(b.nextPodIndex()));
    const policy = (i: number): Record<string, unknown> =>
      networkPolicy('flat', `all-${i}`, { podSelector: {}, ingress: [{ from: [{ podSelector: { matchLabels: { app: `app-${i % 100}` } } }], ports: [{ port: 8000 + (i % 20) }] }] });
    const policies = Math.round(10000 * scale);
    for (let i = 0; i < policies; i++) b.policy(policy(i));
    return { policy: (i) => policy(policies + i), newWorkload: (i) => ({ namespace: 'flat', labels: { app: `new-${i}` } }), isLocal };
  },
};

export const PROFILES: readonly Profile[] = [small, realistic, ciliumCi, cilium2019, antreaWorst];

/** S3-like names: `bucket-<i>.s3.<region>.amazonaws.com`. */
function s3Name(i: number): string {
  return `bucket-${i}.s3.${['us-east-1', 'eu-west-1', 'ap-south-1'][i % 3]}.amazonaws.com`;
}

/** The k-th address of name n's pool: 24 bits of 52.0.0.0/8, 1,024 per name (up to 16,384 names). */
function s3Ip(n: number, k: number): string {
  const v = (n % 16384) * 1024 + (k % 1024);
  return `52.${(v >> 16) & 255}.${(v >> 8) & 255}.${v & 255}`;
}

interface FqdnShape {
  readonly names: number;
  readonly ipsPerName: number;
  readonly endpoints: readonly string[];
  /** The DNS server every answer comes from (kube-dns). */
  readonly server: { readonly ip: string; readonly port: number };
}

/**
 * toFQDNs at S3 scale (issue 16): local endpoints whose DNS goes through the proxy and whose
 * egress allows `*.s3.*.amazonaws.com` on 443; names rotate through a pool of IPs per name (each
 * answer 8 of them, TTL 5 s as S3 gives), queried at a steady rate (one answer per event, one
 * clock second per 20 answers), plus policy churn (per-bucket matchName policies come and go).
 */
const fqdnProfile: Profile = {
  name: 'fqdn',
  scalable: true,
  description: 'toFQDNs: 100 local endpoints, 10,000 S3-like names with 1,000 rotating IPs each (8 per answer, TTL 5 s), then DNS answers (skewed popularity), clock steps and policy churn',
  churnEvents: 2000,
  build(b, scale) {
    const endpoints = Math.max(2, Math.round(100 * scale));
    b.namespace('kube-system', {});
    const coredns = b.pod('kube-system', 'coredns-0', { 'k8s-app': 'kube-dns' }, false, 'pod-add', [{ name: 'dns', port: 53, protocol: 'UDP' }]);
    b.namespace('apps', {});
    const eps: string[] = [];
    for (let i = 0; i < endpoints; i++) eps.push(podKeyOf(b.pod('apps', `client-${i}`, { app: `client-${i % 10}` }, true)));
    const dns = { toEndpoints: [{ matchLabels: { 'k8s:io.kubernetes.pod.namespace': 'kube-system', 'k8s:k8s-app': 'kube-dns' } }], toPorts: [{ ports: [{ port: '53', protocol: 'ANY' }], rules: { dns: [{ matchPattern: '*' }] } }] };
    const https = [{ ports: [{ port: '443', protocol: 'TCP' }] }];
    b.policy(ciliumPolicy('apps', 's3', { endpointSelector: {}, egress: [dns, { toFQDNs: [{ matchPattern: '*.s3.*.amazonaws.com' }], toPorts: https }] }));
    const names = Math.max(1, Math.round(10000 * scale));
    const policy = (i: number): Record<string, unknown> =>
      ciliumPolicy('apps', `bucket-${i}`, { endpointSelector: { matchLabels: { app: `client-${i % 10}` } }, egress: [dns, { toFQDNs: [{ matchName: s3Name(i % names) }], toPorts: https }] });
    return { policy, newWorkload: (i) => ({ namespace: 'apps', labels: { app: `client-new-${i}` } }), isLocal: () => true, fqdn: { names, ipsPerName: 1000, endpoints: eps, server: { ip: coredns.ip, port: 53 } } };
  },
};

/**
 * CiliumCIDRGroup objects (docs/semantics.md "CIDR groups"): 50 groups of 1–8 /24 prefixes of the
 * benchmark range 198.18.0.0/15 (RFC 2544), labelled `tier: open|closed` and a region, egress allowed
 * to each by `cidrGroupRef` from one app and to every open group by `cidrGroupSelector`, one group
 * denied by `egressDeny`; churn: groups gaining, losing and relabelling prefixes, groups deleted and
 * created (a third of the events), the rest the usual pod and policy mix. Not in `PROFILES`.
 */
const cidrGroupsProfile: Profile = {
  name: 'cidr-groups',
  scalable: true,
  description: 'CiliumCIDRGroup objects: 50 groups of 1-8 /24 prefixes (tier and region labels), 60 pods (20 local) in 2 namespaces, cidrGroupRef/cidrGroupSelector allows and a group deny, then group changes mixed into pod and policy churn',
  churnEvents: 600,
  build(b, scale) {
    const groups = Math.max(2, Math.round(50 * scale));
    const isLocal = everyNth(3);
    const nss = ['shop', 'billing'];
    nss.forEach((ns) => b.namespace(ns, {}));
    const apps = ['web', 'api', 'worker'];
    for (const ns of nss) for (const app of apps) deploy(b, { namespace: ns, labels: { app }, replicas: Math.max(1, Math.round(10 * scale)) }, isLocal);
    const group = (i: number): Record<string, unknown> => {
      const prefixes = Array.from({ length: 1 + b.int(8) }, () => `198.${18 + b.int(2)}.${b.int(256)}.0/24`);
      const labels = { tier: b.rng() < 0.5 ? 'open' : 'closed', region: `r${b.int(4)}` };
      return { apiVersion: 'cilium.io/v2', kind: 'CiliumCIDRGroup', metadata: { name: `group-${i}`, labels }, spec: { externalCIDRs: [...new Set(prefixes)] } };
    };
    for (let i = 0; i < groups; i++) b.cidrGroup(group(i));
    const policy = (i: number): Record<string, unknown> => {
      const ns = nss[i % nss.length] as string;
      const app = apps[i % apps.length] as string;
      const ref = { toCIDRSet: [{ cidrGroupRef: `group-${i % groups}` }] };
      const open = { toCIDRSet: [{ cidrGroupSelector: { matchLabels: { tier: 'open', region: `r${i % 4}` } } }] };
      return ciliumPolicy(ns, `egress-groups-${i}`, { endpointSelector: { matchLabels: { app } }, egress: [ref, open], egressDeny: [{ toCIDRSet: [{ cidrGroupRef: `group-${(i + 1) % groups}` }] }] });
    };
    for (let i = 0; i < apps.length * nss.length; i++) b.policy(policy(i));
    return { policy, newWorkload: (i) => ({ namespace: nss[i % nss.length] as string, labels: { app: `new-${i}` } }), isLocal, cidrGroup: (i) => group(i) };
  },
};

/** A third of the events change groups (replace: new prefixes or labels; delete; create), the rest is the usual churn mix. */
function groupChurn(b: TraceBuilder, shape: ProfileShape, group: (i: number) => Record<string, unknown>, events: number): void {
  const start = b.events;
  let created = b.cidrGroups.size;
  while (b.events - start < events) {
    if (b.rng() >= 1 / 3) {
      churn(b, shape, 1);
      continue;
    }
    const names = [...b.cidrGroups.keys()];
    const r = b.rng();
    if (names.length > 0 && r < 0.7) {
      const name = b.pick(names);
      const fresh = group(0);
      b.cidrGroup({ ...fresh, metadata: { ...(fresh.metadata as Record<string, unknown>), name } }, 'group-change');
    } else if (names.length > 1 && r < 0.85) b.deleteCidrGroup(b.pick(names));
    else b.cidrGroup(group(created++));
  }
}

function podKeyOf(p: PodRecord): string {
  return `${p.namespace}/${p.name}`;
}

/** DNS answers at a steady rate, one clock second per 20 answers, and 2% policy churn. */
function fqdnChurn(b: TraceBuilder, shape: ProfileShape, f: FqdnShape, events: number): void {
  const start = b.events;
  const rotation = new Map<number, number>();
  let answers = 0;
  let newPolicies = 0;
  while (b.events - start < events) {
    if (b.rng() < 0.02) {
      const keys = [...b.policies.keys()].filter((k) => k.includes('bucket-'));
      if (keys.length > 0 && b.rng() < 0.5) b.deletePolicy(b.pick(keys), 'policy-remove');
      else b.policy(shape.policy(newPolicies++), 'policy-add');
      continue;
    }
    // Skewed popularity (a few names take most queries, as for real buckets): index = names × u³.
    const n = Math.floor(f.names * b.rng() ** 3);
    const seen = rotation.has(n);
    const at = rotation.get(n) ?? 0;
    // A known name mostly answers with IPs it gave before (a refresh) and sometimes rotates in
    // new ones: the tags separate the three costs the benchmark reports.
    const fresh = seen && b.rng() < 0.2;
    const base = fresh ? at + 8 : Math.max(0, at - b.int(64));
    rotation.set(n, fresh ? at + 8 : at);
    const ips = Array.from({ length: 8 }, (_, k) => s3Ip(n, (base + k) % f.ipsPerName));
    b.dnsResponse(b.pick(f.endpoints), s3Name(n), ips, 5, !seen ? 'dns-new-name' : fresh ? 'dns-new-ip' : 'dns-refresh', f.server);
    if (++answers % 20 === 0) b.advanceTime(1);
  }
}

function identityKey(p: PodRecord): string {
  return `${p.namespace}/${JSON.stringify(Object.entries(p.labels).sort())}`;
}

/** Pods per identity (namespace and labels): a deletion that empties one is tagged `identity-remove`. */
class IdentityCounts {
  private readonly counts = new Map<string, number>();

  constructor(pods: Iterable<PodRecord>) {
    for (const p of pods) this.bump(p, +1);
  }

  /** The identity's pod count after adding `d`. */
  bump(p: PodRecord, d: number): number {
    const n = (this.counts.get(identityKey(p)) ?? 0) + d;
    this.counts.set(identityKey(p), n);
    return n;
  }
}

const CHURN_KINDS = ['scale-up', 'scale-up', 'new-workload', 'delete', 'delete', 'relabel', 'policy-add', 'policy-remove', 'namespace-relabel'] as const;
type PodChurn = Extract<(typeof CHURN_KINDS)[number], 'scale-up' | 'new-workload' | 'delete' | 'relabel'>;

/** How many new workloads and new policies the churn has added so far (their names count up). */
interface ChurnCounters {
  workloads: number;
  policies: number;
}

/**
 * Churn after the initial state, in a seeded random mix: scale-ups (existing identity), new
 * workloads (new identity), pod deletions, relabels (new identity), namespace relabels
 * (re-identifies the namespace's pods), policy rollouts and deletions.
 */
function churn(b: TraceBuilder, shape: ProfileShape, events: number): void {
  const counts = new IdentityCounts(b.pods.values());
  const added: ChurnCounters = { workloads: 0, policies: 0 };
  const start = b.events;
  while (b.events - start < events) {
    const kind = b.pick(CHURN_KINDS);
    switch (kind) {
      case 'policy-add':
        b.policy(shape.policy(added.policies++), 'policy-add');
        break;
      case 'policy-remove': {
        const keys = [...b.policies.keys()];
        if (keys.length > 0) b.deletePolicy(b.pick(keys), 'policy-remove');
        break;
      }
      case 'namespace-relabel': {
        const ns = b.pick([...b.namespaces.keys()]);
        // Every pod of the namespace gets a new identity (tags count identities by pod labels).
        b.namespace(ns, { ...b.namespaces.get(ns), rollout: `r${b.events}` }, 'namespace-relabel');
        break;
      }
      default:
        churnPod(b, shape, kind, counts, added);
    }
  }
}

/** One pod change of the churn mix: a pod like an existing one, a new workload, a deletion or a relabel. */
function churnPod(b: TraceBuilder, shape: ProfileShape, kind: PodChurn, counts: IdentityCounts, added: ChurnCounters): void {
  if (kind === 'new-workload') {
    const w = shape.newWorkload(added.workloads++);
    if (!b.namespaces.has(w.namespace)) b.namespace(w.namespace, {});
    counts.bump(b.pod(w.namespace, `${w.labels.app}-0`, w.labels, shape.isLocal(b.nextPodIndex()), 'identity-add'), +1);
    return;
  }
  const pods = [...b.pods.values()];
  if (pods.length === 0) return;
  const p = b.pick(pods);
  if (kind === 'scale-up') {
    counts.bump(b.pod(p.namespace, `${p.labels.app ?? 'pod'}-s${b.events}`, { ...p.labels }, shape.isLocal(b.nextPodIndex()), 'pod-add'), +1);
  } else if (kind === 'delete') {
    b.deletePod(p, counts.bump(p, -1) === 0 ? 'identity-remove' : 'pod-remove');
  } else {
    counts.bump(p, -1);
    counts.bump(b.pod(p.namespace, p.name, { ...p.labels, version: `v${b.events}` }, p.local, 'pod-relabel', p.ports), +1);
  }
}

export interface GenerateOptions {
  readonly profile: string;
  readonly seed: number;
  /** Multiplies the cluster size (the scaling series): 1 = the published shape. */
  readonly scale?: number;
  readonly churnEvents?: number;
  /** Spread pods over this many nodes (a `node` field on each pod; local pods on node-0). */
  readonly nodes?: number;
  /** Refuse to build a trace larger than this (bytes). */
  readonly maxBytes?: number;
}

/** Options `generateTrace` cannot honour: named in the message as the CLI spells them. */
export class GenerateOptionsError extends Error {
  override readonly name = 'GenerateOptionsError';
}

function checkOptions(profile: Profile, opts: GenerateOptions): void {
  const { scale, churnEvents } = opts;
  if (scale !== undefined && !(Number.isFinite(scale) && scale > 0)) throw new GenerateOptionsError(`--scale: "${scale}" is not a positive number`);
  if (scale !== undefined && scale !== 1 && !profile.scalable) throw new GenerateOptionsError(`--scale: profile ${profile.name} has a fixed shape and cannot be scaled (leave --scale out, or use another profile)`);
  if (churnEvents !== undefined && !(Number.isSafeInteger(churnEvents) && churnEvents >= 0)) throw new GenerateOptionsError(`--churn: "${churnEvents}" is not a whole number of events (0 or more)`);
  if (opts.nodes !== undefined && !(Number.isSafeInteger(opts.nodes) && opts.nodes >= 1 && opts.nodes <= 100_000)) throw new GenerateOptionsError(`--nodes: "${opts.nodes}" is not a whole number of nodes (1 to 100000)`);
}

/**
 * Every profile `distill gen` writes. PROFILES are those the engine replays today; `fqdn` traces
 * carry DNS events and toFQDNs, read only with `parseTrace(..., {fqdn: true})` until it takes them.
 */
export const GEN_PROFILES: readonly Profile[] = [...PROFILES, fqdnProfile, cidrGroupsProfile];

export function generateTrace(opts: GenerateOptions): string {
  const profile = GEN_PROFILES.find((p) => p.name === opts.profile);
  if (!profile) throw new GenerateOptionsError(`unknown profile "${opts.profile}" (profiles: ${GEN_PROFILES.map((p) => p.name).join(', ')})`);
  checkOptions(profile, opts);
  const scale = opts.scale ?? 1;
  const b = new TraceBuilder(seededRandom(opts.seed), { profile: profile.name, seed: opts.seed, description: `${profile.description}${scale !== 1 ? ` (scale ×${scale})` : ''}` }, opts.maxBytes);
  b.nodes = opts.nodes ?? 0;
  b.phase('initial');
  const shape = profile.build(b, scale);
  b.phase('churn');
  const events = opts.churnEvents ?? profile.churnEvents;
  if (shape.fqdn) fqdnChurn(b, shape, shape.fqdn, events);
  else if (shape.cidrGroup) groupChurn(b, shape, shape.cidrGroup, events);
  else churn(b, shape, events);
  return b.text();
}
