import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { MemoryBackend } from '../../src/backend/memory.js';

/*
 * Finding 1269 (docs/attack-findings-19u.md): /healthz named only the first of several causes, so an
 * operator fixing it learnt of the next only after the fix. Every cause is now one line of the body.
 */

const ev = (type: string, object: object): string => JSON.stringify({ type, object });

it('1269. notReady names every cause, one per line: an unreadable stream and a stream awaiting its relist', async () => {
  const work = mkdtempSync(join(tmpdir(), 'distill-1269-'));
  try {
    const ns = join(work, 'ns.json');
    writeFileSync(ns, ev('ADDED', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } }));
    const gone = join(work, 'gone.json');
    const status = { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410, message: 'too old resource version' };
    writeFileSync(gone, `${ev('ERROR', status)}\n`);
    const trunc = join(work, 'trunc.json');
    writeFileSync(trunc, '{"type":"ADDED","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"');
    const agent = new Agent({ node: 'n1', watch: [ns, gone, trunc], backend: new MemoryBackend(), logger: pino({ level: 'silent' }), registry: new Registry(), exitAtEof: true });
    await agent.run();
    await agent.stop();
    const lines = (agent.notReady ?? '').split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^watch stream unreadable \(.*trunc\.json\)/);
    expect(lines[1]).toMatch(/^watch stream error not followed by a relist .*gone\.json/);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
