import { describe, expect, it } from 'vitest';
import { settleIdentities } from '../../src/agent/settle.js';
import type { EngineEvent } from '../../src/engine/events.js';

/**
 * The `--exit-at-eof` wait for remote pods' etcd identities (src/agent/settle.ts, moved out of the CLI, 3576): it polls
 * until the source has an id for every known pod and no event waits, or the agent stops; says once whom it waits for;
 * and flushes the agent at the end.
 */
interface Waiting {
  pods: string[];
  podCount: number;
  nodes: string[];
  nodeCount: number;
}

/** A source whose remote pods get their ids after `clusterAfter` polls, whose events are taken `pending` polls later. */
function fakeSource(clusterAfter: number, pending: number, waiting: Waiting) {
  let polls = 0;
  return {
    get polls(): number {
      return polls;
    },
    settled: true,
    get settledCluster(): boolean {
      polls++;
      return polls > clusterAfter;
    },
    peek(): readonly EngineEvent[] {
      return polls > clusterAfter + pending ? [] : [{ type: 'deleteIdentity', id: 70000 }];
    },
    waitingFor(limit: number): Waiting {
      return { ...waiting, pods: waiting.pods.slice(0, limit), nodes: waiting.nodes.slice(0, limit) };
    },
  };
}

function fakeAgent() {
  return { stopped: false, flushes: 0, flush(): void { this.flushes++; } };
}

function fakeLog() {
  const lines: { fields: object; msg: string }[] = [];
  return { lines, warn: (fields: object, msg: string): void => void lines.push({ fields, msg }) };
}

const twoPods: Waiting = { pods: ['Pod/a/p1', 'Pod/a/p2'], podCount: 2, nodes: ['n2'], nodeCount: 1 };

describe('settleIdentities', () => {
  it('waits until every remote pod has its id and the source has nothing pending, warns once, then flushes', async () => {
    const source = fakeSource(5, 3, twoPods);
    const agent = fakeAgent();
    const log = fakeLog();
    await settleIdentities(agent, source, log, 1);
    expect(source.polls).toBe(5 + 3 + 1);
    expect(agent.flushes).toBe(1);
    expect(log.lines).toHaveLength(1);
    expect(log.lines[0]!.msg).toContain('start the agent of node(s) n2 (pods Pod/a/p1, Pod/a/p2)');
    expect(log.lines[0]!.fields).toEqual(twoPods);
  });

  it('says nothing and returns at the first poll once settled', async () => {
    const source = fakeSource(0, 0, twoPods);
    const agent = fakeAgent();
    const log = fakeLog();
    await settleIdentities(agent, source, log, 1);
    expect(source.polls).toBe(1);
    expect(agent.flushes).toBe(1);
    expect(log.lines).toEqual([]);
  });

  it('ends when the agent stops, however long the remote nodes take', async () => {
    const source = fakeSource(Infinity, 0, twoPods);
    const agent = fakeAgent();
    const log = fakeLog();
    setTimeout(() => void (agent.stopped = true), 30);
    await settleIdentities(agent, source, log, 1);
    expect(source.polls).toBeGreaterThan(1);
    expect(agent.flushes).toBe(1);
    expect(log.lines).toHaveLength(1);
  });

  it('names at most ten pods and nodes, with the counts; no node known reads "their nodes"', async () => {
    const pods = Array.from({ length: 12 }, (_, i) => `Pod/a/p${String(i).padStart(2, '0')}`);
    const log = fakeLog();
    await settleIdentities(fakeAgent(), fakeSource(2, 0, { pods, podCount: 12, nodes: [], nodeCount: 0 }), log, 1);
    expect(log.lines[0]!.msg).toContain(`start the agent of their nodes (pods ${pods.slice(0, 10).join(', ')}, … (12 in all))`);
  });

  it('does not warn while this node\'s own pods still wait (not settled)', async () => {
    const source = { ...fakeSource(0, 0, twoPods), settled: false, settledCluster: false };
    const agent = fakeAgent();
    const log = fakeLog();
    setTimeout(() => void (agent.stopped = true), 20);
    await settleIdentities(agent, source, log, 1);
    expect(log.lines).toEqual([]);
    expect(agent.flushes).toBe(1);
  });
});
