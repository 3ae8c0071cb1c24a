import { isDeepStrictEqual } from 'node:util';
import { describe, expect, it } from 'vitest';
import { generateTrace } from '../../src/churn/profiles.js';
import { replay } from '../../src/churn/replay.js';
import { parseTrace, takeItems } from '../../src/churn/trace.js';
import { readInputUtf8 } from '../../src/cli/input.js';
import { cli, expectBadInput, tmpFile } from '../cli-helpers.js';

// `distill replay` reads its trace as bytes and decodes it line by line (issue 18: the text of a
// cilium-ci trace is 15 MB of garbage through the cold start otherwise), and hands the parsed
// trace to the replay, which drops each event once applied.
const header = '{"distillTrace": 1, "description": "é ünïcode ✓ 𝄞"}';
const ns = '{"type": "upsertNamespace", "name": "a", "labels": {"note": "ok"}}';
const pod = '{"type": "upsertPod", "pod": {"namespace": "a", "name": "p", "labels": {"app": "x"}, "ip": "10.0.0.1"}}';

describe('parseTrace over UTF-8 bytes reads what it reads from the text', () => {
  const texts = [
    [header, ns, pod].join('\n'),
    `${[header, ns, '', '  ', pod].join('\n')}\n`,
    `\ufeff${[header, ns, pod].join('\r\n')}\r\n`,
    `${header}\n{"type": "phase", "name": "initial"}\n${ns}\n{"type": "phase", "name": "churn"}\n${pod}`,
  ];
  it.each(texts.map((t, i) => [i, t] as const))('text %i', (_, text) => {
    // A leading byte-order mark: TextDecoder drops it from the text, the byte reader skips it.
    expect(isDeepStrictEqual(parseTrace(Buffer.from(text, 'utf8'), 't'), parseTrace(text.replace(/^\ufeff/, ''), 't'))).toBe(true);
  });

  it('a generated trace, and a bad line names the same line either way', () => {
    const text = generateTrace({ profile: 'cilium-ci', seed: 3, scale: 0.01 });
    const bytes = new TextEncoder().encode(text);
    expect(isDeepStrictEqual(parseTrace(bytes, 'g'), parseTrace(text, 'g'))).toBe(true);
    const bad = `${[header, ns, '{"type": "upsertPod", "pod": {"namespace": "a"'].join('\n')}\n`;
    expect(() => parseTrace(Buffer.from(bad), 'b.jsonl')).toThrow(/b\.jsonl:3.*not valid JSON/);
  });

  it('readInputUtf8 refuses bytes that are not UTF-8, naming the file; replay says so too', () => {
    const file = tmpFile('bad.jsonl', Buffer.from([0x7b, 0xff, 0xfe, 0x7d]));
    expect(() => readInputUtf8(file)).toThrow(`${file}: is not UTF-8 text`);
    expectBadInput(cli('replay', file), 'is not UTF-8 text');
  });
});

describe('a consuming replay', () => {
  it('empties the trace, and its result equals that of a replay that keeps the trace', () => {
    const text = generateTrace({ profile: 'cilium-ci', seed: 5, scale: 0.01 });
    const kept = parseTrace(text, 'k');
    const given = parseTrace(text, 'k');
    const n = kept.items.length;
    const strip = ({ eventsPerSec: _e, peakHeapBytes: _p, latencyUs, coldStart, ...rest }: ReturnType<typeof replay>): object => ({
      ...rest,
      coldStart: { events: coldStart.events, deltas: coldStart.deltas },
      counts: Object.entries(latencyUs).map(([tag, s]) => [tag, s.count]),
    });
    const a = replay(kept, { mode: 'incremental', verifyEvery: 40 });
    const b = replay(given, { mode: 'incremental', verifyEvery: 40, consume: true });
    expect(strip(b)).toEqual(strip(a));
    expect(a.churnEvents).toBeGreaterThan(0);
    expect(kept.items).toHaveLength(n);
    expect(given.items).toHaveLength(0);
  });

  it('takeItems hands the items over once', () => {
    const t = parseTrace([header, ns, pod].join('\n'), 't');
    expect(takeItems(t)).toHaveLength(2);
    expect(takeItems(t)).toHaveLength(0);
  });
});
