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
  ClusterNetworkPolicy: 'policy.networking.k8s.io/v1alpha2',
  EndpointSlice: 'discovery.k8s.io/v1',
} as const;
