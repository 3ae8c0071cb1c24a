import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { runCli } from '../src/cli/main.js';

export interface CliResult {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

/** The real CLI entry, in-process. */
export function cli(...args: string[]): CliResult {
  let out = '';
  let err = '';
  const code = runCli(args, { out: (s) => (out += s), err: (s) => (err += s) });
  return { code, out, err };
}

export function tmpDir(): string {
  return mkdtempSync(join(tmpdir(), 'distill-cli-'));
}

export function tmpFile(name: string, text: string | Uint8Array, dir: string = tmpDir()): string {
  const f = join(dir, name);
  writeFileSync(f, text);
  return f;
}

/** A V8 stack frame (`    at f (/path/file.js:1:2)`), not a YAML error excerpt that happens to start with `at`. */
const STACK_LINE = /^ {4}at (?:.+ \()?(?:file:\/\/|\/|node:).+:\d+:\d+\)?$/m;

/** Bad input: exit 2, an `error:` line naming `source`, no stack trace. */
export function expectBadInput(r: CliResult, source: string): void {
  expect(r.code, r.err).toBe(2);
  expect(r.err).toMatch(/^error: /m);
  expect(r.err).toContain(source);
  expect(r.err).not.toMatch(STACK_LINE);
}

/** The only acceptable outcomes for any input: a clean run (0), or bad input reported (2). */
export function expectCleanOutcome(r: CliResult, source: string): void {
  if (r.code === 0) {
    expect(r.err).not.toMatch(STACK_LINE);
    return;
  }
  expectBadInput(r, source);
}

export function hasStack(s: string): boolean {
  return STACK_LINE.test(s);
}
