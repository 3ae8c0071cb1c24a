import { CST, Lexer, Parser } from 'yaml';
import { ManifestError } from './errors.js';

/**
 * How deep parsed input may nest. Every manifest, scenario, trace line and watch event distill
 * reads is at most ~15 levels deep; the readers recurse over what they read. Deeper input used to
 * be caught as a stack overflow, but V8 aborts the whole process ("RegExpCompiler Allocation
 * failed") when a regular expression is first compiled with the stack nearly exhausted, so the
 * depth is checked up front, without recursion.
 */
export const MAX_INPUT_DEPTH = 64;

/** The one refusal of every depth check (`where`: the path inside `source`, if known). */
export function tooDeep(source: string, where = ''): ManifestError {
  return new ManifestError(source, where, `nests arrays and objects more than ${MAX_INPUT_DEPTH} levels deep`);
}

/** Refuses `v` when arrays and objects nest in it more than MAX_INPUT_DEPTH levels deep. */
export function checkInputDepth(v: unknown, source: string): void {
  const stack: [unknown, number][] = [[v, 1]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop() as [unknown, number];
    if (typeof node !== 'object' || node === null) continue;
    if (depth > MAX_INPUT_DEPTH) throw tooDeep(source);
    for (const child of Array.isArray(node) ? node : Object.values(node)) stack.push([child, depth + 1]);
  }
}

/**
 * Refuses a YAML text whose collections nest more than MAX_INPUT_DEPTH levels deep, before it is
 * composed: the yaml package composes recursively (a flow `[[[…` ~800 deep overflows the stack, and
 * its scalar resolution compiles a regular expression per call, so V8 can abort the process there:
 * attack finding 526). Its CST parser keeps its own stack, so this walk cannot overflow.
 */
export function checkYamlDepth(text: string, source: string): void {
  checkFlowDepth(text, source);
  for (const token of new Parser().parse(text)) {
    if (token.type !== 'document') continue;
    const stack: [CST.Token | null | undefined, number][] = [[token.value, 0]];
    while (stack.length > 0) {
      const [node, depth] = stack.pop() as [CST.Token | null | undefined, number];
      if (!node || (node.type !== 'block-map' && node.type !== 'block-seq' && node.type !== 'flow-collection')) continue;
      if (depth >= MAX_INPUT_DEPTH) throw tooDeep(source);
      for (const item of node.items) stack.push(['key' in item ? item.key : undefined, depth + 1], [item.value, depth + 1]);
    }
  }
}

/**
 * Refuses flow collections (`[`, `{`) nested more than MAX_INPUT_DEPTH deep from the lexer's token
 * stream, which it stops reading there. The CST parser holds every open level of a flow `[[[…` at
 * once: a 2 MB one cost 2.5 GB and 29 s before the walk could refuse it (attack finding 3820).
 * go-yaml stops at 10,000 levels for the same reason (scannerc.go max_flow_level, CVE-2019-11254).
 */
function checkFlowDepth(text: string, source: string): void {
  let depth = 0;
  for (const token of new Lexer().lex(text)) {
    if (token === '[' || token === '{') depth++;
    else if (token === ']' || token === '}') depth = Math.max(0, depth - 1);
    else if (token === CST.DOCUMENT) depth = 0;
    if (depth > MAX_INPUT_DEPTH) throw tooDeep(source);
  }
}

/**
 * Refuses a JSON text nested more than MAX_INPUT_DEPTH deep by scanning it (strings skipped), before JSON.parse
 * builds it: a 4 MB trace line `[[[…` took JSON.parse and checkInputDepth 5.6 s (attack finding 3823). Texts
 * shorter than `from` are left to checkInputDepth, which costs less than the scan there.
 */
export function checkJsonTextDepth(text: string, source: string, from = 4096): void {
  if (text.length < from) return;
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > MAX_INPUT_DEPTH) throw tooDeep(source);
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
}
