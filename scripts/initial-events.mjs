// The events of a parsed trace's initial phase (everything before its first churn phase), as
// `distill replay` applies them in one cold-start transaction: the bench scripts' shared reading.
export function initialEvents(trace) {
  const firstChurn = trace.items.findIndex((i) => i.kind === 'phase' && i.name !== 'initial');
  return trace.items.slice(0, firstChurn < 0 ? trace.items.length : firstChurn).flatMap((i) => (i.kind === 'event' ? [i.event] : []));
}
