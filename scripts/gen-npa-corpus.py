#!/usr/bin/env python3
"""Restates kubernetes-sigs/network-policy-api conformance tests as distill scenarios.

Usage: gen-npa-corpus.py <network-policy-api checkout> <out dir>

Reads conformance/tests/*.go and conformance/base/**.yaml at the checkout and writes one scenario
per ConformanceTest: the base manifests as policies, each t.Run as steps (a step ends where the Go
test patches a policy or a namespace or deletes a policy), each PokeServer as a probe with the
test's expected verdict. Tests that need node peers or host-network pods are skipped (distill
refuses the experimental `nodes` peer). The Go test interpretation is narrow on purpose: an
unknown mutation aborts the run instead of producing a wrong scenario.
"""
import copy
import os
import re
import subprocess
import sys

import yaml

REPO, OUT = sys.argv[1], sys.argv[2]


class NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data):
        return True

NAMESPACES = {
    'network-policy-conformance-gryffindor': ('gryffindor', 'harry-potter', 1),
    'network-policy-conformance-slytherin': ('slytherin', 'draco-malfoy', 2),
    'network-policy-conformance-hufflepuff': ('hufflepuff', 'cedric-diggory', 3),
    'network-policy-conformance-ravenclaw': ('ravenclaw', 'luna-lovegood', 4),
}
# The declared (named) container ports of every StatefulSet in conformance/base/manifests.yaml.
PORTS = [{'name': 'web', 'port': 80, 'protocol': 'TCP'}, {'name': 'dns', 'port': 53, 'protocol': 'UDP'}]


def show(path):
    return subprocess.run(['git', '-C', REPO, 'show', f'HEAD:{path}'], check=True, capture_output=True, text=True).stdout


def ls(path):
    out = subprocess.run(['git', '-C', REPO, 'ls-tree', '--name-only', 'HEAD', path + '/'], check=True, capture_output=True, text=True).stdout
    return sorted(out.split())


def pod_ip(ns, name):
    return f'10.244.{NAMESPACES[ns][2]}.{10 + int(name.rsplit("-", 1)[1])}'


def setup():
    nss = [{'name': ns, 'labels': {'conformance-house': house}} for ns, (house, _, _) in NAMESPACES.items()]
    pods = []
    for ns, (house, sts, _) in NAMESPACES.items():
        for i in range(2):
            name = f'{sts}-{i}'
            pods.append({'name': f'{ns}/{name}', 'labels': {'conformance-house': house}, 'ip': pod_ip(ns, name), 'ports': PORTS})
    return nss, pods


TOKEN = re.compile(
    r'(?P<getpod>(?P<pv>\w+)\s*:?=\s*kubernetes\.GetPod\(t, s\.Client, "(?P<pns>[^"]+)", "(?P<pname>[^"]+)")'
    r'|(?P<getcnp>kubernetes\.GetClusterNetworkPolicy\(t, s\.Client, "(?P<cnp>[^"]+)")'
    r'|(?P<deepcopy>mutate := cnp\.DeepCopy\(\))'
    r'|(?P<strvar>(?P<sv>\w+) := "(?P<sval>[^"]*)")'
    r'|(?P<rulecopy>(?P<rv>\w+) := mutate(?:\.DeepCopy\(\))?\.Spec\.(?P<rdir>Ingress|Egress)\[(?P<ri>\d+)\])'
    r'|(?P<swap>mutate\.Spec\.(?P<sd1>Ingress|Egress)\[(?P<si1>\d+)\] = mutate\.Spec\.(?P<sd2>Ingress|Egress)\[(?P<si2>\d+)\])'
    r'|(?P<assign>mutate\.Spec\.(?P<ad>Ingress|Egress)\[(?P<ai>\d+)\] = (?P<av>\w+)\s*\n)'
    r'|(?P<action>mutate\.Spec\.(?P<actd>Ingress|Egress)\[(?P<acti>\d+)\]\.Action = api\.ClusterNetworkPolicyRuleAction(?P<act>\w+))'
    r'|(?P<prio>mutate\.Spec\.Priority = (?P<pval>\d+))'
    r'|(?P<named>(?P<nv>\w+)\.Protocols = \[\]api\.ClusterNetworkPolicyProtocol\{\s*\{\s*DestinationNamedPort: (?P<nport>\w+),?\s*\},?\s*\})'
    r'|(?P<newrule>newRule := \[\]api\.ClusterNetworkPolicyEgressRule\{.*?Name:\s*"(?P<nrname>[^"]+)",\s*Action:\s*"(?P<nract>\w+)",.*?Networks: \[\]api\.CIDR\{(?P<nrcidrs>.*?)\},.*?\n\t\t\t\})'
    r'|(?P<prepend>mutate\.Spec\.Egress = append\(newRule, mutate\.Spec\.Egress\.\.\.\))'
    r'|(?P<patchcnp>kubernetes\.PatchClusterNetworkPolicy\()'
    r'|(?P<getns>kubernetes\.GetNamespace\(t, s\.Client, "(?P<gns>[^"]+)")'
    r'|(?P<setlabels>SetLabels\(map\[string\]string\{(?P<labels>[^}]*)\}\))'
    r'|(?P<npname>Namespace:\s*"(?P<npns>[^"]+)",\s*Name:\s*"(?P<npn>[^"]+)")'
    r'|(?P<delete>s\.Client\.Delete\(ctx, np\))'
    r'|(?P<poke>kubernetes\.PokeServer\(t, s\.ClientSet, &s\.KubeConfig, "(?P<cns>[^"]+)", "(?P<cpod>[^"]+)", "(?P<proto>\w+)",\s*(?P<ipv>\w+)\.Status\.PodIP, int32\((?P<port>\d+)\), s\.TimeoutConfig, (?P<ok>true|false)\))'
    r'|(?P<other>mutate\.\w+[^\n]*)',
    re.S,
)


class Test:
    def __init__(self, name, manifests):
        self.name = name
        self.policies = {}
        self.order = []
        for m in manifests:
            for doc in yaml.safe_load_all(show('conformance/' + m)):
                if doc:
                    key = (doc['kind'], doc['metadata']['name'])
                    self.policies[key] = doc
                    self.order.append(key)
        self.steps = []
        self.changes = []
        self.probes = []

    def flush(self):
        if self.probes:
            self.steps.append({'changes': self.changes, 'probes': [p for p, _ in self.probes],
                               'expect': [{'probe': i, ('deny' if ok else 'allow'): []} for i, (_, ok) in enumerate(self.probes)]})
            self.changes, self.probes = [], []

    def change(self, c):
        if self.probes:
            self.flush()
        self.changes.append(c)


def run_block(test, body):
    pods, strs, tmp = {}, {}, {}
    mutate = cnp_name = ns_name = np_ref = new_rule = None
    for m in TOKEN.finditer(body):
        g = m.groupdict()
        if g['getpod']:
            pods[g['pv']] = (g['pns'], g['pname'])
        elif g['getcnp']:
            cnp_name = g['cnp']
        elif g['deepcopy']:
            mutate = copy.deepcopy(test.policies[('ClusterNetworkPolicy', cnp_name)])
        elif g['strvar']:
            strs[g['sv']] = g['sval']
        elif g['rulecopy']:
            tmp[g['rv']] = copy.deepcopy(mutate['spec'][g['rdir'].lower()][int(g['ri'])])
        elif g['swap']:
            mutate['spec'][g['sd1'].lower()][int(g['si1'])] = copy.deepcopy(mutate['spec'][g['sd2'].lower()][int(g['si2'])])
        elif g['assign']:
            mutate['spec'][g['ad'].lower()][int(g['ai'])] = tmp[g['av']]
        elif g['action']:
            mutate['spec'][g['actd'].lower()][int(g['acti'])]['action'] = g['act']
        elif g['prio']:
            mutate['spec']['priority'] = int(g['pval'])
        elif g['named']:
            tmp[g['nv']]['protocols'] = [{'destinationNamedPort': strs[g['nport']]}]
        elif g['newrule']:
            vars_ = re.findall(r'api\.CIDR\((\w+)\.Status\.PodIP \+ mask\)', g['nrcidrs'])
            new_rule = {'name': g['nrname'], 'action': g['nract'], 'to': [{'networks': [pod_ip(*pods[v]) + '/32' for v in vars_]}]}
        elif g['prepend']:
            mutate['spec']['egress'] = [new_rule] + mutate['spec']['egress']
        elif g['patchcnp']:
            test.policies[('ClusterNetworkPolicy', cnp_name)] = mutate
            test.change({'apply': copy.deepcopy(mutate)})
        elif g['getns']:
            ns_name = g['gns']
        elif g['setlabels']:
            labels = dict(re.findall(r'"([^"]+)":\s*"([^"]*)"', g['labels']))
            test.change({'setNamespaceLabels': {'namespace': ns_name, 'labels': labels}})
        elif g['npname']:
            np_ref = (g['npns'], g['npn'])
        elif g['delete']:
            test.change({'delete': {'kind': 'NetworkPolicy', 'namespace': np_ref[0], 'name': np_ref[1]}})
        elif g['poke']:
            server = pods[g['ipv']]
            probe = {'from': f'{g["cns"]}/{g["cpod"]}', 'to': f'{server[0]}/{server[1]}', 'port': int(g['port']), 'protocol': g['proto'].upper()}
            test.probes.append((probe, g['ok'] == 'true'))
        else:
            raise SystemExit(f'{test.name}: cannot interpret {g["other"]!r}')
    test.flush()


def tests_in(path):
    src = show(path)
    blocks = re.split(r'\nvar (\w+) = suite\.ConformanceTest\{', src)
    for i in range(1, len(blocks), 2):
        name, body = blocks[i], blocks[i + 1]
        manifests = re.findall(r'"(base/[^"]+\.yaml)"', body.split('Test: func', 1)[0])
        runs = re.split(r't\.Run\("', body)[1:]
        yield name, manifests, [(r.split('"', 1)[0], r) for r in runs]


def main():
    os.makedirs(OUT, exist_ok=True)
    nss, pods = setup()
    written = 0
    for path in ls('conformance/tests'):
        if not path.endswith('.go') or path.endswith('main.go'):
            continue
        for name, manifests, runs in tests_in(path):
            if any('experimental-egress-selector' in m for m in manifests):
                print(f'skip {name}: node peers (experimental, refused by distill) and host-network pods', file=sys.stderr)
                continue
            test = Test(name, manifests)
            for title, body in runs:
                start = len(test.steps)
                run_block(test, body)
                for s in test.steps[start:]:
                    s.setdefault('description', title)
            scenario = {
                'description': f'network-policy-api conformance {name} ({path} at the fetched commit; manifests {", ".join(manifests)})',
                'namespaces': nss,
                'pods': pods,
                'policies': [copy.deepcopy(Test(name, manifests).policies[k]) for k in test.order],
                'steps': [{k: v for k, v in s.items() if k != 'description'} for s in test.steps],
            }
            fname = re.sub(r'(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])', '-', name).lower().removeprefix('cnp-') + '.yaml'
            with open(os.path.join(OUT, fname), 'w') as f:
                f.write(f'# Generated by scripts/gen-npa-corpus.py from kubernetes-sigs/network-policy-api {path}.\n')
                for i, s in enumerate(test.steps):
                    f.write(f'# steps[{i}]: {s["description"]}\n')
                yaml.dump(scenario, f, Dumper=NoAliases, sort_keys=False, default_flow_style=None, width=200)
            written += 1
    print(f'{written} scenarios', file=sys.stderr)


main()
