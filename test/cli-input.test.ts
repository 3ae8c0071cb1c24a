import { existsSync, mkdirSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bpfUnavailableReason } from '../src/backend/bpf.js';
import { DEFAULT_MAX_INPUT_BYTES } from '../src/cli/input.js';
import { runCli } from '../src/cli/main.js';
import { cli, expectBadInput, hasStack, tmpDir, tmpFile } from './cli-helpers.js';

const L4 = 'fixtures/scenarios/cilium-docs/l4.yaml';

describe('exit codes of the in-process CLI', () => {
  it('help and version exit 0; usage errors (missing option, unknown option, bad choice, no command) exit 2', () => {
    expect(cli('--help').code).toBe(0);
    expect(cli('verify', '--help').code).toBe(0);
    expect(cli('--version')).toMatchObject({ code: 0, out: expect.stringMatching(/^\d+\.\d+\.\d+\n$/) as unknown });
    for (const args of [['verify'], ['verify', '--scenario', L4, '--nope'], ['verify', '--scenario', L4, '--backend', 'disk'], [], ['frobnicate'], ['gen', '--profile', 'nope']]) {
      const r = cli(...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err).toMatch(/^error: /m);
      expect(hasStack(r.err)).toBe(false);
    }
  });
  it('a bug (an unexpected error) is exit 70 with "internal error:", the stack only with DISTILL_DEBUG=1', () => {
    const run = (): { code: number; err: string } => {
      let err = '';
      const code = runCli(['verify', '--scenario', L4], { out: () => { throw new TypeError('boom'); }, err: (s) => (err += s) });
      return { code, err };
    };
    const plain = run();
    expect(plain).toEqual({ code: 70, err: 'internal error: boom\n' });
    process.env.DISTILL_DEBUG = '1';
    try {
      const debug = run();
      expect(debug.code).toBe(70);
      expect(hasStack(debug.err)).toBe(true);
    } finally {
      delete process.env.DISTILL_DEBUG;
    }
  });
  it('a kind or apiVersion that is an object (a toString key included) is bad input, exit 2, not an internal error', () => {
    const dir = tmpDir();
    for (const [field, doc] of [
      ['kind', 'apiVersion: cilium.io/v2\nkind: {toString: 1}\nmetadata: {name: a, namespace: b}\nspec: {}\n'],
      ['apiVersion', 'apiVersion: {toString: 1}\nkind: CiliumNetworkPolicy\nmetadata: {name: a, namespace: b}\nspec: {}\n'],
      ['kind', 'apiVersion: v1\nkind: {valueOf: 1}\nmetadata: {name: a}\n'],
    ] as const) {
      const f = tmpFile(`${field}.yaml`, doc, dir);
      const r = cli('validate', f);
      expectBadInput(r, f);
      expect(r.err).toContain(`${field}: expected a string`);
    }
  });
  it('runs a scenario and never touches process.exitCode', () => {
    const before = process.exitCode;
    const r = cli('verify', '--scenario', L4);
    expect(r.code).toBe(0);
    expect(r.out).toContain('engine and naive evaluator agree on all');
    expect(process.exitCode).toBe(before);
  });
});

describe('bad input exits 2 naming the path, never a stack trace (issue 11 item 10)', () => {
  it('a directory symlink loop: the walk names the link and where it leads', () => {
    const dir = tmpDir();
    mkdirSync(join(dir, 'd', 'sub'), { recursive: true });
    symlinkSync('..', join(dir, 'd', 'sub', 'up'));
    for (const args of [['verify', '--scenario', join(dir, 'd')], ['reach', '--scenario', join(dir, 'd')], ['validate', join(dir, 'd')]]) {
      const r = cli(...args);
      expectBadInput(r, join(dir, 'd', 'sub', 'up'));
      expect(r.err).toContain('symbolic link loop');
    }
    symlinkSync('self', join(dir, 'self'));
    expectBadInput(cli('validate', join(dir, 'self')), join(dir, 'self'));
  });
  it('a directory reached twice by two links is walked once, not reported as a loop', () => {
    const dir = tmpDir();
    mkdirSync(join(dir, 'real'));
    tmpFile('a.yaml', '{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: a, namespace: x}, spec: {podSelector: {}}}\n', join(dir, 'real'));
    symlinkSync(join(dir, 'real'), join(dir, 'link'));
    const r = cli('validate', dir);
    expect(r.code, r.err).toBe(0);
    expect(r.out.trim().split('\n')).toHaveLength(1);
  });
  it('/dev/zero stops at the input cap instead of reading forever', () => {
    for (const args of [['validate', '/dev/zero'], ['verify', '--scenario', '/dev/zero'], ['replay', '/dev/zero']]) {
      const r = cli('--max-input-bytes', '64k', ...args);
      expectBadInput(r, '/dev/zero');
      expect(r.err).toContain('larger than the input limit of 65536 bytes');
    }
  });
  it('a regular file over the cap is refused before it is read; the default cap is documented in --help', () => {
    const r = cli('verify', '--scenario', L4, '--max-input-bytes', '100');
    expectBadInput(r, L4);
    expect(cli('--help').out).toContain(`default: ${DEFAULT_MAX_INPUT_BYTES / 1024 ** 2}M`);
    expectBadInput(cli('--max-input-bytes', '0', 'validate', L4), '--max-input-bytes');
    expectBadInput(cli('--max-input-bytes', '9G', 'validate', L4), '--max-input-bytes');
  });
  it('missing files, a directory where a file is needed, non-UTF-8 text', () => {
    expectBadInput(cli('validate', '/nonexistent/x.yaml'), '/nonexistent/x.yaml: no such file or directory');
    expectBadInput(cli('verify', '--scenario', '/nonexistent'), '/nonexistent');
    expectBadInput(cli('replay', 'fixtures'), 'fixtures: is a directory');
    expectBadInput(cli('maps', 'dump', '--scenario', 'fixtures', '--endpoint', 'a/b'), 'fixtures: is a directory');
    expectBadInput(cli('validate', tmpFile('bin.yaml', Buffer.from([0xfe, 0xfe, 0xff, 0xfe]))), 'is not UTF-8 text');
    expectBadInput(cli('validate', tmpFile('odd16.yaml', Buffer.from([0xff, 0xfe, 0x61]))), 'is not UTF-16 text');
  });
  it('2472: a manifest in UTF-16 with its byte order mark is read, as kubectl reads it (cli-runtime FileVisitor: BOMOverride)', () => {
    const text = 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a, namespace: x}\nspec: {podSelector: {}}\n';
    const le = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]);
    const be = Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from(text, 'utf16le').swap16()]);
    for (const [name, bytes] of [['le.yaml', le], ['be.yaml', be]] as const) {
      const r = cli('validate', tmpFile(name, bytes));
      expect(r, name).toMatchObject({ code: 0, out: expect.stringContaining('1 policies') as unknown });
    }
  });
  it('input nested more than 64 levels is refused before any reader recurses over it (V8 aborts the process when a regex compiles near a stack overflow)', () => {
    const nest = (d: number): string => '{"a":['.repeat(d) + '1' + ']}'.repeat(d);
    for (const [name, text] of [
      ['m.yaml', `{"apiVersion":"cilium.io/v2","kind":"CiliumNetworkPolicy","metadata":{"name":"p","namespace":"x"},"spec":{"endpointSelector":{"matchLabels":${nest(40)}}}}`],
      ['s.yaml', `pods: ${nest(40)}`],
      ['t.jsonl', `{"distillTrace":1}\n{"type":"upsertPolicy","manifest":${nest(40)}}\n`],
    ] as const) {
      const f = tmpFile(name, text);
      const r = name === 'm.yaml' ? cli('validate', f) : name === 's.yaml' ? cli('verify', '--scenario', f) : cli('replay', f);
      expectBadInput(r, f);
      expect(r.err).toContain('more than 64 levels deep');
    }
  });

  it('YAML nested deeper than the yaml package can compose is refused before it composes (finding 526)', () => {
    // ~800 flow levels overflow the composer's recursion; a regular expression compiled there aborts V8
    // ("RegExpCompiler Allocation failed", a fuzz worker in CI). Flow and block nesting, scenario and manifest.
    const flow = (d: number): string => '['.repeat(d) + ']'.repeat(d);
    const block = (d: number): string => Array.from({ length: d }, (_, i) => `${' '.repeat(i)}k${i}:`).join('\n') + ' 1\n';
    for (const [name, text, args] of [
      ['flow.yaml', `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  description: ${flow(1000)}\n`, ['validate', '-f']],
      ['block.yaml', `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n${block(2000).replace(/^/gm, '  ')}`, ['validate', '-f']],
      ['scenario.yaml', `pods: ${flow(1000)}\n`, ['verify', '--scenario']],
    ] as const) {
      const f = tmpFile(name, text);
      const r = cli(...args, f);
      expectBadInput(r, f);
      expect(r.err, name).toContain('more than 64 levels deep');
      expect(r.err, name).not.toContain('call stack');
    }
  });

  it('deep nesting is bad input, not a crash', () => {
    const deep = tmpFile('deep.yaml', '['.repeat(100_000));
    expectBadInput(cli('validate', deep), deep);
    expectBadInput(cli('verify', '--scenario', deep), deep);
    const deepTrace = tmpFile('deep.jsonl', `{"distillTrace":1}\n{"type":"upsertPolicy","manifest":${'['.repeat(100_000)}${']'.repeat(100_000)}}\n`);
    expectBadInput(cli('replay', deepTrace), deepTrace);
  });
  it('a probe over every pair of 3,000 pods (9 million flows from a 50 kB file) is refused, not run', () => {
    const pods = Array.from({ length: 3000 }, (_, i) => `{name: x/p${i}}`).join(', ');
    const file = tmpFile('many.yaml', `pods: [${pods}]\nsteps: [{probes: [{port: 80}]}]\n`);
    const r = cli('verify', '--scenario', file);
    expectBadInput(r, `${file} steps[0].probes[0]: covers 9000000 pod pairs, over the 25000 flows a scenario may probe`);
  });
  it('gen stops at the input cap (a trace replay could not read back) instead of building it', () => {
    const r = cli('--max-input-bytes', '100k', 'gen', '--profile', 'realistic');
    expectBadInput(r, 'the trace would be larger than 102400 bytes');
    expect(r.out).toBe('');
    expect(cli('--max-input-bytes', '100k', 'gen', '--profile', 'small').code).toBe(0);
  });
  it('proxy-port exhaustion (more L7 redirects than the 10001-port range) names the scenario', () => {
    const pods = Array.from({ length: 101 }, (_, i) => `{name: x/p${i}, labels: {app: a}}`).join(', ');
    // Cilium takes at most 40 ports per port rule (PortRule.Validate): 100 ports in 4 port rules.
    const ports = (from: number, n: number) => Array.from({ length: n }, (_, i) => `{port: '${from + i}', protocol: TCP}`).join(', ');
    const toPorts = [0, 25, 50, 75].map((o) => `{ports: [${ports(1000 + o, 25)}], rules: {http: [{method: GET}]}}`).join(', ');
    const file = tmpFile('ports.yaml', `pods: [${pods}]
policies:
  - {apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: l7, namespace: x},
     spec: {endpointSelector: {}, ingress: [{toPorts: [${toPorts}]}]}}
steps: [{probes: [{from: x/p0, to: x/p1, port: 1000}]}]
`);
    const r = cli('verify', '--scenario', file);
    expectBadInput(r, file);
    expect(r.err).toContain('no free proxy port');
  });
});

function traceWithBadLine(): { file: string; line: number } {
  const lines = [
    '{"distillTrace":1}',
    '{"type":"upsertNamespace","name":"x","labels":{}}',
    '{"type":"upsertPod","pod":{"namespace":"x","name":"a","labels":{"app":"a"},"ip":"10.0.0.1"},"local":true}',
    '{"type":"upsertPolicy","manifest":{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"p","namespace":"x"},"spec":{"podSelector":{}}}}',
    '{"type":"phase","name":"churn"}',
    '{"type":"upsertPod","pod":{"namespace":"x","name":"b","labels":{"app":"b"},"ip":"10.0.0.2"},"local":true}',
    '{"type":"deletePod","namespace":"x","name":"a"}',
    '{"type":"deletePod","namespace":"x","name":"a"}',
  ];
  return { file: tmpFile('trace.jsonl', lines.join('\n') + '\n'), line: 8 };
}

describe('replay checks the whole trace before the first write (issue 11 item 11)', () => {
  it('a well-formed event invalid against the evolving model: exit 2 naming file and line', () => {
    const { file, line } = traceWithBadLine();
    const r = cli('replay', file);
    expectBadInput(r, `${file}:${line}`);
    expect(r.err).toContain('deletePod: pod "x/a" does not exist');
    expect(r.out).toBe('');
  });
  it('deleting a missing namespace or policy, and a namespace delete taking its pods with it', () => {
    const head = '{"distillTrace":1}\n{"type":"upsertNamespace","name":"x","labels":{}}\n{"type":"upsertPod","pod":{"namespace":"x","name":"a","labels":{},"ip":"10.0.0.1"}}\n';
    const cases: [string, string][] = [
      ['{"type":"deleteNamespace","name":"y"}', 'namespace "y" does not exist'],
      ['{"type":"deletePolicy","ref":{"kind":"NetworkPolicy","namespace":"x","name":"p"}}', 'policy NetworkPolicy/x/p does not exist'],
      ['{"type":"deleteNamespace","name":"x"}\n{"type":"deletePod","namespace":"x","name":"a"}', 'pod "x/a" does not exist'],
    ];
    for (const [tail, message] of cases) {
      const file = tmpFile('t.jsonl', head + tail + '\n');
      const r = cli('replay', file);
      expectBadInput(r, `${file}:${3 + tail.split('\n').length}`);
      expect(r.err).toContain(message);
    }
  });
  it.skipIf(bpfUnavailableReason() !== null)('--backend bpf: no map is written (the pin dir is never created)', () => {
    const pinDir = `/sys/fs/bpf/distill-test-${process.pid}-${Math.random().toString(36).slice(2)}`;
    try {
      const { file, line } = traceWithBadLine();
      const r = cli('replay', file, '--backend', 'bpf', '--pin-dir', pinDir);
      expectBadInput(r, `${file}:${line}`);
      expect(existsSync(pinDir) ? readdirSync(pinDir, { recursive: true }) : []).toEqual([]);
      const ok = cli('replay', 'fixtures/traces/small.jsonl', '--backend', 'bpf', '--pin-dir', pinDir, '--limit', '5');
      expect(ok.code, ok.err).toBe(0);
      expect(readdirSync(join(pinDir, 'replay')).length).toBeGreaterThan(0);
    } finally {
      rmSync(pinDir, { recursive: true, force: true });
    }
  });
});
