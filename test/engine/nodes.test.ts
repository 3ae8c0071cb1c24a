import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { EngineError, EngineEvent, MapCapacityError } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import type { Pod } from '../../src/model/cluster.js';
import { parseManifestFile } from '../../src/policy/manifest.js';
import { EngineDecider } from '../../src/harness/engine-decider.js';
import { decideFlow } from '../../src/naive/evaluator.js';
import { parseScenario } from '../../src/scenario/format.js';
import { runScenario } from '../../src/scenario/run.js';

const ns: EngineEvent = { type: 'upsertNamespace', name: 'prod', labels: {} };
const pod = (name: string, ip: string): Pod => ({ namespace: 'prod', name, labels: { app: name }, ip: parseIp(ip), serviceAccount: 'default', ports: [] });
const node = (name: string, ips: string[], local = false): EngineEvent => ({ type: 'upsertNode', name, ips: ips.map(parseIp), local });
const ipcache = (e: Engine): Map<string, number> => new Map(e.ipcache().map((x) => [x.prefix, x.identity]));
/** An IPv4 address outside every prefix: world (2) under the single-stack default (finding 2050; 9 dual-stack). */
const WORLD4 = 2;

describe('engine: nodes', () => {
  it('node addresses are ipcache host entries: 1 for the own node, 6 for the others; delete and re-address update them', () => {
    const e = new Engine();
    const cs = e.apply([node('a', ['192.168.0.1'], true), node('b', ['192.168.0.2', 'fd00::2'])]);
    expect(cs.ipcache).toEqual([
      { op: 'upsert', prefix: '192.168.0.1/32', identity: 1 },
      { op: 'upsert', prefix: '192.168.0.2/32', identity: 6 },
      { op: 'upsert', prefix: 'fd00::2/128', identity: 6 },
    ]);
    expect(e.identityOfIp(parseIp('fd00::2'))).toBe(6);
    expect(e.apply([node('b', ['192.168.0.3'])]).ipcache).toEqual([
      { op: 'delete', prefix: '192.168.0.2/32', identity: 6 },
      { op: 'upsert', prefix: '192.168.0.3/32', identity: 6 },
      { op: 'delete', prefix: 'fd00::2/128', identity: 6 },
    ]);
    expect(e.apply([{ type: 'deleteNode', name: 'a' }]).ipcache).toEqual([{ op: 'delete', prefix: '192.168.0.1/32', identity: 1 }]);
    expect(e.identityOfIp(parseIp('192.168.0.1'))).toBe(WORLD4);
    expect([...ipcache(e)]).toEqual([['192.168.0.3/32', 6]]);
  });

  it('a node address wins over a pod claiming it; the pod has it back when the node goes', () => {
    const e = new Engine();
    e.apply([ns, { type: 'upsertPod', pod: pod('web', '10.0.0.5') }]);
    const podId = e.identityOfPod('prod/web') as number;
    expect(e.apply([node('n', ['10.0.0.5'])]).ipcache).toEqual([{ op: 'upsert', prefix: '10.0.0.5/32', identity: 6, previous: podId }]);
    expect(ipcache(e).get('10.0.0.5/32')).toBe(6);
    expect(e.apply([{ type: 'deleteNode', name: 'n' }]).ipcache).toEqual([{ op: 'upsert', prefix: '10.0.0.5/32', identity: podId, previous: 6 }]);
  });

  it('two nodes listing one address: it stays a node address until both are gone; host if either is the own node', () => {
    const e = new Engine();
    e.apply([node('a', ['192.168.0.1']), node('b', ['192.168.0.1'])]);
    expect(e.apply([{ type: 'deleteNode', name: 'a' }]).ipcache).toEqual([]);
    expect(e.identityOfIp(parseIp('192.168.0.1'))).toBe(6);
    expect(e.apply([node('c', ['192.168.0.1'], true)]).ipcache).toEqual([{ op: 'upsert', prefix: '192.168.0.1/32', identity: 1, previous: 6 }]);
    expect(e.apply([{ type: 'deleteNode', name: 'c' }]).ipcache).toEqual([{ op: 'upsert', prefix: '192.168.0.1/32', identity: 6, previous: 1 }]);
    expect(e.apply([{ type: 'deleteNode', name: 'b' }]).ipcache).toEqual([{ op: 'delete', prefix: '192.168.0.1/32', identity: 6 }]);
  });

  it('validates node events, naming the field, and refuses the batch as a whole', () => {
    const e = new Engine();
    e.apply([node('a', ['192.168.0.1'])]);
    const bad: [unknown, string][] = [
      [{ type: 'deleteNode', name: 'zz' }, 'node "zz" does not exist'],
      [{ type: 'upsertNode', name: 'b', ips: [] }, 'ips must be a non-empty list'],
      [{ type: 'upsertNode', name: 'b', ips: ['192.168.0.9'] }, 'ips[0] must be an IP address'],
      [{ type: 'upsertNode', name: 'B_', ips: [parseIp('192.168.0.9')] }, 'name: "B_" is not a valid name'],
      [{ type: 'upsertNode', name: 'b', ips: [parseIp('192.168.0.9')], local: 'yes' }, 'local must be true or false'],
    ];
    for (const [event, message] of bad) {
      expect(() => e.apply([node('c', ['192.168.0.7']), event as EngineEvent])).toThrow(message);
      expect([...ipcache(e)]).toEqual([['192.168.0.1/32', 6]]);
    }
    // Deleted then upserted in one batch: valid.
    expect(() => e.apply([{ type: 'deleteNode', name: 'a' }, node('a', ['192.168.0.4'])])).not.toThrow();
    expect(() => e.apply([{ type: 'deleteNode', name: 'a' }, { type: 'deleteNode', name: 'a' }])).toThrow(EngineError);
  });

  it('a refused transaction (full map) undoes its node changes', () => {
    const [policy] = parseManifestFile(
      `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: wide, namespace: prod}
spec:
  endpointSelector: {}
  ingress:
  - toPorts: [{ports: [{port: "1", endPort: 2000}]}]
`,
      'p.yaml',
    );
    const e = new Engine({ mapCapacity: 20 });
    e.apply([ns, { type: 'upsertPod', pod: pod('web', '10.0.0.5'), local: true }, node('a', ['192.168.0.1'])]);
    const before = e.ipcache();
    expect(() => e.apply([node('a', ['192.168.0.2']), node('b', ['192.168.0.3'], true), { type: 'upsertPolicy', policy: policy! }])).toThrow(MapCapacityError);
    expect(e.ipcache()).toEqual(before);
    expect(e.identityOfIp(parseIp('192.168.0.3'))).toBe(WORLD4);
    // The next transaction starts from the committed nodes.
    expect(e.apply([{ type: 'deleteNode', name: 'a' }]).ipcache).toEqual([{ op: 'delete', prefix: '192.168.0.1/32', identity: 6 }]);
  });

  it('an internal error rebuilds the engine with the committed nodes', () => {
    let armed = false;
    const e = new Engine({
      faultHook: (point) => {
        if (armed && !point.startsWith('rebuild:')) throw new Error('boom');
      },
    });
    e.apply([ns, node('a', ['192.168.0.1'], true)]);
    armed = true;
    expect(() => e.apply([node('b', ['192.168.0.2']), { type: 'upsertPod', pod: pod('web', '10.0.0.5'), local: true }])).toThrow('boom');
    armed = false;
    expect([...ipcache(e)]).toEqual([['192.168.0.1/32', 1]]);
    expect(e.apply([{ type: 'deleteNode', name: 'a' }]).ipcache).toEqual([{ op: 'delete', prefix: '192.168.0.1/32', identity: 1 }]);
  });

  it('a ClusterNetworkPolicy Deny with networks denies nodes (all of them: one identity per kind), an Accept admits none', () => {
    const sc = parseScenario(
      `nodes: [{name: n1, ips: [192.168.1.1], local: true}, {name: n2, ips: [192.168.1.2]}, {name: far, ips: [172.16.0.1]}]
pods: [{name: default/client, labels: {role: client}, ip: 10.244.0.11}]
externals: [{name: outside, ip: 192.168.9.9}]
policies:
  - apiVersion: policy.networking.k8s.io/v1alpha2
    kind: ClusterNetworkPolicy
    metadata: {name: deny-net}
    spec:
      tier: Admin
      priority: 10
      subject: {namespaces: {}}
      egress:
        - {name: deny-192, action: Deny, to: [{networks: [192.168.0.0/16]}], protocols: [{tcp: {destinationPort: {number: 80}}}]}
        - {name: allow-192, action: Accept, to: [{networks: [192.168.0.0/16]}], protocols: [{tcp: {destinationPort: {number: 81}}}]}
steps:
  - probes:
      - {from: default/client, to: {node: n1}, port: 80}
      - {from: default/client, to: {node: n2}, port: 80}
      - {from: default/client, to: outside, port: 80}
      - {from: default/client, to: {node: far}, port: 80}
      - {from: default/client, to: {node: n2}, port: 81}
`,
      'cnp.yaml',
    );
    const v = (r: ReturnType<typeof runScenario>): boolean[] => r.steps.flatMap((s) => s.results.map((x) => x.allowed));
    // The API matches networks by address: n1, n2 and outside are denied, far is not, n2 is accepted on 81.
    expect(v(runScenario(sc, decideFlow))).toEqual([false, false, false, true, true]);
    // The engine is never more permissive: far is denied too, and the Accept does not reach n2 (the NP tier's default allow does).
    expect(v(runScenario(sc, new EngineDecider(new Engine()).decide))).toEqual([false, false, false, false, true]);
  });
  it('a ClusterNetworkPolicy Pass with networks denies every node at its level: the Accept of everything after it reaches no node', () => {
    const sc = parseScenario(
      `nodes: [{name: n2, ips: [192.168.1.2]}, {name: far, ips: [172.16.0.1]}]
pods: [{name: default/client, labels: {role: client}, ip: 10.244.0.11}]
externals: [{name: outside, ip: 8.8.4.4}]
policies:
  - apiVersion: policy.networking.k8s.io/v1alpha2
    kind: ClusterNetworkPolicy
    metadata: {name: pass-net}
    spec:
      tier: Admin
      priority: 3
      subject: {namespaces: {}}
      egress:
        - {name: pass-192, action: Pass, to: [{networks: [192.168.0.0/16]}]}
        - {name: accept-all, action: Accept, to: [{networks: [0.0.0.0/0, "::/0"]}]}
  - apiVersion: cilium.io/v2
    kind: CiliumClusterwideNetworkPolicy
    metadata: {name: deny-all-out}
    spec:
      endpointSelector: {matchLabels: {role: client}}
      egressDeny: [{toEntities: [all]}]
steps:
  - probes:
      - {from: default/client, to: {node: n2}, port: 80}
      - {from: default/client, to: {node: far}, port: 80}
      - {from: default/client, to: outside, port: 80}
`,
      'pass.yaml',
    );
    const v = (r: ReturnType<typeof runScenario>): boolean[] => r.steps.flatMap((s) => s.results.map((x) => x.allowed));
    // The API: n2 is passed to the NetworkPolicy tier (denied there), far and outside are accepted.
    expect(v(runScenario(sc, decideFlow))).toEqual([false, true, true]);
    // The engine cannot tell n2 from far (one remote-node identity): both denied, never more open.
    expect(v(runScenario(sc, new EngineDecider(new Engine()).decide))).toEqual([false, false, true]);
  });
});
