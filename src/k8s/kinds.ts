/** The API objects distill reads, and the `apiVersion` of each. */
export const KINDS_API_VERSIONS = {
  Namespace: 'v1',
  Pod: 'v1',
  Node: 'v1',
  CiliumNode: 'cilium.io/v2',
  NetworkPolicy: 'networking.k8s.io/v1',
  CiliumNetworkPolicy: 'cilium.io/v2',
  CiliumClusterwideNetworkPolicy: 'cilium.io/v2',
  CiliumIdentity: 'cilium.io/v2',
  ClusterNetworkPolicy: 'policy.networking.k8s.io/v1beta1',
  EndpointSlice: 'discovery.k8s.io/v1',
  CiliumCIDRGroup: 'cilium.io/v2',
  CiliumEndpoint: 'cilium.io/v2',
} as const;

/**
 * Other apiVersions a kind is read at: a CiliumCIDRGroup is served at cilium.io/v2 and, still,
 * cilium.io/v2alpha1 (its first version); the watch returns the version asked for and both read
 * alike (src/policy/cidr-group.ts). A ClusterNetworkPolicy is watched at v1beta1 (network-policy-api
 * apis/v1beta1: `+kubebuilder:storageversion`), and a stream recorded at v1alpha2 is read too, each
 * object as its own version (src/policy/clusternetworkpolicy.ts).
 */
export const KINDS_OTHER_API_VERSIONS: Readonly<Partial<Record<keyof typeof KINDS_API_VERSIONS, readonly string[]>>> = {
  CiliumCIDRGroup: ['cilium.io/v2alpha1'],
  ClusterNetworkPolicy: ['policy.networking.k8s.io/v1alpha2'],
};
