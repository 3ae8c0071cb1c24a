import fc from 'fast-check';
import { copyFileSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { cli, CliResult, hasStack, tmpDir, tmpFile } from './cli-helpers.js';

/**
 * Fuzzing the real CLI entry in-process with mutations of the fixtures. Every run must end with
 * exit 0 (verify: engine and oracle agree) or exit 2 (an `error:` line naming the file, no stack
 * trace). Exit 1 (engine and oracle disagree) and 70 (a crash) are bugs. Runs are bounded by
 * count (DISTILL_FUZZ_RUNS, default 1500 per target), inputs by --max-input-bytes.
 */
const RUNS = Number(process.env.DISTILL_FUZZ_RUNS ?? 1500);
/** A hang guard, not a performance assertion: no single input may take this long. */
const HANG_MS = 20_000;
const MAX_INPUT = '2M';
/** Memory stays bounded: inputs are capped at 2 MB, so the heap never grows by anything near this. */
const MAX_HEAP_GROWTH = 1e9;

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : /\.ya?ml$/.test(e.name) ? [join(dir, e.name)] : []));
}
const SCENARIO_FILES = ['fixtures/scenarios', 'fixtures/conformance/cilium', 'fixtures/conformance/k8s', 'fixtures/conformance/npapi'].flatMap(files).sort();
const SCENARIOS = SCENARIO_FILES.map((f) => parseYaml(readFileSync(f, 'utf8')) as Json);
/** Manifests the conformance corpus accepts or refuses (each file: one or more documents). */
const MANIFESTS = ['fixtures/conformance/accept', 'fixtures/conformance/refuse'].flatMap(files).flatMap((f) => parseAllDocuments(readFileSync(f, 'utf8')).map((d) => d.toJS() as Json));
const TRACE_LINES = readFileSync('fixtures/traces/small.jsonl', 'utf8').trim().split('\n');

const PROTO_NAMES = [...Object.getOwnPropertyNames(Object.prototype), '__proto__', 'prototype'];
function deep(depth: number, leaf: Json): Json {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = i % 2 === 0 ? [v] : { a: v };
  return v;
}
/** Hostile values; deep and long ones as recipes, so fast-check can print a counterexample. */
type Hostile = { readonly json: Json } | { readonly deep: number } | { readonly long: number };
const hostileValue: fc.Arbitrary<Hostile> = fc.oneof(
  fc.constantFrom(...PROTO_NAMES).map((json) => ({ json })),
  fc.constantFrom<Json>(0, -1, 0.5, -0.5, 1e300, -1e300, 2 ** 53 + 1, 65535, 65536, 4294967296, 255, 256).map((json) => ({ json })),
  fc.constantFrom<Json>('', ' ', '*', '0.0.0.0/0', '::/0', '10.0.0.0/33', 'a/b/c', '-', '80-90', 'x'.repeat(300), '\u0000', 'é', 'k8s:', 'reserved:world').map((json) => ({ json })),
  fc.constantFrom<Json>(null, true, false, [], {}, [[]], [{}], { '': '' }).map((json) => ({ json })),
  fc.integer({ min: 10, max: 1500 }).map((deep) => ({ deep })),
  fc.integer({ min: 1000, max: 100_000 }).map((long) => ({ long })),
  fc.string({ maxLength: 20 }).map((json) => ({ json })),
  fc.integer({ min: -70000, max: 70000 }).map((json) => ({ json })),
  fc.double().map((json) => ({ json })),
);
function materialise(h: Hostile): Json {
  return 'json' in h ? h.json : 'deep' in h ? deep(h.deep, 'x') : 'y'.repeat(h.long);
}

type Op = 'delete' | 'replace' | 'swap' | 'duplicate' | 'renameKey' | 'wrap';
interface Mutation {
  /** Which node of the document (in depth-first order, modulo their count). */
  readonly node: number;
  readonly op: Op;
  /** For replace: the hostile value; swap takes the value of another node (`other`) instead. */
  readonly value: Hostile;
  readonly other: number;
  readonly key: string;
}
const mutation: fc.Arbitrary<Mutation> = fc.record({
  node: fc.nat(),
  op: fc.constantFrom<Op>('delete', 'replace', 'replace', 'swap', 'swap', 'duplicate', 'renameKey', 'wrap'),
  value: hostileValue,
  other: fc.nat(),
  key: fc.oneof(fc.constantFrom(...PROTO_NAMES), fc.string({ maxLength: 8 })),
});

/** Mutations that often keep the document valid, to reach the engine-vs-oracle comparison. */
const gentleMutation: fc.Arbitrary<Mutation> = fc.record({
  node: fc.nat(),
  op: fc.constantFrom<Op>('swap', 'duplicate', 'delete'),
  value: fc.constant({ json: null }),
  other: fc.nat(),
  key: fc.constant('k'),
});
const anyMutation = fc.oneof(mutation, gentleMutation);

type Path = readonly (string | number)[];
function children(v: Json): (string | number)[] {
  return Array.isArray(v) ? v.map((_, i) => i) : v !== null && typeof v === 'object' ? Object.keys(v) : [];
}
function child(v: Json, k: string | number): Json {
  return (v as Record<string | number, Json>)[k] as Json;
}
/** Every node's path, depth-first (the root is []). */
function nodes(v: Json, path: Path = [], out: Path[] = []): Path[] {
  out.push(path);
  for (const k of children(v)) nodes(child(v, k), [...path, k], out);
  return out;
}

function setOwn(o: { [k: string]: Json }, k: string, v: Json): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

/** A copy of v with the node at path replaced by f(node); f returning undefined deletes it. */
function update(v: Json, path: Path, f: (node: Json) => Json | undefined, depth = 0): Json | undefined {
  if (depth === path.length) return f(v);
  const at = path[depth] as string | number;
  if (Array.isArray(v)) return v.flatMap((c, i) => (i === at ? [update(c, path, f, depth + 1)].filter((x): x is Json => x !== undefined) : [c]));
  const o = v as { [k: string]: Json };
  const out: { [k: string]: Json } = {};
  for (const k of Object.keys(o)) {
    const next = k === at ? update(o[k] as Json, path, f, depth + 1) : (o[k] as Json);
    if (next !== undefined) setOwn(out, k, next);
  }
  return out;
}

/** Applies one mutation to a copy of doc. */
function mutate(doc: Json, m: Mutation): Json {
  const all = nodes(doc);
  const path = all[m.node % all.length] as Path;
  const last = path[path.length - 1];
  switch (m.op) {
    case 'replace':
      return update(doc, path, () => materialise(m.value)) ?? null;
    case 'swap': {
      const other = all[m.other % all.length] as Path;
      return update(doc, path, () => other.reduce<Json>((v, k) => child(v, k), doc)) ?? null;
    }
    case 'wrap':
      return update(doc, path, (n) => [n]) ?? null;
    case 'delete':
      return path.length === 0 ? null : (update(doc, path, () => undefined) ?? null);
    case 'duplicate':
    case 'renameKey':
      if (last === undefined) return doc;
      return update(doc, path.slice(0, -1), (parent) => {
        if (Array.isArray(parent)) return m.op === 'duplicate' ? [...parent, child(parent, last)] : parent;
        const out: { [k: string]: Json } = {};
        for (const k of Object.keys(parent as object)) setOwn(out, k === last && m.op === 'renameKey' ? m.key : k, child(parent, k));
        if (m.op === 'duplicate') setOwn(out, m.key, child(parent, last));
        return out;
      }) ?? null;
  }
}

type RawOp = { readonly kind: 'truncate' | 'flip' | 'insert'; readonly at: number; readonly byte: number; readonly text: string };
const YAML_SNIPPETS = ['&a [*a]', '*nope', '!!binary AAAA', '.inf', '.nan', '<<: *x', '? [a]\n: b', '{', ']', '"\\u', '\t', '---\n', '%YAML 1.1\n', '~', '0x1F', '1_000', "'", '[[[[[[[[[[', '\u2028'];
const rawOp: fc.Arbitrary<RawOp> = fc.record({
  kind: fc.constantFrom<RawOp['kind']>('truncate', 'flip', 'insert'),
  at: fc.nat(),
  byte: fc.integer({ min: 1, max: 255 }).map((b) => (b % 2 === 0 ? b & 0x7f || 1 : b)),
  text: fc.oneof(fc.constantFrom(...YAML_SNIPPETS), fc.string({ maxLength: 6 })),
});
function rawMutate(text: string, op: RawOp): Buffer {
  const b = Buffer.from(text);
  const at = b.length === 0 ? 0 : op.at % b.length;
  if (op.kind === 'truncate') return b.subarray(0, at);
  if (op.kind === 'flip') {
    const c = Buffer.from(b);
    c[at] = (c[at] as number) ^ (op.byte || 1);
    return c;
  }
  return Buffer.concat([b.subarray(0, at), Buffer.from(op.text), b.subarray(at)]);
}

// ------------------------------------------------------------------ accounting

const counts = new Map<string, number>();
let runs = 0;
let maxMs = 0;
const heapBase = process.memoryUsage().heapUsed;
let maxHeapGrowth = 0;
const dir = tmpDir();

/** Runs the CLI on one input and checks the outcome; returns nothing, throws on a bug. */
function check(target: string, file: string, args: string[]): CliResult {
  const t = performance.now();
  const r = cli('--max-input-bytes', MAX_INPUT, ...args);
  const ms = performance.now() - t;
  runs++;
  maxMs = Math.max(maxMs, ms);
  maxHeapGrowth = Math.max(maxHeapGrowth, process.memoryUsage().heapUsed - heapBase);
  counts.set(`${target} exit ${r.code}`, (counts.get(`${target} exit ${r.code}`) ?? 0) + 1);
  const why = `${target}: exit ${r.code}\n${r.err.slice(0, 2000)}\ninput: ${readFileSync(file, 'utf8').slice(0, 3000)}`;
  expect(ms, why).toBeLessThan(HANG_MS);
  expect(process.memoryUsage().heapUsed - heapBase, why).toBeLessThan(MAX_HEAP_GROWTH);
  expect([0, 2], why).toContain(r.code);
  expect(hasStack(r.err), why).toBe(false);
  if (r.code === 2) {
    expect(r.err, why).toMatch(/^error: /m);
    expect(r.err, why).toContain(file);
  }
  if (process.env.DISTILL_FUZZ_LOG) console.log(target, r.code, r.err.split('\n')[0]?.slice(0, 200));
  return r;
}

/**
 * The input as text. Mutations stack deep values (up to 1,500 levels each) on one another, and the
 * test's own recursion (mutate, JSON.stringify) can run out of stack before the CLI sees the input:
 * such a case is skipped (the CLI's own deep-nesting handling is tested in cli-input.test.ts).
 */
function serialise(make: () => Json | Json[], asJson: boolean, multi = false): string {
  try {
    const v = make();
    if (multi) return (v as Json[]).map((d) => JSON.stringify(d)).join('\n---\n');
    return asJson ? JSON.stringify(v) : JSON.stringify(v, null, 1);
  } catch (e) {
    if (e instanceof RangeError) fc.pre(false);
    throw e;
  }
}

/** Replays a failure fast-check printed: FUZZ_SEED=<seed> FUZZ_PATH=<path> npx vitest run test/fuzz.test.ts -t '<test>'. */
const REPLAY = process.env.FUZZ_SEED ? { seed: Number(process.env.FUZZ_SEED), ...(process.env.FUZZ_PATH ? { path: process.env.FUZZ_PATH } : {}) } : {};

describe('fuzzing the CLI with mutated fixtures', () => {
  afterAll(() => {
    const summary = [...counts].sort().map(([k, n]) => `${k}: ${n}`).join(', ');
    console.log(`fuzz: ${runs} runs (${summary}); slowest run ${maxMs.toFixed(0)} ms; max heap growth ${(maxHeapGrowth / 1e6).toFixed(1)} MB`);
  });

  it('verify --scenario: structural mutations of every scenario fixture', () => {
    fc.assert(
      fc.property(fc.nat(SCENARIOS.length - 1), fc.array(anyMutation, { minLength: 1, maxLength: 3 }), fc.boolean(), (i, ms, asJson) => {
        const file = tmpFile('fuzz.yaml', serialise(() => ms.reduce((acc, m) => mutate(acc, m), SCENARIOS[i] as Json), asJson), dir);
        // Replaying: keep the input where it can be read after the run.
        if (process.env.FUZZ_SEED) copyFileSync(file, join(tmpdir(), 'distill-fuzz-replay.yaml'));
        const r = check('verify', file, ['verify', '--scenario', file]);
        if (r.code === 0) expect(r.out).toContain('engine and naive evaluator agree on all');
      }),
      { numRuns: RUNS, ...REPLAY },
    );
  });

  it('verify --scenario: raw text mutations (truncate, flip a byte, insert YAML syntax)', () => {
    fc.assert(
      fc.property(fc.nat(SCENARIO_FILES.length - 1), fc.array(rawOp, { minLength: 1, maxLength: 3 }), (i, ops) => {
        const text = ops.reduce<Buffer>((acc, op) => rawMutate(acc.toString('latin1'), op), readFileSync(SCENARIO_FILES[i] as string));
        const file = tmpFile('raw.yaml', text, dir);
        check('verify-raw', file, ['verify', '--scenario', file]);
      }),
      { numRuns: RUNS, ...REPLAY },
    );
  });

  it('validate: mutated policies of the fixtures as multi-document manifests', () => {
    const policies = [...SCENARIOS.flatMap((s) => ((s as { policies?: Json[] }).policies ?? [])), ...MANIFESTS];
    fc.assert(
      fc.property(fc.nat(policies.length - 1), fc.array(anyMutation, { minLength: 1, maxLength: 3 }), fc.nat(3), (i, ms, extra) => {
        const docs = (): Json[] => [ms.reduce((acc, m) => mutate(acc, m), policies[i] as Json), ...policies.slice(i + 1, i + 1 + extra)];
        const file = tmpFile('m.yaml', serialise(docs, true, true), dir);
        check('validate', file, ['validate', file]);
      }),
      { numRuns: RUNS, ...REPLAY },
    );
  });

  it('replay: mutated trace lines (structural and raw), with periodic verification', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(TRACE_LINES.length - 1), anyMutation), { minLength: 1, maxLength: 3 }), fc.oneof({ arbitrary: fc.constant(undefined), weight: 4 }, { arbitrary: rawOp, weight: 1 }), (ms, raw) => {
        const lines = [...TRACE_LINES];
        for (const [i, m] of ms) lines[i] = JSON.stringify(mutate(JSON.parse(lines[i] as string) as Json, m));
        const text = raw ? rawMutate(lines.join('\n'), raw) : lines.join('\n');
        const file = tmpFile('t.jsonl', text, dir);
        check('replay', file, ['replay', file, '--verify-every', '10']);
      }),
      { numRuns: RUNS, ...REPLAY },
    );
    // 1,500 replays with verification take ~40 s alone and over 60 s on a loaded 2-core machine.
  }, 240_000);
});
