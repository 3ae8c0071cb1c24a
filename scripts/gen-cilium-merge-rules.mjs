// Transcribes Cilium's Test_MergeRules (pkg/policy/distillery_test.go) into distill scenarios:
// 256 cases, one per subset of eight ingress rules selected by the bits of the case number, as
// upstream's generateRule does (an absent rule is replaced by an empty `ingress: [{}]` rule, as
// upstream's rule____NoAllow / rule_____NoDeny). The endpoint is "foo"; the peers are another pod
// of foo's identity and a pod of identity "bar", on TCP/80 (the port the rules name) and TCP/81.
//
// Expected verdicts are read off upstream's expected map states (the hand-written cases 0-31 and
// the raw table of generateMapStates for 32-255, turned into keys by testCaseToMapState), looked
// up as the datapath does: per flow the L3L4 key (foo, TCP/80), the L4 key (any, TCP/80) and the
// L3 key (foo, any). In every row of that table:
//   - a deny key covers the flow when: L3 deny (bit 5) for foo on any port; L4 deny (bit 6) for
//     TCP/80 from anyone; L3L4 deny (bit 7) for foo on TCP/80 (rows 32-255);
//   - else TCP/80 from bar: a redirect when the L4 key carries L7 (bit 3), an allow when the L4
//     key is a plain allow (bit 1), else nothing;
//   - else TCP/80 from foo: a redirect when bit 3 or the L3L4 L7 rule (bit 4) is set (upstream
//     suppresses a plain L3L4 allow under an L4 redirect: cases 12-15), an allow when bit 1 or the
//     L3L4 allow (bit 2) is set, else the L3 allow (bit 0);
//   - TCP/81 from foo: the L3 allow (bit 0); from bar: nothing.
// Nothing matching = denied (every case has an ingress rule, so ingress is default-deny).
//
// Test_MergeRulesWithNamedPorts (cases 0-31, the port named) is generated the same way.
//
//   node scripts/gen-cilium-merge-rules.mjs   # rewrites fixtures/conformance/cilium-tests/merge-rules-*.yaml
import { mkdirSync, writeFileSync } from 'node:fs';
import { Document, isCollection, visit } from 'yaml';

const OUT = new URL('../fixtures/conformance/cilium-tests/', import.meta.url);
mkdirSync(OUT, { recursive: true });

const foo = { matchLabels: { foo: '' } };

/** Upstream's rulesIdx, bit i = rule i (the names are upstream's), with the port written as `port`. */
function rules(port) {
  const port80 = [{ ports: [{ port, protocol: 'TCP' }] }];
  const port80Http = [{ ports: [{ port, protocol: 'TCP' }], rules: { http: [{ method: 'GET', path: '/' }] } }];
  return [
  ['l3-allow', 'ruleL3____Allow', { ingress: [{ fromEndpoints: [foo] }] }],
  ['l4-allow', 'rule__L4__Allow', { ingress: [{ toPorts: port80 }] }],
  ['l3l4-allow', 'ruleL3L4__Allow', { ingress: [{ fromEndpoints: [foo], toPorts: port80 }] }],
  ['l4l7-allow', 'rule__L4L7Allow', { ingress: [{ toPorts: port80Http }] }],
  ['l3l4l7-allow', 'ruleL3L4L7Allow', { ingress: [{ fromEndpoints: [foo], toPorts: port80Http }] }],
  ['l3-deny', 'ruleL3_____Deny', { ingressDeny: [{ fromEndpoints: [foo] }] }],
  ['l4-deny', 'rule__L4___Deny', { ingressDeny: [{ toPorts: port80 }] }],
  ['l3l4-deny', 'ruleL3L4___Deny', { ingressDeny: [{ fromEndpoints: [foo], toPorts: port80 }] }],
  ];
}

const bit = (c, i) => ((c >> i) & 1) === 1;

/** The verdict of one flow in case c: 'deny', 'allow' or 'proxy' (see the header). */
function verdict(c, peer, port) {
  if (peer === 'foo' && bit(c, 5)) return 'deny';
  if (port === 80 && bit(c, 6)) return 'deny';
  if (peer === 'foo' && port === 80 && bit(c, 7)) return 'deny';
  if (port === 81) return peer === 'foo' && bit(c, 0) ? 'allow' : 'deny';
  if (bit(c, 3)) return 'proxy';
  if (peer === 'bar') return bit(c, 1) ? 'allow' : 'deny';
  if (bit(c, 4)) return 'proxy';
  return bit(c, 1) || bit(c, 2) || bit(c, 0) ? 'allow' : 'deny';
}

const PEERS = [['foo', 'x/foo-peer'], ['bar', 'x/bar']];
const PORTS = [80, 81];

/** The slots whose rule differs from the previous case's (the first case applies all eight). */
function step(RULES, c) {
  const changed = RULES.map((_, i) => i).filter((i) => c % 32 === 0 || bit(c, i) !== bit(c - 1, i));
  const changes = changed.map((i) => RULES[i]).map(([name, , spec], j) => ({
    apply: {
      apiVersion: 'cilium.io/v2',
      kind: 'CiliumNetworkPolicy',
      metadata: { name: `r${changed[j]}-${name}`, namespace: 'x' },
      spec: { endpointSelector: foo, ...(bit(c, changed[j]) ? spec : { ingress: [{}] }) },
    },
  }));
  const probes = [];
  const expect = [];
  for (const [peer, pod] of PEERS) {
    for (const port of PORTS) {
      const v = verdict(c, peer, port);
      const probe = probes.length;
      probes.push({ from: pod, to: 'x/foo', port, protocol: 'TCP' });
      const pair = `${pod}->x/foo`;
      expect.push({ probe, allow: v === 'deny' ? [] : [pair] });
      expect.push({ probe, proxied: v === 'proxy' ? [pair] : [] });
    }
  }
  return { changes, probes, expect };
}

const BLOCK = 32;
/**
 * Test_MergeRules: cases 0-255 on port "80". Test_MergeRulesWithNamedPorts: its cases 0-31 (allows only) are
 * cases 0-31 of Test_MergeRules with the port named "port-80" (rule__npL4__Allow, ruleL3npL4__Allow, ...) and
 * the same expected map states; the endpoint's container port port-80 is TCP 80.
 */
const TESTS = [
  { test: 'Test_MergeRules', prefix: 'merge-rules', port: '80', cases: 256, ports: undefined },
  { test: 'Test_MergeRulesWithNamedPorts', prefix: 'merge-rules-named-ports', port: 'port-80', cases: 32, ports: [{ name: 'port-80', port: 80, protocol: 'TCP' }] },
];
for (const { test, prefix, port, cases, ports } of TESTS) {
  const RULES = rules(port);
  for (let first = 0; first < cases; first += BLOCK) {
    writeBlock(test, prefix, RULES, first, ports);
  }
}

function writeBlock(test, prefix, RULES, first, ports) {
  const last = first + BLOCK - 1;
  const description =
    `Cilium pkg/policy/distillery_test.go ${test}, cases ${first}-${last} (step i = case ${first} + i), ` +
    'restated by scripts/gen-cilium-merge-rules.mjs: the rules of a case are the bits of its number (generateRule: ' +
    RULES.map(([, v], i) => `bit ${i} ${v}`).join(', ') +
    `; port ${JSON.stringify(RULES[1][2].ingress[0].toPorts[0].ports[0].port)}/TCP; an absent rule is an empty ingress rule, CNP r<bit>-<name>; ` +
    'each step applies the slots that change). Verdicts follow the expected map state of each case (cases 0-31 ' +
    'written out, 32-255 from generateMapStates/testCaseToMapState) looked up as the datapath does: a deny key ' +
    'covering the flow drops it, an L4 redirect beats an L3L4 allow (cases 12-15 suppress the L3L4 entry), no ' +
    "key = dropped. Endpoint x/foo; x/foo-peer has foo's identity, x/bar is identity bar. Cilium 1.19.";
  const endpoint = { name: 'x/foo', labels: { foo: '', blue: '' }, ...(ports ? { ports } : {}) };
  const doc = {
    description,
    namespaces: [{ name: 'x', labels: {} }],
    pods: [
      endpoint,
      { name: 'x/foo-peer', labels: { foo: '', blue: '' } },
      { name: 'x/bar', labels: { bar: '', blue: '' } },
    ],
    steps: Array.from({ length: BLOCK }, (_, i) => step(RULES, first + i)),
  };
  const name = `${prefix}-${String(first).padStart(3, '0')}-${String(last).padStart(3, '0')}.yaml`;
  const yaml = new Document(doc, { aliasDuplicateObjects: false });
  // Short collections on one line, as the hand-written scenarios are.
  visit(yaml, (_, node) => {
    if (isCollection(node) && JSON.stringify(node.toJSON()).length <= 100) node.flow = true;
  });
  writeFileSync(new URL(name, OUT), yaml.toString({ lineWidth: 0, flowCollectionPadding: false }));
}
