import type { EngineEvent } from '../../src/engine/events.js';
import { Engine } from '../../src/engine/engine.js';
import { ClusterMirror } from '../../src/k8s/mirror.js';
import { WatchStreamParser } from '../../src/k8s/watch.js';
import type { CiliumAgentOptions } from '../../src/policy/manifest.js';

type Obj = Record<string, unknown>;
type Direction = 'ingress' | 'egress';

const ev = (type: string, object: Obj): string => JSON.stringify({ type, object });
const ns: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x', resourceVersion: '1' } };
const pod = (name: string, rv: number, node: string, ip: string, containers: readonly Obj[]): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'x', resourceVersion: String(rv), labels: { app: name } },
  spec: { nodeName: node, containers },
  status: { phase: 'Running', podIP: ip },
});

/**
 * One policy read by the agent's mirror from a watch stream, with x/server (local on n1), x/client
 * and x/other (on n2), all labelled `app: <name>` and running `containers`: the mirror's warnings
 * and x/server's TCP/80 verdict with a peer in a direction, from the engine the batch went into.
 */
export function agentVerdicts(policy: Obj, containers: readonly Obj[] = [], options: CiliumAgentOptions = {}): { warn: string[]; verdict: (peer: 'client' | 'other', direction: Direction) => 'allow' | 'deny' } {
  const warn: string[] = [];
  const mirror = new ClusterMirror({ nodeName: 'n1', warn: (m) => warn.push(m), ...options });
  const engine = new Engine();
  const parser = new WatchStreamParser('w');
  const pods = [pod('server', 2, 'n1', '10.0.0.1', containers), pod('client', 3, 'n2', '10.0.0.2', containers), pod('other', 4, 'n2', '10.0.0.3', containers)];
  const lines = [ev('ADDED', ns), ...pods.map((p) => ev('ADDED', p)), ev('ADDED', policy)];
  for (const item of parser.push(lines.join('\n'))) mirror.observe(item, 'w');
  const batch = mirror.flush();
  engine.apply(batch.events as EngineEvent[]);
  batch.commit();
  const verdict = (peer: 'client' | 'other', direction: Direction): 'allow' | 'deny' => {
    const hit = engine.lookup('x/server', engine.identityOfPod(`x/${peer}`) as number, direction, 6, 80);
    return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
  };
  return { warn, verdict };
}

/**
 * x/server's TCP/80 ingress verdicts from x/client and x/other after `first` (policies ADDED in one batch) and
 * after `then` (MODIFIED in a second batch), through the agent's mirror and one engine; the warnings of the second.
 */
export function mirrorVerdicts(first: readonly Obj[], then: readonly Obj[]): { before: Record<'client' | 'other', string>; after: Record<'client' | 'other', string>; warn: string[] } {
  const warn: string[] = [];
  const mirror = new ClusterMirror({ nodeName: 'n1', warn: (m) => warn.push(m) });
  const engine = new Engine();
  const parser = new WatchStreamParser('w');
  const pods = [pod('server', 2, 'n1', '10.0.0.1', []), pod('client', 3, 'n2', '10.0.0.2', []), pod('other', 4, 'n2', '10.0.0.3', [])];
  const feed = (lines: string[]): void => {
    for (const item of parser.push(`${lines.join('\n')}\n`)) mirror.observe(item, 'w');
    const batch = mirror.flush();
    engine.apply(batch.events as EngineEvent[]);
    batch.commit();
  };
  const verdicts = (): Record<'client' | 'other', string> => {
    const v = (peer: 'client' | 'other'): string => {
      const hit = engine.lookup('x/server', engine.identityOfPod(`x/${peer}`) as number, 'ingress', 6, 80);
      return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
    };
    return { client: v('client'), other: v('other') };
  };
  feed([ev('ADDED', ns), ...pods.map((p) => ev('ADDED', p)), ...first.map((p) => ev('ADDED', p))]);
  const before = verdicts();
  warn.length = 0;
  feed(then.map((p) => ev('MODIFIED', p)));
  return { before, after: verdicts(), warn };
}
