import { expect } from 'vitest';
import type { EngineEvent } from '../../src/engine/events.js';
import { Engine } from '../../src/engine/engine.js';
import { ClusterMirror, type MirrorOptions } from '../../src/k8s/mirror.js';
import { WatchStreamParser } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';

/** The split-step agent of 31z (3260–3264) and 32r (3540). */
export type Refuse = (events: readonly EngineEvent[]) => boolean;

/**
 * A mirror feeding an engine that refuses the batches `refuse` names (as a full map would) once `step` is called; after
 * each commit of a step, x/server's verdict toward `probe.ip` (`dir`, TCP `port`) is kept in `verdicts`.
 */
export function refusingAgent(refuse: Refuse, probe: { ip: string; dir?: 'ingress' | 'egress'; port?: number }, options: Partial<MirrorOptions> = {}) {
  const mirror = new ClusterMirror({ nodeName: 'n1', ...options });
  const engine = new Engine();
  const parser = new WatchStreamParser('w');
  const verdicts: string[] = [];
  let refusing = false;
  const verdict = (ip = probe.ip): string => {
    const hit = engine.lookup('x/server', engine.identityOfIp(parseIp(ip)), probe.dir ?? 'egress', 6, probe.port ?? 80);
    return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
  };
  const feed = (...lines: string[]): void => {
    for (const item of parser.push(lines.join('\n') + '\n')) mirror.observe(item, 'w');
    for (let i = 0; i < 40 && !mirror.idle; i++) {
      const b = mirror.flush();
      const events = b.events as EngineEvent[];
      if (refusing && refuse(events)) {
        b.rollback();
        continue;
      }
      engine.apply(events);
      b.commit();
      if (refusing) verdicts.push(verdict());
    }
  };
  /** The step judged: fed with the engine refusing; no committed part may allow the probe (denied before and after). */
  const step = (...lines: string[]): void => {
    refusing = true;
    feed(...lines);
    expect(verdicts.length).toBeGreaterThan(0);
    expect(verdicts.filter((v) => v !== 'deny')).toEqual([]);
  };
  return { feed, step, verdict, engine, mirror };
}

