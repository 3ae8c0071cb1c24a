import type { Agent } from './agent.js';
import type { EtcdIdentitySource } from './etcd-identities.js';

/** How many pods the wait's warning names. */
const WAIT_NAMES = 10;

/** What the wait reads of the agent, the etcd identity source and the log. */
type SettlingAgent = Pick<Agent, 'stopped' | 'flush'>;
type SettlingSource = Pick<EtcdIdentitySource, 'settled' | 'settledCluster' | 'peek' | 'waitingFor'>;
interface WarnLog {
  warn(fields: object, msg: string): void;
}

/** The warning once this node's pods hold their identities and remote pods still wait for theirs. */
function warnWaiting(source: SettlingSource, logger: WarnLog): void {
  const w = source.waitingFor(WAIT_NAMES);
  const some = (names: string[], count: number): string => names.join(', ') + (count > names.length ? `, … (${count} in all)` : '');
  const who = w.nodeCount > 0 ? `node(s) ${some(w.nodes, w.nodeCount)}` : 'their nodes';
  logger.warn(w, `--exit-at-eof: the streams ended and this node's pods hold their identities; waiting for the identities of remote pods, which their nodes' agents allocate in etcd: start the agent of ${who} (pods ${some(w.pods, w.podCount)})`);
}

/**
 * With etcd identities, `--exit-at-eof` waits (polling every `pollMs`) until this node's pods hold their ids, every pod
 * it knows and does not hold fail-closed has one (remote pods: from their nodes' agents; 2845) and the engine has
 * applied them all; or until the agent is stopped. Waiting on other nodes' agents is said once: with none running it
 * lasts until stopped.
 */
export async function settleIdentities(agent: SettlingAgent, source: SettlingSource, logger: WarnLog, pollMs = 20): Promise<void> {
  let told = false;
  while (!agent.stopped && !(source.settledCluster && source.peek().length === 0)) {
    if (!told && source.settled && !source.settledCluster) {
      told = true;
      warnWaiting(source, logger);
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
  agent.flush();
}
