/**
 * Built-in Kubernetes kinds that carry no network policy, by apiVersion: what an app folder holds
 * next to its NetworkPolicies (Deployment, Service, ConfigMap, ...). Manifest files skip them with a
 * warning. The list is closed on purpose: a kind or apiVersion not here (a misspelt policy kind, a
 * cilium.io or policy.networking.k8s.io kind distill does not read, a CRD) is refused, never
 * skipped, so a policy distill cannot read is never dropped silently.
 */
const NO_POLICY_KINDS: ReadonlyMap<string, readonly string[]> = new Map([
  ['v1', ['Service', 'ConfigMap', 'Secret', 'ServiceAccount', 'Endpoints', 'PersistentVolumeClaim', 'PersistentVolume', 'LimitRange', 'ResourceQuota', 'ReplicationController', 'PodTemplate', 'Event', 'Node']],
  ['apps/v1', ['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'ControllerRevision']],
  ['batch/v1', ['Job', 'CronJob']],
  ['networking.k8s.io/v1', ['Ingress', 'IngressClass']],
  ['rbac.authorization.k8s.io/v1', ['Role', 'ClusterRole', 'RoleBinding', 'ClusterRoleBinding']],
  ['policy/v1', ['PodDisruptionBudget']],
  ['autoscaling/v1', ['HorizontalPodAutoscaler']],
  ['autoscaling/v2', ['HorizontalPodAutoscaler']],
  ['storage.k8s.io/v1', ['StorageClass', 'CSIDriver', 'CSINode', 'VolumeAttachment', 'CSIStorageCapacity']],
  ['apiextensions.k8s.io/v1', ['CustomResourceDefinition']],
  ['admissionregistration.k8s.io/v1', ['ValidatingWebhookConfiguration', 'MutatingWebhookConfiguration', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding']],
  ['scheduling.k8s.io/v1', ['PriorityClass']],
  ['coordination.k8s.io/v1', ['Lease']],
  ['discovery.k8s.io/v1', ['EndpointSlice']],
  ['node.k8s.io/v1', ['RuntimeClass']],
  ['certificates.k8s.io/v1', ['CertificateSigningRequest']],
]);

/** True for a built-in kind at an apiVersion listed above: safe to skip. */
export function carriesNoPolicy(apiVersion: unknown, kind: unknown): boolean {
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') return false;
  return NO_POLICY_KINDS.get(apiVersion)?.includes(kind) ?? false;
}

/** The apiVersions at which `kind` is skipped (empty: not a kind distill skips). */
export function noPolicyVersionsOf(kind: string): string[] {
  return [...NO_POLICY_KINDS].filter(([, kinds]) => kinds.includes(kind)).map(([v]) => v);
}
