import { CST, Lexer, Scalar, isMap, isSeq, visit, type Document } from 'yaml';
import { ManifestError } from './errors.js';

/*
 * Where kubectl's YAML reading (apimachinery's document splitter, go-yaml v2's scanner, as vendored in
 * sigs.k8s.io/yaml: go.yaml.in/yaml/v2 scannerc.go) differs from YAML 1.2's, which the yaml package
 * reads: each check refuses a text the two read differently (attack findings 2474-2478).
 */

/**
 * Refuses a `---` line with more than a comment after it. kubectl splits a YAML file into documents
 * at lines starting with `---` (apimachinery pkg/util/yaml/decoder.go `YAMLReader.Read`) and fails on
 * one followed by anything but spaces or a comment ("invalid Yaml document separator"), so `--- ~`,
 * `--- {...}`, `--- |` or `----` never apply (attack finding 2474).
 */
export function checkSeparators(text: string, fileName: string): void {
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    if (!line.startsWith('---')) return;
    const rest = line.slice(3).trim();
    if (rest !== '' && !rest.startsWith('#')) throw new ManifestError(fileName, '', `line ${i + 1}: kubectl refuses "${line.trimEnd()}" (invalid Yaml document separator: only spaces or a comment may follow "---")`);
  });
}

/** Where go-yaml v2's scanner may start a simple key: a tab in the blanks after these fails it. */
const KEY_ALLOWED_AFTER = new Set(['doc-mode', 'byte-order-mark', 'newline', 'seq-item-ind', 'explicit-key-ind', 'map-value-ind']);

/**
 * Refuses a tab go-yaml v2 does not skip: in block context its scanner eats tabs only where no simple
 * key may start (scannerc.go `yaml_parser_scan_to_next_token`: "Tabs are allowed ... in the block
 * context, but not at the beginning of the line or after '-', '?', or ':'"), so `a:\tb`, `- \tb` and
 * a line starting with a tab fail kubectl ("found character that cannot start any token"), where the
 * yaml package reads them (attack finding 2478). Tabs inside scalars, in flow collections and after
 * a value are left alone, as go-yaml leaves them.
 */
export function checkTabs(text: string, fileName: string): void {
  if (!text.includes('\t')) return;
  let flow = 0;
  let prev = 'doc-mode';
  let line = 1;
  let inScalar = false; // the lexer gives a scalar's source after its marker
  for (const tok of new Lexer().lex(text)) {
    const type: string = inScalar ? 'scalar-source' : (CST.tokenType(tok) ?? 'other');
    inScalar = type === 'scalar';
    if (type === 'flow-map-start' || type === 'flow-seq-start') flow++;
    else if (type === 'flow-map-end' || type === 'flow-seq-end') flow--;
    else if (type === 'space' && flow === 0 && tok.includes('\t') && KEY_ALLOWED_AFTER.has(prev)) {
      throw new ManifestError(fileName, '', `line ${line}: a tab where kubectl's go-yaml fails ("found character that cannot start any token": in block context it takes a tab only after a value); use spaces`);
    }
    line += tok.split('\n').length - 1;
    if (type !== 'scalar') prev = type;
  }
}

/**
 * Refuses `\/` in a double-quoted scalar: YAML 1.2 reads it as "/", go-yaml v2 has no such escape and
 * fails the file (scannerc.go `yaml_parser_scan_flow_scalar`: "found unknown escape character"; its
 * `\'`, which YAML 1.2 lacks, the yaml package refuses already). Attack finding 2477.
 */
export function checkGoEscapes(doc: Document.Parsed, text: string, source: string): void {
  visit(doc, {
    Scalar(_, node) {
      if (node.type !== Scalar.QUOTE_DOUBLE || node.range === undefined || node.range === null) return;
      const raw = text.slice(node.range[0], node.range[1]);
      if (/(?:^|[^\\])(?:\\\\)*\\\//.test(raw)) throw new ManifestError(source, '', `the escape "\\/" in ${raw.length > 60 ? `${raw.slice(0, 60)}..."` : raw} is no escape to kubectl's go-yaml, which refuses the file: write "/"`);
    },
  });
}

/**
 * A plain scalar in a flow collection that go-yaml v2 splits: its scanner ends a plain scalar there at
 * `?` and reads `?` and a leading `:` as key and value indicators (scannerc.go
 * `yaml_parser_scan_plain_scalar`, `yaml_parser_fetch_next_token`), where YAML 1.2 keeps them in the
 * text: `{path: /v1/users/?}` is an HTTP path regex to the yaml package and, to kubectl, the path
 * "/v1/users/" followed by a key indicator where "," or "}" must come: a failed file (attack finding 2476).
 */
export function checkFlowPlain(node: Scalar, path: readonly unknown[], source: string): void {
  if (node.type !== Scalar.PLAIN) return;
  const text = String(node.source);
  if (!text.includes('?') && !text.startsWith(':')) return;
  if (!path.some((p) => (isMap(p) || isSeq(p)) && p.flow === true)) return;
  throw new ManifestError(source, '', `the plain scalar ${JSON.stringify(text)} in a flow collection ({...} or [...]) is read differently by kubectl's go-yaml, which ends a plain scalar there at "?" and takes a leading ":" as an indicator: quote it`);
}

/**
 * go-yaml v2 scans an anchor or alias name as letters, digits, `_` and `-` only, ended by a space or
 * one of `?:,]}%@` and a backquote (scannerc.go `yaml_parser_scan_anchor`), where YAML 1.2 takes any
 * character but a space and `,[]{}`: `&a.b` and `&ä` fail kubectl, and `x: &a:b 1` is the string
 * ":b 1" to it and 1 to the yaml package (attack finding 2475).
 */
export function checkAnchorName(name: string | undefined, source: string): void {
  if (name !== undefined && !/^[0-9A-Za-z_-]+$/.test(name)) throw new ManifestError(source, '', `the anchor or alias name "${name}" is read differently by kubectl's go-yaml, which takes only letters, digits, "_" and "-" in one: rename it`);
}
