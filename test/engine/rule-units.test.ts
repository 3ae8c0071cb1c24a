import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { portKeys, PortKey } from '../../src/engine/rule-units.js';
import { portRangeToPrefixes } from '../../src/model/policy-map.js';
import { PORT_PROTOCOLS, PROTOCOL_NUMBER, type FlowProtocol, type L4Match, type RuleProtocol } from '../../src/model/ports.js';
import { fcReplay, fcRuns } from '../fc-knobs.js';

/** The general expansion: every protocol of the clause, every prefix of the range. */
function reference(protocol: RuleProtocol, from: number, to: number): PortKey[] {
  const protocols: readonly FlowProtocol[] = protocol === 'ANY' ? PORT_PROTOCOLS : [protocol as FlowProtocol];
  return protocols.flatMap((p) =>
    from === 0 ? [{ protocol: PROTOCOL_NUMBER[p], port: 0, portPrefixLen: 0 }] : portRangeToPrefixes(from, to).map((m) => ({ protocol: PROTOCOL_NUMBER[p], port: m.port, portPrefixLen: m.prefixLen })),
  );
}

describe('portKeys', () => {
  it('the one-prefix shortcut gives the keys of the general expansion', () => {
    const range = fc
      .tuple(fc.constantFrom<RuleProtocol>('TCP', 'UDP', 'SCTP', 'ANY'), fc.integer({ min: 0, max: 16 }), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }))
      .map(([protocol, bits, a, b]) => {
        // Half the cases aligned power-of-two blocks (the shortcut), half arbitrary ranges.
        if (a % 2 === 0) {
          const size = 2 ** bits;
          const from = Math.floor(a / size) * size;
          return { protocol, from, to: Math.min(0xffff, from + size - 1) };
        }
        return { protocol, from: Math.min(a, b), to: Math.max(a, b) };
      });
    fc.assert(
      fc.property(range, ({ protocol, from, to }) => {
        const l4: L4Match = { kind: 'range', protocol, from, to };
        expect(portKeys(l4, () => [])).toEqual(reference(protocol, from, to));
      }),
      { numRuns: fcRuns(2000), ...fcReplay() },
    );
  });
});
