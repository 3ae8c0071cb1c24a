import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { parseIp } from '../../src/model/cidr.js';
import { STACK_MODES } from '../../src/model/identity.js';
import { Kernel } from './kernel-view.js';

/*
 * Finding 2240 (docs/attack-findings-27e.md): the property tests' kernel view (kernel-view.ts) gave an address no
 * ipcache entry covers world-ipv4 (9) / world-ipv6 (10) while the engines it mirrors run single-stack, where the
 * engine, the oracle and the agent's kernel ipcache (/0 entries, backend/ipcache-content.ts) say world (2). The view
 * now follows the engine's stack mode, default single as the engine's.
 */
describe('2240: the kernel view falls back to the engine’s world', () => {
  const ADDRESSES = ['8.8.8.8', '192.0.2.1', '2001:db8::5', '::1'];
  it('by default, as a default engine', () => {
    const engine = new Engine();
    const kernel = new Kernel();
    for (const a of ADDRESSES) expect({ a, id: kernel.identityOf(parseIp(a)) }).toEqual({ a, id: engine.identityOfIp(parseIp(a)) });
  });
  it.each(STACK_MODES)('%s-stack', (stack) => {
    const engine = new Engine({ stack });
    const kernel = new Kernel(stack);
    for (const a of ADDRESSES) expect({ a, id: kernel.identityOf(parseIp(a)) }).toEqual({ a, id: engine.identityOfIp(parseIp(a)) });
  });
});
