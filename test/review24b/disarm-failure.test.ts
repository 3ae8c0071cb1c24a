import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BpfBackend, bpfUnavailableReason, pinName } from '../../src/backend/bpf.js';
import type { MapDelta } from '../../src/engine/events.js';
import type { PolicyKey } from '../../src/model/policy-map.js';

/**
 * Review 24b of finding 1810's fix (checkSpec: replace, then disarm the old map). The old map's
 * disarm can fail after the pin already names the replacement (here: the old map is frozen, so the
 * kernel refuses its deletes with EPERM; the same state follows a crash between the rename and the
 * disarm). The open throws, but its state change stays: the pin now names a map of the wanted
 * spec, so the next open does no replacement and no disarm, and the program still loaded with the
 * old map keeps its allows for good while every write goes to the new map.
 */
const kernel = bpfUnavailableReason() ? describe.skip : describe;
const EP = 'ns/web';
const key: PolicyKey = { identity: 1000, direction: 'ingress', protocol: 6, port: 80, portPrefixLen: 16 };
const allow: MapDelta = { endpoint: EP, op: 'upsert', key, entry: { deny: false, proxyPort: 0, precedence: 0 } };
const bpftool = (...args: string[]): string => execFileSync('bpftool', args, { encoding: 'utf8' });
const mapId = (path: string): number => (JSON.parse(bpftool('-j', 'map', 'show', 'pinned', path)) as { id: number }).id;

/** A map of capacity 1024 allowing identity 1000 on TCP/80, also pinned at `held` (the endpoint program's reference), then frozen. */
function setUp(root: string): { pinDir: string; path: string; heldDir: string } {
  const pinDir = join(root, 'policy');
  const b1 = new BpfBackend({ pinDir, capacity: 1024 });
  b1.create(EP);
  b1.apply(EP, [allow]);
  b1.close();
  const path = join(pinDir, pinName(EP));
  const heldDir = join(root, 'held');
  mkdirSync(dirname(join(heldDir, pinName(EP))), { recursive: true });
  bpftool('map', 'pin', 'pinned', path, join(heldDir, pinName(EP)));
  bpftool('map', 'freeze', 'pinned', path);
  return { pinDir, path, heldDir };
}

kernel('review24b: a failed disarm at open (finding 1810 fix)', () => {
  it('an open whose disarm fails leaves the pin on the old map (state unchanged on failure)', () => {
    const root = mkdtempSync('/sys/fs/bpf/distill-test-review24b-');
    try {
      const { pinDir, path } = setUp(root);
      const before = mapId(path);
      const b2 = new BpfBackend({ pinDir, capacity: 2048 });
      try {
        expect(() => b2.dump(EP), 'the old map cannot be disarmed: the open fails').toThrow();
      } finally {
        b2.close();
      }
      expect(mapId(path), 'the failed open moved the pin to its replacement').toBe(before);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('after a failed disarm, the next writer does not succeed while the old map still allows', () => {
    const root = mkdtempSync('/sys/fs/bpf/distill-test-review24b-');
    try {
      const { pinDir, heldDir } = setUp(root);
      const b2 = new BpfBackend({ pinDir, capacity: 2048 });
      try {
        expect(() => b2.dump(EP)).toThrow();
      } finally {
        b2.close();
      }
      // The retry (the agent restarted, or its next reconcile) deletes the allow.
      const b3 = new BpfBackend({ pinDir, capacity: 2048 });
      let retry: unknown;
      try {
        b3.apply(EP, [{ ...allow, op: 'delete' }]);
        expect(b3.lookup(EP, 1000, 'ingress', 6, 80), 'the writer says: denied').toBeUndefined();
      } catch (e) {
        retry = e;
      } finally {
        b3.close();
      }
      const held = new BpfBackend({ pinDir: heldDir, capacity: 1024, readOnly: true });
      const program = held.lookup(EP, 1000, 'ingress', 6, 80);
      held.close();
      expect(retry !== undefined || program === undefined || program.entry.deny, 'the retry succeeded while the program loaded with the old map still allows TCP/80').toBe(true);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('remove disarms the map it holds open even when its pin is already gone (finding 1811 fix)', () => {
    const root = mkdtempSync('/sys/fs/bpf/distill-test-review24b-');
    try {
      const pinDir = join(root, 'policy');
      const b = new BpfBackend({ pinDir, capacity: 1024 });
      try {
        b.create(EP);
        b.apply(EP, [allow]);
        const path = join(pinDir, pinName(EP));
        const heldDir = join(root, 'held');
        mkdirSync(dirname(join(heldDir, pinName(EP))), { recursive: true });
        bpftool('map', 'pin', 'pinned', path, join(heldDir, pinName(EP)));
        // Another hand unlinks the pin (an operator, a cleanup run) while the writer holds the map's fd.
        rmSync(path);
        b.remove(EP);
      } finally {
        b.close();
      }
      const held = new BpfBackend({ pinDir: join(root, 'held'), capacity: 1024, readOnly: true });
      const program = held.lookup(EP, 1000, 'ingress', 6, 80);
      held.close();
      expect(program === undefined || program.entry.deny, 'the removed endpoint\'s map still allows TCP/80 for a program holding it').toBe(true);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
