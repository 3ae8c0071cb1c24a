import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CILIUM, k8sAllows, type Endpoint, type KCluster, type KExternal, type KPod, type NamedPort, type Proto } from './k8s-np.js';

/**
 * The hand-picked k8s-diff scenarios, checked by the independent reader alone (no distill code):
 * their expectations are then confirmed by two readers, distill's (test/conformance.test.ts) and
 * this one. The reader takes the subset of the scenario format these files use: namespaces, pods
 * with explicit IPs, externals, policies, `apply`, `addPod` and `setPodLabels` changes, probes and expectations.
 */
const DIR = 'fixtures/conformance/k8s-diff';
type Doc = Record<string, unknown>;
const arr = (v: unknown): Doc[] => (Array.isArray(v) ? (v as Doc[]) : []);
const labelsOf = (v: unknown): Record<string, string> => (typeof v === 'object' && v !== null ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, String(x)])) : {});

function readPod(p: Doc): KPod {
  const [namespace = '', name = ''] = String(p.name).split('/');
  const ports: NamedPort[] = arr(p.ports).map((q) => ({ name: String(q.name), port: Number(q.port), protocol: (q.protocol ?? 'TCP') as Proto }));
  const ips = Array.isArray(p.ips) ? p.ips.map(String) : [String(p.ip)];
  return { namespace, name, ip: ips[0] ?? '', ips, labels: labelsOf(p.labels), ports };
}
const podName = (p: KPod): string => `${p.namespace}/${p.name}`;
const policyKey = (p: Doc): string => { const m = p.metadata as Doc; return `${String(m.namespace)}/${String(m.name)}`; };

function check(file: string): string[] {
  const doc = parse(readFileSync(file, 'utf8')) as Doc;
  let pods = arr(doc.pods).map(readPod);
  let policies = arr(doc.policies);
  const externals: KExternal[] = arr(doc.externals).map((e) => ({ name: String(e.name), ip: String(e.ip) }));
  const namespaces = new Map(arr(doc.namespaces).map((n) => [String(n.name), labelsOf(n.labels)]));
  const out: string[] = [];
  arr(doc.steps).forEach((step, si) => {
    for (const c of arr(step.changes)) {
      if (c.apply) policies = [...policies.filter((p) => policyKey(p) !== policyKey(c.apply as Doc)), c.apply as Doc];
      else if (c.setPodLabels) { const sl = c.setPodLabels as Doc; pods = pods.map((p) => (podName(p) === sl.pod ? { ...p, labels: labelsOf(sl.labels) } : p)); }
      else if (c.addPod) { const np = readPod(c.addPod as Doc); pods = [...pods.filter((p) => podName(p) !== podName(np)), np]; }
      else throw new Error(`${file}: change ${JSON.stringify(c)} is not read here`);
    }
    const cluster: KCluster = { namespaces, pods, externals, policies };
    const ep = (name: string): Endpoint => { const pod = pods.find((p) => podName(p) === name); return pod ? { pod } : { external: externals.find((e) => e.name === name) ?? (() => { throw new Error(`${file}: unknown ${name}`); })() }; };
    const probes = arr(step.probes);
    probes.forEach((pr, pi) => {
      const froms = pr.from === undefined ? pods.map(podName) : [String(pr.from)];
      const tos = pr.to === undefined ? pods.map(podName) : [String(pr.to)];
      const protocol = String(pr.protocol ?? 'TCP').toUpperCase() as Proto;
      const allowed = new Set<string>();
      const all: string[] = [];
      for (const f of froms) for (const t of tos) {
        if (f === t) continue;
        all.push(`${f}->${t}`);
        if (k8sAllows(cluster, { src: ep(f), dst: ep(t), protocol, port: Number(pr.port) }, CILIUM)) allowed.add(`${f}->${t}`);
      }
      for (const e of arr(step.expect).filter((x) => Number(x.probe ?? 0) === pi)) {
        const want = e.allow !== undefined ? new Set((e.allow as string[])) : new Set(all.filter((p) => !(e.deny as string[]).includes(p)));
        for (const p of all) if (want.has(p) !== allowed.has(p)) out.push(`step ${si} probe ${pi} ${p}: expected ${want.has(p) ? 'allow' : 'deny'}`);
      }
    });
  });
  return out;
}

describe('k8s-diff scenarios through the independent reader', () => {
  const files = readdirSync(DIR).filter((f) => f.endsWith('.yaml')).sort();
  it('has the hand-picked scenarios', () => expect(files.length).toBeGreaterThanOrEqual(10));
  for (const f of files) it(f, () => expect(check(join(DIR, f))).toEqual([]));
});
