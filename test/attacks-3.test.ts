import { describe, expect, it } from 'vitest';
import { podEndpoint } from '../src/k8s/objects.js';

/**
 * Attack review round 3 (scenarios: fixtures/scenarios/attacks-3/). The agent's reading of a Pod
 * whose containers share a port name: Cilium's Endpoint.SetK8sMetadata keeps the last port of
 * each name (NamedPortMap.AddPort: `npm[name] = pp`); earlier ones lose the name.
 */
describe('agent: a port name shared by two containers', () => {
  it('names only the last port, as Cilium does; the others keep number and protocol', () => {
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'server', namespace: 'x', labels: { app: 'server' } },
      spec: {
        nodeName: 'n1',
        containers: [
          { name: 'a', ports: [{ name: 'http', containerPort: 80 }, { name: 'dns', containerPort: 53, protocol: 'UDP' }] },
          { name: 'b', ports: [{ name: 'http', containerPort: 8080 }, { name: 'dns', containerPort: 5353, protocol: 'TCP' }, { containerPort: 9000 }] },
        ],
      },
      status: { phase: 'Running', podIP: '10.0.0.1' },
    };
    const ep = podEndpoint(pod, 'n1', 'w');
    expect(ep.pod?.ports).toEqual([
      { port: 80, protocol: 'TCP' },
      { port: 53, protocol: 'UDP' },
      { name: 'http', port: 8080, protocol: 'TCP' },
      { name: 'dns', port: 5353, protocol: 'TCP' },
      { port: 9000, protocol: 'TCP' },
    ]);
  });
});
