import { expect } from 'vitest';
import type { EngineEvent } from '../../src/engine/events.js';
import { Engine, type EngineOptions } from '../../src/engine/engine.js';
import { ClusterMirror, type MirrorOptions } from '../../src/k8s/mirror.js';
import { WatchStreamParser } from '../../src/k8s/watch.js';

/** A mirror feeding an engine, as the agent wires them, for tests that read watch-stream lines. */
export function mirrorAgent(nodeName = 'n1', options: Partial<MirrorOptions> = {}) {
  const mirror = new ClusterMirror({ nodeName, ...options });
  const engine = new Engine();
  const parsers = new Map<string, WatchStreamParser>();
  /** Lines read on stream `source`, then flushed into the engine. */
  const step = (source: string, ...lines: string[]): void => {
    const parser = parsers.get(source) ?? new WatchStreamParser(source);
    parsers.set(source, parser);
    for (const item of parser.push(lines.join('\n') + '\n')) mirror.observe(item, source);
    for (let i = 0; i < 50 && !mirror.idle; i++) {
      const b = mirror.flush();
      engine.apply(b.events as EngineEvent[]);
      b.commit();
    }
    expect(mirror.idle).toBe(true);
  };
  /** The verdict for the peer holding `ip` (as the datapath resolves it) to x/server on 80/TCP. */
  const verdict = (ip: string): string => {
    const id = engine.ipcache().find((e) => e.prefix === `${ip}/32`)?.identity;
    const hit = id === undefined ? undefined : engine.lookup('x/server', id, 'ingress', 6, 80);
    return hit === undefined ? 'none' : hit.entry.deny ? 'deny' : 'allow';
  };
  return { step, verdict, engine, mirror };
}

/**
 * A mirror feeding an engine of `options`, a refused batch rolled back as the agent does (the halving retries it);
 * `onCommit` runs after each committed batch. `refuse`: batches the engine is to refuse besides those it cannot hold
 * (an adversary: the mirror's guarantees hold whichever batches the engine refuses).
 */
export function rollingMirrorAgent(options: EngineOptions = {}, mirrorOptions: Partial<MirrorOptions> = {}, onCommit: () => void = () => {}, refuse: (events: readonly EngineEvent[]) => boolean = () => false) {
  const mirror = new ClusterMirror({ nodeName: 'n1', ...mirrorOptions });
  const engine = new Engine(options);
  const parser = new WatchStreamParser('w');
  /** Lines read, then flushed until idle (at most 40 flushes). */
  const feed = (...lines: string[]): void => {
    for (const item of parser.push(lines.join('\n') + '\n')) mirror.observe(item, 'w');
    for (let i = 0; i < 40 && !mirror.idle; i++) {
      const b = mirror.flush();
      try {
        if (refuse(b.events as EngineEvent[])) throw new Error('refused by the test');
        engine.apply(b.events as EngineEvent[]);
        b.commit();
        onCommit();
      } catch {
        b.rollback();
      }
    }
  };
  return { feed, engine, mirror };
}
