import type { ClusterMirror } from './mirror.js';
import { objectKind } from './objects.js';

/**
 * What distill needs of a `@kubernetes/client-node` informer (`makeInformer(...)`): its callbacks.
 * Structural, so distill does not depend on the client library.
 */
export interface InformerLike {
  on(verb: 'add' | 'update' | 'delete', cb: (obj: object) => void): void;
  on(verb: 'error' | 'connect', cb: (err?: unknown) => void): void;
}

/** Options of `watchInformer`. */
export interface InformerFeedOptions {
  /** The informer's kind and apiVersion (list items as the client returns them may lack both). */
  readonly kind: string;
  readonly apiVersion: string;
  /**
   * Called once the objects the informer gave in one run were taken (e.g. to flush the mirror): a
   * relist's deletes, adds and updates come in one run (client-node dist/cache.js `doneHandler`:
   * `deleteItems`, then `addOrUpdateItems`), so a flush here sees the whole relist (finding 1643).
   * What it throws goes to `onError`.
   */
  readonly onChange?: () => void;
  /**
   * Called with the informer's errors. A 410 makes it relist by itself; after another error it
   * stops until started again, and `mirror.streamsAwaitingRelist()` lists it until it connects.
   */
  readonly onError?: (err: unknown) => void;
}

type TypedModel = { constructor?: { getAttributeTypeMap?: () => readonly { name: string; baseName: string }[] } };

/**
 * An object of the typed client back in the API's JSON form: the generated models rename fields
 * that are reserved words (`from` is `_from` in a NetworkPolicy rule) and list each field's wire
 * name in `getAttributeTypeMap`; dates become RFC 3339 strings; absent fields are dropped.
 */
export function toWire(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(toWire);
  if (v instanceof Date) return v.toISOString();
  if (typeof v !== 'object' || v === null) return v;
  const map = (v as TypedModel).constructor?.getAttributeTypeMap?.();
  const rename = new Map((map ?? []).map((a) => [a.name, a.baseName]));
  return Object.fromEntries(
    Object.entries(v)
      .filter(([, x]) => x !== undefined)
      .map(([k, x]) => [rename.get(k) ?? k, toWire(x)]),
  );
}

/**
 * Feeds a ClusterMirror from an informer: `add`, `update` and `delete` become ADDED, MODIFIED and
 * DELETED events of the object as the API server sent it. Typed client objects (dates as `Date`)
 * are brought back to their JSON form (`toWire`). The informer's own relist after an expired watch arrives
 * as adds, updates and deletes, which the mirror reduces to the differences.
 */
export function watchInformer(informer: InformerLike, mirror: ClusterMirror, options: InformerFeedOptions): void {
  const source = `informer ${options.kind}`;
  mirror.fedByInformer(source);
  let queued = false;
  // One call after the run of callbacks the informer makes (a microtask runs once that run returns).
  const changed = (): void => {
    if (queued || options.onChange === undefined) return;
    queued = true;
    queueMicrotask(() => {
      queued = false;
      // Thrown out of a microtask it would end the process; in the informer's callback client-node swallowed it.
      try {
        options.onChange?.();
      } catch (e) {
        options.onError?.(e);
      }
    });
  };
  const take = (type: 'ADDED' | 'MODIFIED' | 'DELETED') => (obj: object) => {
    const wire = toWire(obj) as Record<string, unknown>;
    const object = objectKind(wire) === undefined && wire.kind === undefined ? { ...wire, kind: options.kind, apiVersion: options.apiVersion } : wire;
    mirror.observe({ type, object }, source);
    changed();
  };
  informer.on('add', take('ADDED'));
  informer.on('update', take('MODIFIED'));
  informer.on('delete', take('DELETED'));
  // client-node's informer emits `connect` before each list or resumed watch, and stops on an error
  // other than a 410 (dist/cache.js `doneHandler`): down from the error until it connects again.
  informer.on('connect', () => mirror.informerConnected(source));
  informer.on('error', (err?: unknown) => {
    mirror.informerFailed(source);
    options.onError?.(err);
  });
}
