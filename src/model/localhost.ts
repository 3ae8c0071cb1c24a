import type { RuleOrigin } from './rules.js';

/**
 * Cilium's `allow-localhost` agent option (pkg/option/config.go): `always` lets the local host
 * (reserved identity 1) reach every endpoint of the node on ingress whatever the policy; `policy`
 * leaves host flows to policy. Cilium's default `auto` resolves to `always` under Kubernetes
 * (daemon init: "Kubernetes demands that the localhost can always reach local pods"), so distill's
 * default is `always`. docs/semantics.md, Nodes, `allow-localhost`.
 */
export type AllowLocalhost = 'always' | 'policy';

export const ALLOW_LOCALHOST_VALUES: readonly AllowLocalhost[] = ['always', 'policy'];

export const DEFAULT_ALLOW_LOCALHOST: AllowLocalhost = 'always';

/**
 * The reason a flow from the local host is allowed under `always`: Cilium labels the entry
 * `reserved:io.cilium.policy.derived-from=allow-localhost-ingress` (pkg/policy/mapstate.go
 * `LabelsLocalHostIngress`). The name holds a `:`, which no Kubernetes object name can, so it
 * never collides with a real policy.
 */
export const ALLOW_LOCALHOST_ORIGIN: RuleOrigin = {
  policy: { kind: 'CiliumClusterwideNetworkPolicy', name: 'reserved:allow-localhost-ingress' },
  path: 'agent option allow-localhost=always',
};

export function isAllowLocalhostOrigin(o: RuleOrigin): boolean {
  return o.policy.kind === ALLOW_LOCALHOST_ORIGIN.policy.kind && o.policy.name === ALLOW_LOCALHOST_ORIGIN.policy.name && o.policy.namespace === undefined;
}

/**
 * The reason a local map denies an identity distill cannot read (finding 1936; events.ts
 * `upsertIdentity.unreadable`). Not Cilium's: Cilium reads every `security-labels` map. Like
 * `ALLOW_LOCALHOST_ORIGIN` its name holds a `:`, which no Kubernetes object name can.
 */
export const UNREADABLE_IDENTITY_ORIGIN: RuleOrigin = {
  policy: { kind: 'CiliumClusterwideNetworkPolicy', name: 'reserved:unreadable-identity' },
  path: 'fail-closed stand-in of an identity distill cannot read',
};

/**
 * The reason a local map denies a pod whose label set has no external identity yet (finding 2002;
 * model/identity.ts `UNALLOCATED_POD_IDENTITY`). Not Cilium's, whose ipcache keeps such a pod's
 * CiliumEndpoint number; distill reads no CiliumEndpoint and fails closed instead.
 */
export const UNALLOCATED_IDENTITY_ORIGIN: RuleOrigin = {
  policy: { kind: 'CiliumClusterwideNetworkPolicy', name: 'reserved:unallocated-identity' },
  path: 'fail-closed stand-in of a pod whose labels have no identity yet',
};
