import { describe, expect, it } from 'vitest';
import { replay } from '../src/churn/replay.js';
import { parseTrace } from '../src/churn/trace.js';

/** Round 14a (docs/attack-findings-14a.md): hostile traces, metrics and logs. */

const header = '{"distillTrace": 1}';
const ns = '{"type": "upsertNamespace", "name": "a", "labels": {}}';
const churn = '{"type": "phase", "name": "churn"}';
const podLine = (name: string, ip: string, tag: string): string =>
  JSON.stringify({ type: 'upsertPod', pod: { namespace: 'a', name, labels: { app: name }, ip }, tag });

describe('580. a trace tag is a key of the replay summary', () => {
  it('tags named after Object.prototype members are reported as any other tag', () => {
    const tags = ['__proto__', 'constructor', 'toString', 'hasOwnProperty'];
    const trace = parseTrace([header, ns, churn, ...tags.map((t, i) => podLine(`p${i}`, `10.0.0.${i + 1}`, t))].join('\n'), 't.jsonl');
    const r = replay(trace, { mode: 'incremental' });
    const json = JSON.parse(JSON.stringify(r)) as { latencyUs: Record<string, { count: number }> };
    expect(Object.keys(json.latencyUs).sort()).toEqual([...tags].sort());
    for (const t of tags) expect(Object.getOwnPropertyDescriptor(json.latencyUs, t)?.value).toMatchObject({ count: 1 });
    expect(Object.getPrototypeOf(r.latencyUs)).not.toHaveProperty('count');
  });
});
