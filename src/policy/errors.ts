/**
 * A manifest or scenario was rejected. `source` names the file and document (`policies.yaml#2`),
 * `fieldPath` the field inside it (`spec.ingress[0].toPorts[0].ports[0].endPort`).
 */
export class ManifestError extends Error {
  override readonly name = 'ManifestError';
  constructor(
    readonly source: string,
    readonly fieldPath: string,
    readonly detail: string,
  ) {
    super(fieldPath === '' ? `${source}: ${detail}` : `${source} ${fieldPath}: ${detail}`);
  }
}
