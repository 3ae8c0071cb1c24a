import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import { comparableMaps } from '../../src/harness/cluster-sync.js';
import { parseManifest } from '../../src/policy/manifest.js';

/**
 * A namespace's deletion deletes its policies in every stage a `deletePolicy` reaches. The node
 * table kept a deleted namespace's `kube-apiserver` deny (its stand-in, held until the API server's
 * addresses are known) and gave it back to the resolver when they became known, so a pod of a
 * namespace made again under that name got the deny (fail-closed; incremental != fresh; found by
 * api-server.property, seed -2135846487, on 22be3da).
 */
const cnp = (ns: string, spec: object): EngineEvent => ({ type: 'upsertPolicy', policy: parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'cnp-a', namespace: ns }, spec }, 'cnp.yaml') });
const pod = (ns: string): EngineEvent => ({ type: 'upsertPod', pod: { namespace: ns, name: 'p0', labels: {}, ip: parseIp('10.0.0.5'), serviceAccount: 'default', ports: [] }, local: true });

describe('deleteNamespace', () => {
  it('leaves nothing of its policies: the maps equal a fresh engine fed the cluster after it', () => {
    const deny = { endpointSelector: {}, egressDeny: [{ toEntities: ['kube-apiserver'], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }] };
    const e = new Engine();
    e.apply([{ type: 'upsertNamespace', name: 'n2', labels: {} }]);
    e.apply([cnp('n2', deny)]);
    e.apply([{ type: 'deleteNamespace', name: 'n2' }, { type: 'setApiServer', addresses: [parseIp('192.168.1.8')] }]);
    e.apply([{ type: 'upsertNamespace', name: 'n2', labels: {} }, pod('n2')]);
    const fresh = new Engine();
    fresh.apply([{ type: 'setApiServer', addresses: [parseIp('192.168.1.8')] }, { type: 'upsertNamespace', name: 'n2', labels: {} }, pod('n2')]);
    expect(comparableMaps(e)).toEqual(comparableMaps(fresh));
  });
});
