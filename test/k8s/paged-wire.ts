import type { EngineEvent } from '../../src/engine/events.js';
import { ClusterMirror } from '../../src/k8s/mirror.js';
import { WatchStreamParser, type WatchItem } from '../../src/k8s/watch.js';

/*
 * Lists in the two wire formats the agent reads: the API server's paged List (client-go's
 * reflector lists with `limit`; every page but the last carries metadata.continue and, when the
 * server knows it, metadata.remainingItemCount; its items carry no kind or apiVersion, the Go
 * list type's TypeMeta is the List's only) and kubectl's `get -o json` List (keys sorted:
 * apiVersion, items, kind, metadata; each item with its kind).
 */
export type Obj = Record<string, unknown>;

export const pod = (name: string, rv: number, ip: string, note = ''): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'shop', uid: `uid-${name}`, resourceVersion: String(rv), labels: { app: name }, ...(note ? { annotations: { note } } : {}) },
  spec: { nodeName: 'node-b', containers: [{ name: 'c', image: 'i' }] },
  status: { phase: 'Running', podIP: ip },
});

/** A NetworkPolicy of shop isolating the pods labelled `app: <app>` for ingress. */
export const netpol = (name: string, rv: number, app: string): Obj => ({
  apiVersion: 'networking.k8s.io/v1',
  kind: 'NetworkPolicy',
  metadata: { name, namespace: 'shop', uid: `uid-${name}`, resourceVersion: String(rv) },
  spec: { podSelector: { matchLabels: { app } }, policyTypes: ['Ingress'] },
});

const bare = (o: Obj): Obj => Object.fromEntries(Object.entries(o).filter(([k]) => k !== 'kind' && k !== 'apiVersion'));

/** The pages of a List of `objs` by `pageSize`, as the API server writes them (one JSON text each). */
export function apiPages(kind: string, apiVersion: string, objs: readonly Obj[], pageSize: number, rv: string): string[] {
  const pages: string[] = [];
  for (let i = 0; i === 0 || i < objs.length; i += pageSize) {
    const rest = objs.length - i - pageSize;
    const metadata = rest > 0 ? { resourceVersion: rv, continue: `page-${pages.length + 1}`, remainingItemCount: rest } : { resourceVersion: rv };
    pages.push(JSON.stringify({ kind: `${kind}List`, apiVersion, metadata, items: objs.slice(i, i + pageSize).map(bare) }));
  }
  return pages;
}

/** `kubectl get -o json`'s List of `objs`. */
export function kubectlList(objs: readonly Obj[], rv: string): string {
  return JSON.stringify({ apiVersion: 'v1', items: objs, kind: 'List', metadata: { resourceVersion: rv } }, null, 4);
}

/** A parser and a mirror on stream `s`; `flush` commits and returns the batch's events. */
export function feedHarness(maxValueBytes?: number) {
  const warnings: string[] = [];
  const mirror = new ClusterMirror({ nodeName: 'node-a', warn: (msg, fields) => warnings.push(`${msg} ${JSON.stringify(fields)}`) });
  const parser = new WatchStreamParser('s', maxValueBytes);
  const items: WatchItem[] = [];
  const feed = (text: string): void => {
    parser.push(text, (item) => {
      items.push(item);
      mirror.observe(item, 's');
    });
  };
  const flush = (): EngineEvent[] => {
    const batch = mirror.flush();
    batch.commit();
    return batch.events as EngineEvent[];
  };
  return { mirror, parser, items, warnings, feed, flush };
}
