/**
 * Cilium's kvstore prefix for global identities (pkg/identity/cache IdentitiesPath). Apart from
 * client.ts so that the CLI can show it as a default without loading etcd's client.
 */
export const IDENTITIES_PREFIX = 'cilium/state/identities/v1';
