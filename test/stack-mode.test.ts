import { describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.js';
import { EngineDecider } from '../src/harness/engine-decider.js';
import { parseIp } from '../src/model/cidr.js';
import { RESERVED_IDENTITIES, type StackMode, worldLabels } from '../src/model/identity.js';
import { decideFlow } from '../src/naive/evaluator.js';
import { parseScenario } from '../src/scenario/format.js';
import { runScenario, scenarioEngineOptions } from '../src/scenario/run.js';

/*
 * Attack finding 2050 (docs/attack-findings-26w.md): an outside address carries one world label, by
 * the agent's stack mode (Cilium pkg/labels/cidr.go `addWorldLabel`: reserved:world unless
 * `option.Config.IsDualStack()`, then reserved:world-ipv4 / reserved:world-ipv6), and resolves to one
 * world identity (pkg/identity `GetWorldIdentityFromIP`: 2 single-stack, 9 / 10 dual-stack). Before,
 * distill gave every outside address both labels, so a raw `reserved:world` allow admitted every
 * external dual-stack and a `reserved:world-ipv4` allow admitted IPv4 externals single-stack.
 */

const WORLD_KEYS = new Set(['world', 'world-ipv4', 'world-ipv6']);

/** Every kind of identity an outside address gets: plain world, a CIDR identity, an FQDN identity, an external API server. */
function scenarioText(stack: StackMode): string {
  return `
description: generated (test/stack-mode.test.ts); sources pkg/labels/cidr.go addWorldLabel
stack: ${stack}
allowLocalhost: policy
namespaces: [{name: x}, {name: kube-system}]
pods:
  - {name: x/a, labels: {app: a}, ips: [10.244.1.10, "fd00:10:244:1::10"]}
  - {name: x/b, labels: {app: b}, ips: [10.244.1.11, "fd00:10:244:1::11"]}
  - {name: kube-system/kube-dns, labels: {k8s-app: kube-dns}, ips: [10.96.0.10, "fd00:10:96::10"], ports: [{port: 53, protocol: UDP}]}
externals:
  - {name: plain4, ip: 198.51.100.9}
  - {name: plain6, ip: "2001:db8:ffff::9"}
  - {name: cidr4, ip: 203.0.113.9}
  - {name: cidr6, ip: "2001:db8:1::9"}
  - {name: fqdn4, ip: 192.0.2.1}
  - {name: fqdn6, ip: "2001:db8::1"}
  - {name: api, ip: 198.18.0.1}
apiServer: {addresses: [198.18.0.1]}
policies:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: a, namespace: x}
    spec:
      endpointSelector: {matchLabels: {app: a}}
      ingress:
        - fromCIDR: [203.0.113.0/24, "2001:db8:1::/48"]
      egress:
        - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s:k8s-app: kube-dns}}]
          toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchPattern: "*"}]}}]
        - toFQDNs: [{matchName: api.example.com}]
          toPorts: [{ports: [{port: "443", protocol: TCP}]}]
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: b, namespace: x}
    spec:
      endpointSelector: {matchLabels: {app: b}}
      egress:
        - toEndpoints: [{matchLabels: {"reserved:world": ""}}]
          toPorts: [{ports: [{port: "80", protocol: TCP}]}]
        - toEndpoints: [{matchLabels: {"reserved:world-ipv4": ""}}]
          toPorts: [{ports: [{port: "4444", protocol: TCP}]}]
        - toEndpoints: [{matchLabels: {"reserved:world-ipv6": ""}}]
          toPorts: [{ports: [{port: "6666", protocol: TCP}]}]
steps:
  - changes:
      - {dnsResponse: {pod: x/a, name: api.example.com, ips: [192.0.2.1, "2001:db8::1"], ttl: 3600, server: kube-system/kube-dns}}
    probes:
      - {from: x/b, to: plain4, port: 80}
      - {from: x/b, to: plain4, port: 4444}
      - {from: x/b, to: plain6, port: 6666}
      - {from: x/b, to: cidr4, port: 80}
      - {from: x/b, to: cidr4, port: 4444}
      - {from: x/b, to: cidr6, port: 6666}
      - {from: x/b, to: fqdn4, port: 80}
      - {from: x/b, to: fqdn4, port: 4444}
      - {from: x/b, to: fqdn6, port: 6666}
      - {from: x/b, to: fqdn6, port: 80}
      - {from: x/b, to: api, port: 80}
      - {from: x/b, to: api, port: 4444}
`;
}

/** What x/b reaches per probe: port 80 (reserved:world) single-stack; the family's port (world-ipv4 4444, world-ipv6 6666) dual-stack. */
const EXPECTED: Record<StackMode, boolean[]> = {
  single: [true, false, false, true, false, false, true, false, false, true, true, false],
  dual: [false, true, true, false, true, true, false, true, true, false, false, true],
};

function run(stack: StackMode): { engine: Engine; engineVerdicts: boolean[]; oracleVerdicts: boolean[] } {
  const scenario = parseScenario(scenarioText(stack), 'stack-mode.yaml');
  const engine = new Engine(scenarioEngineOptions(scenario));
  const engineRun = runScenario(scenario, new EngineDecider(engine).decide);
  const oracleRun = runScenario(scenario, decideFlow);
  return { engine, engineVerdicts: engineRun.steps.flatMap((s) => s.results.map((r) => r.allowed)), oracleVerdicts: oracleRun.steps.flatMap((s) => s.results.map((r) => r.allowed)) };
}

describe('stack mode: an outside address has one world label and one world identity (finding 2050)', () => {
  it('worldLabels gives one label: world single-stack, the family\'s dual-stack', () => {
    expect(worldLabels('single', 'ipv4').map((l) => `${l.source}:${l.key}`)).toEqual(['reserved:world']);
    expect(worldLabels('single', 'ipv6').map((l) => `${l.source}:${l.key}`)).toEqual(['reserved:world']);
    expect(worldLabels('dual', 'ipv4').map((l) => `${l.source}:${l.key}`)).toEqual(['reserved:world-ipv4']);
    expect(worldLabels('dual', 'ipv6').map((l) => `${l.source}:${l.key}`)).toEqual(['reserved:world-ipv6']);
  });

  for (const stack of ['single', 'dual'] as const) {
    it(`${stack}: plain, CIDR, FQDN and API-server identities of outside addresses carry exactly the mode's world label`, () => {
      const { engine } = run(stack);
      const addresses: [string, 'ipv4' | 'ipv6'][] = [
        ['198.51.100.9', 'ipv4'], ['2001:db8:ffff::9', 'ipv6'], ['203.0.113.9', 'ipv4'], ['2001:db8:1::9', 'ipv6'],
        ['192.0.2.1', 'ipv4'], ['2001:db8::1', 'ipv6'], ['198.18.0.1', 'ipv4'],
      ];
      const kinds = new Set<string>();
      for (const [text, family] of addresses) {
        const id = engine.identityOfIp(parseIp(text));
        const labels = engine.identityLabels(id) ?? [];
        for (const l of labels) if (l.source !== 'reserved') kinds.add(l.source);
        const worlds = labels.filter((l) => l.source === 'reserved' && WORLD_KEYS.has(l.key)).map((l) => l.key);
        expect(worlds, `${text} (identity ${id})`).toEqual([stack === 'single' ? 'world' : `world-${family}`]);
      }
      // The CIDR, FQDN and API-server identities were all among them.
      expect([...kinds].sort()).toEqual(['cidr', 'fqdn']);
      expect(engine.identityLabels(engine.identityOfIp(parseIp('198.18.0.1')))?.some((l) => l.key === 'kube-apiserver')).toBe(true);
      // Plain outside addresses resolve to the mode's world identity (pkg/identity GetWorldIdentityFromIP).
      expect(engine.identityOfIp(parseIp('198.51.100.9'))).toBe(stack === 'single' ? RESERVED_IDENTITIES.world : RESERVED_IDENTITIES['world-ipv4']);
      expect(engine.identityOfIp(parseIp('2001:db8:ffff::9'))).toBe(stack === 'single' ? RESERVED_IDENTITIES.world : RESERVED_IDENTITIES['world-ipv6']);
      // Each reserved identity keeps its one label: reserved:world does not select world-ipv4 (9) or world-ipv6 (10).
      for (const name of ['world', 'world-ipv4', 'world-ipv6'] as const) {
        expect(engine.identityLabels(RESERVED_IDENTITIES[name])?.map((l) => `${l.source}:${l.key}`)).toEqual([`reserved:${name}`]);
      }
    });

    it(`${stack}: raw reserved:world / world-ipv4 / world-ipv6 selectors admit by the mode, engine and oracle alike`, () => {
      const { engineVerdicts, oracleVerdicts } = run(stack);
      expect(oracleVerdicts).toEqual(EXPECTED[stack]);
      expect(engineVerdicts).toEqual(EXPECTED[stack]);
    });
  }

  it('the default is single-stack (Cilium\'s default install: Helm ipv4.enabled true, ipv6.enabled false)', () => {
    expect(new Engine().stack).toBe('single');
    const text = scenarioText('single').replace('stack: single\n', '');
    const scenario = parseScenario(text, 'default.yaml');
    expect(scenario.stack).toBeUndefined();
    const verdicts = runScenario(scenario, new EngineDecider(new Engine(scenarioEngineOptions(scenario))).decide).steps.flatMap((s) => s.results.map((r) => r.allowed));
    expect(verdicts).toEqual(EXPECTED.single);
  });

  it('refuses a stack mode that is neither, and an engine built for the other mode', () => {
    expect(() => new Engine({ stack: 'triple' as StackMode })).toThrow(/EngineOptions\.stack must be single or dual/);
    expect(() => parseScenario(scenarioText('single').replace('stack: single', 'stack: triple'), 'bad.yaml')).toThrow(/stack/);
    const dual = parseScenario(scenarioText('dual'), 'dual.yaml');
    expect(() => runScenario(dual, new EngineDecider(new Engine({ allowLocalhost: 'policy' })).decide)).toThrow(/the scenario sets stack: dual, the engine was built with single/);
  });
});
