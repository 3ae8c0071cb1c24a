import { describe, expect, it } from 'vitest';
import { cli } from './cli-helpers.js';

// The small items 19u reported and left (docs/attack-findings-19u.md 1272), closed in the twentieth session.

const STAR_WARS = 'fixtures/scenarios/cilium-docs/l7-star-wars.yaml';

describe('1272. trace', () => {
  it('prints one blank line, not two, before "neither side is a pod"', () => {
    const t = cli('trace', '--scenario', STAR_WARS, '--from', '1.2.3.4', '--to', '5.6.7.8', '--port', '80/TCP');
    expect(t.code).toBe(0);
    expect(t.out).toBe('1.2.3.4 -> 5.6.7.8 80/TCP: FORWARDED\n\nneither side is a pod: nothing enforces policy on this flow\n');
  });

  it('refuses port 0 for TCP/UDP/SCTP (no flow goes to it) and keeps ICMP types 0..255, as scenario probes do', () => {
    for (const proto of ['TCP', 'UDP', 'SCTP']) {
      const t = cli('trace', '--scenario', STAR_WARS, '--from', 'default/tiefighter', '--to', 'default/deathstar', '--port', `0/${proto}`);
      expect(t.code).toBe(2);
      expect(t.err).toContain(`--port: 0 is out of range for ${proto} (ports 1..65535)`);
    }
    expect(cli('trace', '--scenario', STAR_WARS, '--from', 'default/tiefighter', '--to', 'default/deathstar', '--port', '0/ICMP').code).toBe(0);
    const t = cli('trace', '--scenario', STAR_WARS, '--from', 'default/tiefighter', '--to', 'default/deathstar', '--port', '256/ICMP');
    expect(t.code).toBe(2);
    expect(t.err).toContain('--port: 256 is out of range for ICMP (types 0..255)');
  });
});
