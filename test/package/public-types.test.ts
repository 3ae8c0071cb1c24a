import { describe, expect, it } from 'vitest';
import { Engine, parseManifest, podEndpoint, type FqdnEvent, type LabelSet, type ParseOptions, type RuleOrigin } from '../../src/index.js';

// Finding 1266: types the public signatures take or return, nameable from the package (tsc -p
// tsconfig.test.json fails on 400db28, where src/index.ts did not export them).
describe('public types an embedder names', () => {
  it('ParseOptions (parseManifest), FqdnEvent (apply), RuleOrigin (enforcedBy), LabelSet (identityLabels)', () => {
    const options: ParseOptions = { l7Proxy: false };
    const policy = parseManifest({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'deny', namespace: 'shop' }, spec: { podSelector: {}, policyTypes: ['Ingress'] } }, 'np.yaml', options);
    const engine = new Engine();
    const ep = podEndpoint({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'a', namespace: 'shop' }, spec: { nodeName: 'n', containers: [{ name: 'c' }] }, status: { podIP: '10.0.0.2' } }, 'n', 'pods.json');
    if (ep.pod === null) throw new Error(ep.reason);
    const tick: FqdnEvent = { type: 'advanceTime', seconds: 1 };
    engine.apply([{ type: 'upsertNamespace', name: 'shop', labels: {} }, { type: 'upsertPod', pod: ep.pod, local: ep.local }, { type: 'upsertPolicy', policy }, tick]);
    const origins: RuleOrigin[] = engine.enforcedBy('shop/a', 'ingress');
    expect(origins.map((o) => o.policy.name)).toEqual(['deny']);
    const labels: LabelSet | undefined = engine.identityLabels(engine.identityOfPod('shop/a')!);
    expect(labels).toBeDefined();
  });
});
