/**
 * A manifest or scenario was rejected. `source` names the file and document (`policies.yaml#2`),
 * `fieldPath` the field inside it (`spec.ingress[0].toPorts[0].ports[0].endPort`). `unread`: a
 * field distill does not read and Cilium enforces (`Reader.unsupported`), which the agent answers
 * with its fail-closed stand-in whatever the wording of `detail` (attack finding 2021).
 */
export class ManifestError extends Error {
  override readonly name = 'ManifestError';
  constructor(
    readonly source: string,
    readonly fieldPath: string,
    readonly detail: string,
    readonly unread = false,
  ) {
    super(fieldPath === '' ? `${source}: ${detail}` : `${source} ${fieldPath}: ${detail}`);
  }
}
