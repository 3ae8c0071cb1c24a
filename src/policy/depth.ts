import { ManifestError } from './errors.js';

/**
 * How deep parsed input may nest. Every manifest, scenario, trace line and watch event distill
 * reads is at most ~15 levels deep; the readers recurse over what they read. Deeper input used to
 * be caught as a stack overflow, but V8 aborts the whole process ("RegExpCompiler Allocation
 * failed") when a regular expression is first compiled with the stack nearly exhausted, so the
 * depth is checked up front, without recursion.
 */
const MAX_INPUT_DEPTH = 64;

/** Refuses `v` when arrays and objects nest in it more than MAX_INPUT_DEPTH levels deep. */
export function checkInputDepth(v: unknown, source: string): void {
  const stack: [unknown, number][] = [[v, 1]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop() as [unknown, number];
    if (typeof node !== 'object' || node === null) continue;
    if (depth > MAX_INPUT_DEPTH) throw new ManifestError(source, '', `nests arrays and objects more than ${MAX_INPUT_DEPTH} levels deep`);
    for (const child of Array.isArray(node) ? node : Object.values(node)) stack.push([child, depth + 1]);
  }
}
