import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { cli } from './cli-helpers.js';

/**
 * docs/cli.md is what an operator copies: every `$ distill ...` line in its code blocks is run here and
 * its output (stdout, then stderr without `warning:` lines) and exit status compared with the page.
 */
interface DocExample {
  readonly line: number;
  readonly args: string[];
  readonly expected: string;
  readonly exit: number | undefined;
}

/** Shown but not run: root and bpffs (bpf, clean), a shell redirection, and outputs with timings. */
const NOT_RUN = [/--backend bpf/, /\bmaps clean\b/, /[<>|]/, /^distill replay\b/];

function codeBlocks(text: string): { line: number; lines: string[] }[] {
  const blocks: { line: number; lines: string[] }[] = [];
  let current: { line: number; lines: string[] } | undefined;
  text.split('\n').forEach((l, i) => {
    if (l.startsWith('```')) {
      if (current === undefined) current = { line: i + 2, lines: [] };
      else (blocks.push(current), (current = undefined));
    } else current?.lines.push(l);
  });
  return blocks;
}

function examples(text: string): DocExample[] {
  const found: DocExample[] = [];
  for (const block of codeBlocks(text)) {
    const { lines } = block;
    for (let i = 0; i < lines.length; i++) {
      const cmd = /^\$ (distill .*)$/.exec(lines[i] ?? '')?.[1];
      if (cmd === undefined) continue;
      let j = i + 1;
      while (j < lines.length && !(lines[j] ?? '').startsWith('$ ') && !/^\(exit \d+\)$/.test(lines[j] ?? '')) j++;
      const expected = lines.slice(i + 1, j).join('\n');
      const exitLine = /^\(exit (\d+)\)$/.exec(lines[j] ?? '')?.[1] ?? (lines[j] === '$ echo $?' ? lines[j + 1] : undefined);
      if (NOT_RUN.some((re) => re.test(cmd))) continue;
      found.push({ line: block.line + i, args: cmd.split(/\s+/).slice(1), expected, exit: exitLine === undefined ? undefined : Number(exitLine) });
    }
  }
  return found;
}

const normalize = (s: string): string =>
  s
    .split('\n')
    .map((l) => l.trimEnd())
    .join('\n')
    .trim();

const shown = examples(readFileSync('docs/cli.md', 'utf8'));

describe('docs/cli.md: every example runs as shown', () => {
  it('finds the examples (trace, plan, selectors, identities, maps, validate, reach, verify, gen, usage errors)', () => {
    const commands = new Set(shown.map((e) => e.args.slice(0, e.args[0] === 'maps' ? 2 : 1).join(' ')));
    for (const c of ['trace', 'plan', 'selectors', 'identities', 'maps list', 'maps dump', 'validate', 'reach', 'verify', 'gen']) expect(commands).toContain(c);
    expect(shown.every((e) => e.exit !== undefined)).toBe(true);
  });
  it.each(shown.map((e) => [`line ${e.line}: distill ${e.args.join(' ')}`, e] as const))('%s', (_name, e) => {
    const r = cli(...e.args);
    const err = r.err
      .split('\n')
      .filter((l) => !l.startsWith('warning: '))
      .join('\n');
    expect(normalize(r.out + err)).toBe(normalize(e.expected));
    expect(r.code).toBe(e.exit);
  });
});

describe('README.md: what it says of the commands is what they do', () => {
  const readme = readFileSync('README.md', 'utf8');
  it('the gen profiles listed are the choices of --profile', () => {
    const listed = /profiles: ([a-z0-9, -]+)\)/.exec(readme)?.[1]?.split(', ');
    const choices = /Allowed choices are ([^.]+)\./.exec(cli('gen', '--profile', 'none').err)?.[1]?.split(', ');
    expect(listed).toBeDefined();
    expect(listed).toEqual(choices);
  });
  it('the commands said to take -o and -f take them', () => {
    const para = /`-o text\|wide\|json\|yaml` on ([^(]+)\(/.exec(readme)?.[1] ?? '';
    const withO = para.replace(/\s+/g, ' ').replace(' and ', ', ').replace(/maps ([a-z]+(?:\/[a-z]+)+)/, (_m: string, l: string) => l.split('/').map((x) => `maps ${x}`).join(', ')).split(', ').map((s) => s.trim()).filter((s) => s !== '');
    expect(withO.length).toBeGreaterThan(5);
    for (const c of withO) expect(cli(...c.split(' '), '--help').out, c).toContain('-o, --output');
    const withF = (/`-f FILE\|DIR\|-` \(repeatable[^)]*\) on ([a-z ,]+);/.exec(readme.replace(/\s+/g, ' '))?.[1] ?? '').replace(' and ', ', ').split(', ');
    expect(withF).toEqual(['trace', 'plan', 'validate']);
    for (const c of withF) expect(cli(c, '--help').out, c).toContain('-f, --filename');
  });
});

describe('a user asking why a flow is allowed', () => {
  it('distill explain is trace (it suggested plan before)', () => {
    const args = ['--scenario', 'fixtures/scenarios/cilium-docs/l7-star-wars.yaml', '--from', 'default/tiefighter', '--to', 'default/deathstar', '--port', '80/TCP', '-o', 'json'];
    const explain = cli('explain', ...args);
    expect(explain.code, explain.err).toBe(0);
    expect(explain.out).toBe(cli('trace', ...args).out);
    expect(cli('--help').out).toContain('trace|explain');
  });
});
