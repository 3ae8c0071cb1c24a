
/** The Cilium agent options that change how a Cilium policy is read (each at Cilium's default when absent). */
export interface CiliumAgentOptions {
  /**
   * Cilium's `enable-node-selector-labels` agent option: `toNodes`/`fromNodes` are read only with
   * it; without it (Cilium's default) the agent refuses them, and so does distill.
   */
  readonly nodeSelectorLabels?: boolean;
  /** `false`: Cilium's `enable-l7-proxy=false` (default on): a policy with L7 rules is refused (`IngressRule.Validate`/`EgressRule.Validate`). */
  readonly l7Proxy?: boolean;
  /** `false`: Cilium's `enable-icmp-rules=false` (hidden, default on): a policy with `icmps` is refused. */
  readonly icmpRules?: boolean;
  /**
   * `false`: Cilium's `enable-non-default-deny-policies=false` (hidden, default on; Helm's
   * `enableNonDefaultDenyPolicies`): `enableDefaultDeny` is ignored, every rule isolates its direction
   * (`Rule.Sanitize`, and `evaluateDefaultDenyForRule` in pkg/policy/utils: "DefaultDeny is enabled").
   */
  readonly nonDefaultDenyPolicies?: boolean;
}

/** How manifests are read. */
export interface ParseOptions extends CiliumAgentOptions {
  /** `false` refuses `toFQDNs` (for a consumer that cannot learn DNS answers); default: read it. */
  readonly fqdn?: boolean;
  /**
   * `true`: the consumer models CiliumCIDRGroup objects (scenarios, `reach`), so `cidrGroupRef` and
   * `cidrGroupSelector` are read as peers; otherwise (the agent, which does not watch the groups)
   * they are "not supported" and the agent enforces the fail-closed stand-in.
   */
  readonly cidrGroups?: boolean;
  /**
   * `true`: some CiliumCIDRGroup cannot be read, so no group's labels are known (the agent's reading
   * while one is: src/k8s/held.ts). A deny whose `any:` pod-namespace selector would also select group
   * prefixes (cilium-scope.ts `groupReading`) is then "not supported", and its stand-in denies every
   * peer of the rule (attack finding 2212).
   */
  readonly groupLabelsUnknown?: boolean;
  /**
   * `true`: the objects are what the API server serves (the agent's watch), not manifests to be written. A
   * ClusterNetworkPolicy served at v1beta1 may have been written at v1alpha2: the CRD stores one object and,
   * with no conversion webhook, serves it at every version with only `apiVersion` changed; validation runs on
   * writes only. So v1beta1's checks that v1alpha2 lacks (a `networks` CIDR's host bits, a `domainNames` label's
   * first character, `destinationNamedPort` beside `networks`) are not applied: such an object reads as v1alpha2
   * reads it (attack finding 2164). Default: manifests, each version's CRD validation in full.
   */
  readonly served?: boolean;
  /**
   * `false`: the consumer's pod identities come from outside (the agent with `--identities external` or etcd), so
   * the engine cannot split them for a ClusterNetworkPolicy egress `networks` peer or `destinationNamedPort`
   * (src/engine/validate.ts `splitProblem` refuses such a policy). Such a rule is then "not supported" and the agent
   * enforces the fail-closed stand-in (src/policy/stand-in.ts: its peers become one unknown peer, so an Accept
   * matches nothing and a Deny or Pass denies every egress peer of the subject) instead of nothing of the object
   * (attack finding 2247). Default: identities can be split.
   */
  readonly identitySplits?: boolean;
}

/** Only the options that differ from Cilium's defaults (so an agent's config can be passed as is). */
export function ciliumAgentOptions(o: CiliumAgentOptions): CiliumAgentOptions {
  return {
    ...(o.nodeSelectorLabels === true ? { nodeSelectorLabels: true } : {}),
    ...(o.l7Proxy === false ? { l7Proxy: false } : {}),
    ...(o.icmpRules === false ? { icmpRules: false } : {}),
    ...(o.nonDefaultDenyPolicies === false ? { nonDefaultDenyPolicies: false } : {}),
  };
}
