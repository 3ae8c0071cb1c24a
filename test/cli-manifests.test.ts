import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { cli, tmpDir, tmpFile } from './cli-helpers.js';

/**
 * Manifests as operators write them: the examples of the Kubernetes NetworkPolicy page, of Cilium's
 * policy docs (L3, entities, CIDR, DNS, deny, L7) and of network-policy-api's ClusterNetworkPolicy
 * examples, and `kubectl get -o yaml` output (a List with managedFields, status and the
 * last-applied annotation). `validate` reads them, `-o json|yaml` reports each file.
 */

// kubernetes.io/docs/concepts/services-networking/network-policies (three examples of the page).
const K8S_DOCS = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: test-network-policy
  namespace: default
spec:
  podSelector:
    matchLabels:
      role: db
  policyTypes:
  - Ingress
  - Egress
  ingress:
  - from:
    - ipBlock:
        cidr: 172.17.0.0/16
        except:
        - 172.17.1.0/24
    - namespaceSelector:
        matchLabels:
          project: myproject
    - podSelector:
        matchLabels:
          role: frontend
    ports:
    - protocol: TCP
      port: 6379
  egress:
  - to:
    - ipBlock:
        cidr: 10.0.0.0/24
    ports:
    - protocol: TCP
      port: 5978
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-ingress
spec:
  podSelector: {}
  policyTypes:
  - Ingress
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: multi-port-egress
  namespace: default
spec:
  podSelector:
    matchLabels:
      role: db
  policyTypes:
    - Egress
  egress:
    - to:
        - ipBlock:
            cidr: 10.0.0.0/24
      ports:
        - protocol: TCP
          port: 32000
          endPort: 32768
`;

// docs.cilium.io policy language examples (the host policy example, nodeSelector, is left out: distill refuses it).
const CILIUM_DOCS = `apiVersion: "cilium.io/v2"
kind: CiliumNetworkPolicy
metadata:
  name: "l3-rule"
spec:
  endpointSelector:
    matchLabels:
      role: backend
  ingress:
  - fromEndpoints:
    - matchLabels:
        role: frontend
---
apiVersion: "cilium.io/v2"
kind: CiliumNetworkPolicy
metadata:
  name: "dev-to-kube-apiserver"
spec:
  endpointSelector:
    matchLabels:
      env: dev
  egress:
    - toEntities:
      - kube-apiserver
---
apiVersion: "cilium.io/v2"
kind: CiliumNetworkPolicy
metadata:
  name: "cidr-rule"
spec:
  endpointSelector:
    matchLabels:
      app: myService
  egress:
  - toCIDR:
    - 20.1.1.1/32
  - toCIDRSet:
    - cidr: 10.0.0.0/8
      except:
      - 10.96.0.0/12
---
apiVersion: "cilium.io/v2"
kind: CiliumNetworkPolicy
metadata:
  name: "fqdn"
spec:
  endpointSelector:
    matchLabels:
      org: empire
      class: mediabot
  egress:
  - toFQDNs:
    - matchName: "api.github.com"
  - toEndpoints:
    - matchLabels:
        "k8s:io.kubernetes.pod.namespace": kube-system
        "k8s:k8s-app": kube-dns
    toPorts:
    - ports:
      - port: "53"
        protocol: ANY
      rules:
        dns:
        - matchPattern: "*"
---
apiVersion: "cilium.io/v2"
kind: CiliumNetworkPolicy
metadata:
  name: "external-lockdown"
spec:
  endpointSelector: {}
  ingressDeny:
  - fromEntities:
    - "world"
  ingress:
  - fromEntities:
    - "all"
---
apiVersion: "cilium.io/v2"
kind: CiliumNetworkPolicy
metadata:
  name: "rule1"
spec:
  description: "L7 policy to restrict access to specific HTTP call"
  endpointSelector:
    matchLabels:
      org: empire
      class: deathstar
  ingress:
  - fromEndpoints:
    - matchLabels:
        org: empire
    toPorts:
    - ports:
      - port: "80"
        protocol: TCP
      rules:
        http:
        - method: "POST"
          path: "/v1/request-landing"
          headers:
          - 'X-My-Header: true'
`;

// network-policy-api.sigs.k8s.io reference examples, stories 1 and 2.
const CNP_DOCS = `apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata:
  name: cluster-wide-deny-example
spec:
  tier: Admin
  priority: 10
  subject:
    namespaces:
      matchLabels:
        kubernetes.io/metadata.name: sensitive-ns
  ingress:
    - action: Deny
      from:
      - namespaces:
          matchLabels: {} # Match all namespaces.
      name: select-all-deny-all
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata:
  name: cluster-wide-allow-example
spec:
  tier: Admin
  priority: 30
  subject:
    namespaces: {}
  ingress:
    - action: Accept
      name: allow-monitoring-ns-ingress
      from:
      - namespaces:
          matchLabels:
            kubernetes.io/metadata.name: monitoring-ns
  egress:
  - action: Accept
    name: allow-kube-dns-egress
    to:
    - pods:
        namespaceSelector:
          matchLabels:
            kubernetes.io/metadata.name: kube-system
        podSelector:
          matchLabels:
            app: kube-dns
`;

// What `kubectl get netpol,cnp -n shop -o yaml` prints.
const KUBECTL_LIST = `apiVersion: v1
items:
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata:
    annotations:
      kubectl.kubernetes.io/last-applied-configuration: |
        {"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"annotations":{},"name":"allow-frontend","namespace":"shop"},"spec":{"podSelector":{"matchLabels":{"app":"backend"}}}}
    creationTimestamp: "2026-11-29T10:00:00Z"
    generation: 1
    managedFields:
    - apiVersion: networking.k8s.io/v1
      fieldsType: FieldsV1
      fieldsV1:
        f:metadata:
          f:annotations:
            .: {}
            f:kubectl.kubernetes.io/last-applied-configuration: {}
        f:spec:
          f:ingress: {}
          f:podSelector: {}
          f:policyTypes: {}
      manager: kubectl-client-side-apply
      operation: Update
      time: "2026-11-29T10:00:00Z"
    name: allow-frontend
    namespace: shop
    resourceVersion: "12345"
    uid: 0b4c1c6e-1d2e-4f5a-9b8c-7d6e5f4a3b2c
  spec:
    ingress:
    - from:
      - podSelector:
          matchLabels:
            app: frontend
      ports:
      - port: http
        protocol: TCP
    podSelector:
      matchLabels:
        app: backend
    policyTypes:
    - Ingress
  status: {}
- apiVersion: cilium.io/v2
  kind: CiliumNetworkPolicy
  metadata:
    creationTimestamp: "2026-11-29T10:00:00Z"
    generation: 1
    name: l7-rule
    namespace: shop
    resourceVersion: "12346"
    uid: 1b4c1c6e-1d2e-4f5a-9b8c-7d6e5f4a3b2c
  spec:
    endpointSelector:
      matchLabels:
        app: backend
    ingress:
    - fromEndpoints:
      - matchLabels:
          app: frontend
      toPorts:
      - ports:
        - port: "80"
          protocol: TCP
        rules:
          http:
          - method: GET
            path: "/public"
  status:
    conditions:
    - lastTransitionTime: "2026-11-29T10:00:01Z"
      message: Policy validation succeeded
      status: "True"
      type: Valid
kind: List
metadata:
  resourceVersion: ""
`;

const PODS = `namespaces:
  - {name: default}
  - {name: other, labels: {project: myproject}}
pods:
  - {name: default/db, labels: {role: db}}
  - {name: default/web, labels: {role: frontend}}
  - {name: default/stray, labels: {app: y}}
externals:
  - {name: office, ip: 172.17.2.5}
  - {name: blocked, ip: 172.17.1.5}
steps:
  - probes: [{to: default/db, port: 6379}]
`;

interface Valid {
  readonly file: string;
  readonly valid: boolean;
  readonly policies?: number;
  readonly rules?: number;
  readonly names?: string[];
  readonly error?: string;
}

describe('validate: manifests from the upstream docs and kubectl', () => {
  it.each([
    ['kubernetes docs', K8S_DOCS, ['NetworkPolicy/default/test-network-policy', 'NetworkPolicy/default/default-deny-ingress', 'NetworkPolicy/default/multi-port-egress']],
    ['cilium docs', CILIUM_DOCS, ['CiliumNetworkPolicy/default/l3-rule', 'CiliumNetworkPolicy/default/dev-to-kube-apiserver', 'CiliumNetworkPolicy/default/cidr-rule', 'CiliumNetworkPolicy/default/fqdn', 'CiliumNetworkPolicy/default/external-lockdown', 'CiliumNetworkPolicy/default/rule1']],
    ['network-policy-api docs', CNP_DOCS, ['ClusterNetworkPolicy/cluster-wide-deny-example', 'ClusterNetworkPolicy/cluster-wide-allow-example']],
    ['kubectl get -o yaml', KUBECTL_LIST, ['NetworkPolicy/shop/allow-frontend', 'CiliumNetworkPolicy/shop/l7-rule']],
  ])('%s: valid, every policy named in -o json', (_name, text, names) => {
    const f = tmpFile('policies.yaml', text);
    const r = cli('validate', '-o', 'json', f);
    expect(r.code, r.err).toBe(0);
    const results = JSON.parse(r.out) as Valid[];
    expect(results).toEqual([expect.objectContaining({ file: f, valid: true, policies: names.length, names })]);
  });
  it('the kubectl List as JSON (kubectl get -o json) and with CRLF line ends reads the same', () => {
    const dir = tmpDir();
    const asJson = tmpFile('list.json', JSON.stringify(parse(KUBECTL_LIST), null, 4), dir);
    expect(cli('validate', asJson).out).toBe(`${asJson}: 2 policies, 2 rules, valid\n`);
    const crlf = tmpFile('crlf.yaml', K8S_DOCS.replace(/\n/g, '\r\n'), dir);
    expect(cli('validate', crlf).out).toBe(`${crlf}: 3 policies, 3 rules, valid\n`);
  });
  it('-o json of a bad file: valid false with the error naming file, document and field; stderr has it too; exit 2', () => {
    const dir = tmpDir();
    const good = tmpFile('good.yaml', K8S_DOCS, dir);
    const bad = tmpFile('bad.yaml', `${K8S_DOCS}---\n${K8S_DOCS.split('---')[0]!.replace('ingress:\n', 'ingres:\n')}`, dir);
    const r = cli('validate', '-o', 'json', good, bad);
    expect(r.code).toBe(2);
    const results = JSON.parse(r.out) as Valid[];
    expect(results.map((x) => x.valid)).toEqual([true, false]);
    expect(results[1]?.error).toBe(`${bad}#4 (NetworkPolicy default/test-network-policy) spec.ingres: unknown field (expected one of: podSelector, policyTypes, ingress, egress)`);
    expect(r.err).toBe(`error: ${results[1]?.error}\n`);
  });
  it('-o yaml lists the same objects; text stays one line per file', () => {
    const f = tmpFile('p.yaml', CNP_DOCS);
    expect(cli('validate', '-o', 'yaml', f).out).toContain('names:\n    - ClusterNetworkPolicy/cluster-wide-deny-example\n');
    expect(cli('validate', f).out).toBe(`${f}: 2 policies, 3 rules, valid\n`);
  });
  it('--help names every kind validate reads', () => {
    const r = cli('validate', '--help');
    expect(r.code).toBe(0);
    for (const k of ['NetworkPolicy', 'CiliumClusterwideNetworkPolicy', 'ClusterNetworkPolicy', 'List', 'Pod', 'Namespace', '-o, --output']) expect(r.out).toContain(k);
  });
});

describe('trace on the Kubernetes docs example (ipBlock with except)', () => {
  it.each([
    ['office', 'FORWARDED'],
    ['blocked', 'DROPPED'],
    ['172.17.1.5', 'DROPPED'],
    ['default/web', 'FORWARDED'],
    ['default/stray', 'DROPPED'],
  ])('%s -> default/db 6379/TCP: %s', (from, verdict) => {
    const dir = tmpDir();
    const r = cli('trace', '--scenario', tmpFile('pods.yaml', PODS, dir), '-f', tmpFile('np.yaml', K8S_DOCS, dir), '--from', from, '--to', 'default/db', '--port', '6379/TCP', '-o', 'json');
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ from, to: 'default/db', verdict });
  });
});
