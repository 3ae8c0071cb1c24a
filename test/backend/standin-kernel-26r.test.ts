import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { BpfBackend, bpfUnavailableReason } from '../../src/backend/bpf.js';
import { backendLookup } from '../../src/backend/lookup.js';
import type { WatchItem } from '../../src/k8s/watch.js';

/**
 * Review 26r of 2000 on real kernel maps: the stand-in's deny (precedence 0xffffffff, the transient deny's
 * value) is written to and read back from pinned LPM tries, and beats an identity-0 Admin Accept of priority 0
 * in both directions; a readable value takes it out again. Skips where bpf() is not permitted (as bpf.test.ts).
 */
const unavailable = bpfUnavailableReason();
if (unavailable && process.env.DISTILL_REQUIRE_BPF === '1') throw new Error(`DISTILL_REQUIRE_BPF=1 but ${unavailable}`);
const kernel = unavailable ? describe.skip : describe;
const PIN_ROOT = `/sys/fs/bpf/distill-test-26r-${process.pid}`;
afterAll(() => {
  if (!unavailable) rmSync(PIN_ROOT, { recursive: true, force: true });
});

const logger = pino({ level: 'silent' });
let rv = 1;
const meta = (name: string, extra: Record<string, unknown> = {}) => ({ name, resourceVersion: String(rv++), ...extra });
const podLabels = (app: string): Record<string, string> => ({
  'k8s:app': app,
  'k8s:io.kubernetes.pod.namespace': 'shop',
  'k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name': 'shop',
  'k8s:io.cilium.k8s.policy.cluster': 'default',
  'k8s:io.cilium.k8s.policy.serviceaccount': 'default',
});
const identity = (type: 'ADDED' | 'MODIFIED', id: number, labels: unknown): WatchItem => ({
  type,
  object: { apiVersion: 'cilium.io/v2', kind: 'CiliumIdentity', metadata: meta(String(id)), 'security-labels': labels },
});
const pod = (name: string, node: string, ip: string): WatchItem => ({
  type: 'ADDED',
  object: { apiVersion: 'v1', kind: 'Pod', metadata: meta(name, { namespace: 'shop', labels: { app: name } }), spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip } },
});
const acceptAll: WatchItem = {
  type: 'ADDED',
  object: {
    apiVersion: 'policy.networking.k8s.io/v1alpha2',
    kind: 'ClusterNetworkPolicy',
    metadata: meta('accept-all'),
    spec: {
      tier: 'Admin',
      priority: 0,
      subject: { namespaces: {} },
      ingress: [{ name: 'all-in', action: 'Accept', from: [{ namespaces: {} }] }],
      egress: [{ name: 'all-out', action: 'Accept', to: [{ namespaces: {} }] }],
    },
  },
};

kernel('26r: the stand-in deny in pinned kernel maps', () => {
  it('beats an Admin Accept of priority 0 both ways, and goes with a readable value', () => {
    const backend = new BpfBackend({ pinDir: join(PIN_ROOT, 'a') });
    try {
      const a = new Agent({ node: 'n1', watch: [], backend, logger, registry: new Registry(), identities: 'external' });
      const feed = (...items: WatchItem[]): void => {
        for (const item of items) a.mirror.observe(item, 'test');
        a.flush();
      };
      const verdicts = (id: number): string[] =>
        ['shop/web', 'shop/client'].flatMap((ep) =>
          (['ingress', 'egress'] as const).flatMap((d) =>
            [
              [6, 80],
              [17, 53],
              [1, 8],
            ].map(([proto, port]) => {
              const hit = backendLookup(backend, ep, id, d, proto as number, port as number);
              return `${ep} ${d} ${proto}/${port} ${hit === undefined || hit.entry.deny ? 'deny' : 'allow'}`;
            }),
          ),
        );
      feed(
        { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: meta('shop') } },
        identity('ADDED', 300, podLabels('web')),
        identity('ADDED', 301, podLabels('client')),
        identity('ADDED', 303, podLabels('db')),
        pod('web', 'n1', '10.0.0.2'),
        pod('client', 'n1', '10.0.0.3'),
        pod('db', 'n2', '10.0.1.4'),
        acceptAll,
      );
      expect(verdicts(303).every((v) => v.endsWith('allow'))).toBe(true);
      feed(identity('MODIFIED', 303, { ...podLabels('db'), 'k8s:note': 'x'.repeat(600) }));
      expect(verdicts(303).filter((v) => !v.endsWith('deny'))).toEqual([]);
      expect(verdicts(301).filter((v) => v.startsWith('shop/web') && !v.endsWith('allow'))).toEqual([]);
      const standIn = backend.dump('shop/web').filter((r) => r.key.identity === 303);
      expect(standIn.map((r) => [r.key.direction, r.key.protocol, r.entry.deny, r.entry.precedence]).sort()).toEqual([
        ['egress', 0, true, 0xffffffff],
        ['ingress', 0, true, 0xffffffff],
      ]);
      feed(identity('MODIFIED', 303, podLabels('db')));
      expect(verdicts(303).every((v) => v.endsWith('allow'))).toBe(true);
      // The Accept rule's own entries for 303 (it selects every cluster identity), no deny.
      expect(backend.dump('shop/web').filter((r) => r.key.identity === 303 && r.entry.deny)).toEqual([]);
    } finally {
      backend.close();
    }
  });
});
