import fc from 'fast-check';

/** The L7 properties' policy shape: a subject by `app`, 0-2 rules per direction from `ruleArb`. */
export function l7PolicyArb(ruleArb: (dir: 'from' | 'to') => fc.Arbitrary<Record<string, unknown>>): fc.Arbitrary<Record<string, unknown>> {
  const rulesArb = (dir: 'from' | 'to') => fc.oneof({ weight: 2, arbitrary: fc.constant(undefined) }, { weight: 3, arbitrary: fc.array(ruleArb(dir), { minLength: 1, maxLength: 2 }) });
  return fc.record({
    endpointSelector: fc.constantFrom({}, { matchLabels: { app: 'x' } }, { matchLabels: { app: 'y' } }),
    ingress: rulesArb('from'),
    egress: rulesArb('to'),
  })
    // Cilium 1.19 Rule.Sanitize refuses a rule with neither (finding 713): these tests compare what is enforced.
    .filter((s) => s.ingress !== undefined || s.egress !== undefined)
    .map((s) => JSON.parse(JSON.stringify(s)) as Record<string, unknown>);
}
