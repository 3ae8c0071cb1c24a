import { describe, expect, it } from 'vitest';
import { generateTrace } from '../../src/churn/profiles.js';
import { replay } from '../../src/churn/replay.js';
import { parseTrace } from '../../src/churn/trace.js';

// Finding 870 (docs/attack-findings-17s.md): the replay's cluster model (MutableCluster) dropped
// `dnsResponse` and `advanceTime`, so `--verify-every` on a toFQDNs trace reported a divergence at
// the first learnt answer and `--mode full` recomputed engines that had learnt no address.

const answer = (endpoint: string, ip: string): object => ({ type: 'dnsResponse', endpoint, name: 'bucket-1.s3.us-east-1.amazonaws.com', ips: [ip], ttl: 60, server: { ip: '10.0.0.1', port: 53 }, tag: 'dns' });

/** The fqdn profile's initial phase (kube-dns, 100 local clients, the S3 policy), then `churn`. */
function fqdnTrace(churn: object[]): string {
  const lines = generateTrace({ profile: 'fqdn', seed: 2, churnEvents: 0 }).trimEnd().split('\n');
  return [...lines, ...churn.map((e) => JSON.stringify(e))].join('\n') + '\n';
}

describe('replay of DNS events keeps its cluster model (870)', () => {
  it('--verify-every 1 on a generated toFQDNs trace finds no divergence; full mode writes what incremental mode writes', () => {
    const text = generateTrace({ profile: 'fqdn', seed: 2, churnEvents: 40 });
    const inc = replay(parseTrace(text, 'fqdn.jsonl'), { mode: 'incremental', verifyEvery: 1 });
    expect(inc.verifications).toBe(40);
    const full = replay(parseTrace(text, 'fqdn.jsonl'), { mode: 'full' });
    expect({ deltas: full.deltas, l7Deltas: full.l7Deltas, mapEntries: full.mapEntries }).toEqual({ deltas: inc.deltas, l7Deltas: inc.l7Deltas, mapEntries: inc.mapEntries });
  });

  it('a pod deleted, or moved off the node, takes its answers out of the model, as out of the engine', () => {
    const churn = [
      answer('apps/client-0', '52.0.0.1'),
      { type: 'deletePod', namespace: 'apps', name: 'client-0', tag: 'pod-remove' },
      answer('apps/client-1', '52.0.0.2'),
      { type: 'upsertPod', pod: { namespace: 'apps', name: 'client-1', labels: { app: 'client-1' }, ip: '10.0.0.3' }, local: false, tag: 'pod-move' },
      answer('apps/client-2', '52.0.0.3'),
      { type: 'advanceTime', seconds: 30, tag: 'clock' },
      { type: 'deleteNamespace', name: 'apps', tag: 'namespace-remove' },
    ];
    const r = replay(parseTrace(fqdnTrace(churn), 'moves.jsonl'), { mode: 'incremental', verifyEvery: 1 });
    expect(r.verifications).toBe(churn.length);
  });
});
