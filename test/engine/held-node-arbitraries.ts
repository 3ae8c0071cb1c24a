import fc from 'fast-check';

/** Random ClusterNetworkPolicy egress peers around held local nodes (30a and 30s properties): node labels on two keys. */
type Json = Record<string, unknown>;
const KEYS = ['os', 'pool'] as const;
const VALUES = ['a', 'b'] as const;

export const nodeLabels = fc.dictionary(fc.constantFrom(...KEYS), fc.constantFrom(...VALUES), { maxKeys: 2 });
const nodeSelector: fc.Arbitrary<Json> = fc.oneof(
  fc.constant({}),
  nodeLabels.map((m) => ({ matchLabels: m })),
  fc.record({ key: fc.constantFrom(...KEYS), operator: fc.constantFrom('Exists', 'DoesNotExist', 'NotIn'), v: fc.constantFrom(...VALUES) }).map(({ key, operator, v }) => ({ matchExpressions: [{ key, operator, ...(operator === 'NotIn' ? { values: [v] } : {}) }] })),
);
/** A `nodes` peer (mostly), a `networks` peer holding every node address of 172.18.0.0/24 or everything, or every pod. */
export const heldNodePeer: fc.Arbitrary<Json> = fc.oneof(
  { weight: 4, arbitrary: nodeSelector.map((s) => ({ nodes: s })) },
  { weight: 1, arbitrary: fc.constantFrom({ networks: ['172.18.0.0/24'] }, { networks: ['0.0.0.0/0', '::/0'] }) },
  { weight: 1, arbitrary: fc.constant({ pods: { namespaceSelector: {}, podSelector: {} } }) },
);
