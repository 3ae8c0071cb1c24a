import { describe, expect, it } from 'vitest';
import { cli } from './cli-helpers.js';

// Round 21u (docs/attack-findings-21u.md): a Kubernetes/Cilium user's first runs of distill on real manifests.

const STAR_WARS = 'fixtures/scenarios/cilium-docs/l7-star-wars.yaml';

describe('1600. a mistyped required option is named as unknown, with a suggestion', () => {
  it('reach --scenaro FILE: unknown option, did you mean --scenario', () => {
    const r = cli('reach', '--scenaro', STAR_WARS);
    expect(r.code).toBe(2);
    expect(r.err).toBe("error: unknown option '--scenaro'\n(Did you mean --scenario?)\n(run 'distill reach --help' for usage)\n");
  });
  it('trace --form POD: unknown option, did you mean --from', () => {
    const r = cli('trace', '--scenario', STAR_WARS, '--form', 'default/xwing', '--to', 'default/deathstar', '--port', '80/TCP');
    expect(r.code).toBe(2);
    expect(r.err).toBe("error: unknown option '--form'\n(Did you mean --from?)\n(run 'distill trace --help' for usage)\n");
  });
  it('a required option really missing (and nothing unknown) is still reported as missing', () => {
    const r = cli('trace', '--scenario', STAR_WARS, '--to', 'default/deathstar', '--port', '80/TCP');
    expect(r.code).toBe(2);
    expect(r.err).toBe("error: required option '--from <peer>' not specified\n(run 'distill trace --help' for usage)\n");
  });
});
