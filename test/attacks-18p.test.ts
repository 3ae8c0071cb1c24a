import { describe, expect, it } from 'vitest';
import { parseManifest } from '../src/policy/manifest.js';
import { failClosedStandIn } from '../src/policy/stand-in.js';
import type { Policy } from '../src/model/rules.js';
import { cnp, errorOf } from './policy/helpers.js';

/*
 * Round 18p (docs/attack-findings-18p.md): manifest readers, keys whose reading depends on Cilium's
 * key parser.
 */

function thrown(doc: unknown): unknown {
  try {
    parseManifest(doc, 'f');
  } catch (e) {
    return e;
  }
  return undefined;
}

/** The agent's policy for `doc`: the policy, or its fail-closed stand-in (src/k8s/mirror.ts `policyOf`). */
function agentPolicy(doc: unknown): Policy | undefined {
  const e = thrown(doc);
  return e === undefined ? parseManifest(doc, 'f') : failClosedStandIn(doc, 'f', e);
}

const denyAll = expect.objectContaining({ kind: 'selector', entity: 'all' });

describe('950. a Cilium selector key without ":" that starts with "reserved." (Cilium: the reserved label; distill read a pod label key)', () => {
  // labels.GetExtendedKeyFrom -> ParseSource(str, ':'): `if i < 0 { if delim != '.' && strings.HasPrefix(str, "reserved.") { return "reserved", ... } }`.
  const denyWorld = cnp({ endpointSelector: { matchLabels: { app: 'server' } }, ingressDeny: [{ fromEndpoints: [{ matchLabels: { 'reserved.world': '' } }] }] });
  const allowHost = cnp({ endpointSelector: { matchLabels: { app: 'server' } }, ingress: [{ fromEndpoints: [{ matchExpressions: [{ key: 'reserved.host', operator: 'Exists' }] }] }] });

  it('is not supported by distill, in matchLabels and matchExpressions (read as any:reserved.world before)', () => {
    const e = errorOf(() => parseManifest(denyWorld, 'f'));
    expect(e.fieldPath).toBe('spec.ingressDeny[0].fromEndpoints[0].matchLabels["reserved.world"]');
    expect(e.message).toMatch(/reserved label "reserved:world".*not supported by distill/);
    expect(errorOf(() => parseManifest(allowHost, 'f')).fieldPath).toBe('spec.ingress[0].fromEndpoints[0].matchExpressions[0].key');
  });

  it('so the agent denies every peer where the deny was (before: a deny of pods labelled reserved.world, world open)', () => {
    const p = agentPolicy(denyWorld);
    const deny = p?.rules.filter((x) => x.verdict === 'deny') ?? [];
    expect(deny).toHaveLength(1);
    expect(deny[0]!.peers).toEqual([denyAll]);
  });

  it('and drops the allow, keeping the isolation (before: an allow of any pod its owner labels reserved.host)', () => {
    const p = agentPolicy(allowHost);
    expect(p).toBeDefined();
    expect(p!.enforcements.map((x) => x.direction)).toEqual(['ingress']);
    expect(p!.rules.flatMap((x) => x.peers)).toEqual([]);
  });

  it('keeps reading reserved:world, $host, k8s:reserved.x and :reserved.x as before', () => {
    for (const k of ['reserved:world', '$host', 'k8s:reserved.x', ':reserved.x', 'xreserved.x', 'reserved']) {
      expect(() => parseManifest(cnp({ endpointSelector: {}, ingressDeny: [{ fromEndpoints: [{ matchLabels: { [k]: '' } }] }] }), 'f')).not.toThrow();
    }
  });
});

describe('951. a Cilium selector key with "=" (GetExtendedKeyFrom cuts it there; refused before, so the agent skipped the policy)', () => {
  const doc = cnp({ endpointSelector: { matchLabels: { app: 'server' } }, ingressDeny: [{ fromEndpoints: [{ matchLabels: { 'k8s:app=x': 'client' } }] }], ingress: [{ fromEndpoints: [{}] }] });

  it('is not supported by distill', () => {
    const e = errorOf(() => parseManifest(doc, 'f'));
    expect(e.fieldPath).toBe('spec.ingressDeny[0].fromEndpoints[0].matchLabels["k8s:app=x"]');
    expect(e.message).toMatch(/cuts a key at '=' \(the key "k8s:app"\).*not supported by distill/);
  });

  it('so the agent enforces the stand-in (no policy at all before): the deny denies every peer, the allow stays', () => {
    const p = agentPolicy(doc);
    expect(p).toBeDefined();
    expect(p!.rules.filter((x) => x.verdict === 'deny').flatMap((x) => x.peers)).toEqual([denyAll]);
    expect(p!.rules.filter((x) => x.verdict === 'allow')).toHaveLength(1);
  });

  it('in a subject, it is still refused whole (no stand-in can name the subject)', () => {
    const subject = cnp({ endpointSelector: { matchLabels: { 'app=x': 'server' } }, ingress: [{}] });
    expect(agentPolicy(subject)).toBeUndefined();
  });
});

describe('952. a `cidrgroup:` key in an endpoint selector (the labels CiliumCIDRGroup objects give CIDR identities)', () => {
  const group = 'cidrgroup:io.cilium.policy.cidrgroupname/bad';
  const deny = cnp({ endpointSelector: { matchLabels: { app: 'server' } }, ingressDeny: [{ fromEndpoints: [{ matchLabels: { 'reserved:world': '', [group]: '' } }] }] });
  const allowOutside = cnp({ endpointSelector: { matchLabels: { app: 'server' } }, ingress: [{ fromEndpoints: [{ matchLabels: { 'reserved:world': '' }, matchExpressions: [{ key: group, operator: 'DoesNotExist' }] }] }] });

  it('is not supported by distill, as a `cidr:` key (before: a deny of nothing, an allow of all of world)', () => {
    expect(errorOf(() => parseManifest(deny, 'f')).message).toMatch(/`cidrgroup:` label key .* not supported by distill/);
    expect(errorOf(() => parseManifest(allowOutside, 'f')).fieldPath).toBe('spec.ingress[0].fromEndpoints[0]');
  });

  it('so the agent denies every peer where the deny was, and drops the allow', () => {
    expect(agentPolicy(deny)!.rules.filter((x) => x.verdict === 'deny').flatMap((x) => x.peers)).toEqual([denyAll]);
    expect(agentPolicy(allowOutside)!.rules.flatMap((x) => x.peers)).toEqual([]);
  });
});
