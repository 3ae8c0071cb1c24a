import { pino } from 'pino';
import { Registry } from 'prom-client';
import { Agent, type AgentConfig } from '../../src/agent/agent.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';

const logger = pino({ level: 'silent' });

/**
 * An agent on node n1 with a memory backend and no watch: `settle` observes items and flushes until idle, `decide`
 * reads the backend's map of `endpoint` for the peer holding `peer` (the engine's ipcache), TCP, `port` (80).
 */
export function settledAgent(config: Partial<AgentConfig> = {}) {
  const backend = config.backend ?? new MemoryBackend();
  const agent = new Agent({ node: 'n1', watch: [], logger, registry: new Registry(), ...config, backend });
  const settle = (items: readonly WatchItem[]): void => {
    for (const item of items) agent.mirror.observe(item, 'test');
    agent.flush();
    for (let i = 0; i < 50 && !agent.mirror.idle; i++) agent.flush();
  };
  const decide = (endpoint: string, peer: string, dir: 'ingress' | 'egress', port = 80): 'allow' | 'deny' => {
    const hit = backendLookup(backend, endpoint, agent.engine.identityOfIp(parseIp(peer)), dir, 6, port);
    return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
  };
  return { agent, backend, settle, decide };
}
