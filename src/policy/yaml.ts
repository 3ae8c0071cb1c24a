import { Document, isAlias, isMap, isScalar, isSeq, parseAllDocuments, parseDocument, ScalarTag, Tags, visit, type Node, type YAMLMap } from 'yaml';
import { checkAnchorName, checkFlowPlain, checkGoEscapes, checkSeparators, checkTabs } from './go-yaml-text.js';
import { ManifestError } from './errors.js';
import { checkInputDepth, checkYamlDepth, MAX_INPUT_DEPTH, tooDeep } from './depth.js';
import { aliasTargets, checkAliasing, isMergeKey, type AliasTargets } from './go-yaml-aliases.js';
import { convertDocument } from './yaml-convert.js';

/** go-yaml v2's words for floats (resolve.go `resolveMapList`); the core schema reads them the same. */
const GO_FLOAT_WORDS = new Map<string, number>([
  ...['.nan', '.NaN', '.NAN'].map((w): [string, number] => [w, NaN]),
  ...['.inf', '.Inf', '.INF', '+.inf', '+.Inf', '+.INF'].map((w): [string, number] => [w, Infinity]),
  ...['-.inf', '-.Inf', '-.INF'].map((w): [string, number] => [w, -Infinity]),
]);
/** `strconv.ParseInt(s, 0, 64)`'s syntax (prefixes in either case; a leading `0` is octal). */
const GO_INT = /^[-+]?(?:0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)$/;
/** resolve.go `yamlStyleFloat`, tried on the text without `_`. */
const GO_STYLE_FLOAT = /^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$/;
/** What `strconv.ParseFloat` takes after a leading `.` (Go literal syntax: `_` only between digits). */
const GO_DOT_FLOAT = /^\.[0-9](?:_?[0-9])*(?:[eE][-+]?[0-9](?:_?[0-9])*)?$/;

function goIntValue(plain: string): number {
  const sign = plain.startsWith('-') ? -1 : 1;
  const body = plain.replace(/^[-+]/, '');
  const prefix = body.slice(0, 2).toLowerCase();
  const [digits, base] = prefix === '0x' ? [body.slice(2), 16] : prefix === '0o' ? [body.slice(2), 8] : prefix === '0b' ? [body.slice(2), 2] : body.startsWith('0') ? [body, 8] : [body, 10];
  return sign * Number.parseInt(digits, base) + 0; // + 0: Go has no -0
}

/** A finite float, or the text: ParseFloat's range error leaves go-yaml's scalar a string (`1e400`). */
function goFloatValue(plain: string, text: string): number | string {
  const f = Number(plain);
  return Number.isFinite(f) ? f : text;
}

/**
 * A plain scalar starting with a digit, a sign or `.`, as go-yaml v2 (sigs.k8s.io/yaml goyaml.v2
 * resolve.go `resolve`, hints 'D', 'S' and '.') reads it: every `_` dropped, then
 * `strconv.ParseInt(plain, 0, 64)` (so `010` is 8, `0X50` and `0x_50` are 80, `0O17` is 15, `-0x5` is
 * -5), then `yamlStyleFloat` (`1_0.5` is 10.5, `0_8` is 8); a float out of range stays text. YAML 1.2's
 * core schema reads several of these as strings, which then passed as label values or names that the
 * API server refuses as numbers (attack finding 1100). A timestamp (`2001-12-14`) is never a number
 * and stays a string, as go-yaml's decoder keeps it for an interface{}.
 */
function goScalar(text: string): number | string {
  const word = GO_FLOAT_WORDS.get(text);
  if (word !== undefined) return word;
  if (text.startsWith('.')) return GO_DOT_FLOAT.test(text) ? goFloatValue(text.replace(/_/g, ''), text) : text;
  const plain = text.replace(/_/g, '');
  if (GO_INT.test(plain)) return goIntValue(plain);
  return GO_STYLE_FLOAT.test(plain) ? goFloatValue(plain, text) : text;
}

/** Tried before the core tags on every plain scalar that could be a Go number. */
const GO_NUMBER: ScalarTag = {
  tag: 'tag:yaml.org,2002:int',
  default: true,
  identify: (v) => typeof v === 'number',
  test: /^[-+.0-9][-+.0-9a-zA-Z_]*$/,
  resolve: goScalar,
};

/**
 * An explicit tag whose Go meaning is a different string: go-yaml v2 decodes `!!binary` from base64
 * and `!!timestamp` to a time.Time that sigs.k8s.io/yaml writes back as RFC 3339 (decode.go
 * `scalar`). Refused rather than read as the text written (attack finding 875).
 */
function refusedTag(name: string): ScalarTag {
  return {
    tag: `tag:yaml.org,2002:${name}`,
    identify: () => false,
    resolve: (s, onError) => {
      onError(`the tag !!${name} is not supported (kubectl's go-yaml reads it as a different value)`);
      return s;
    },
  };
}

/**
 * Pinned to YAML 1.2's core schema whatever a `%YAML 1.1` directive says, without the yaml package's
 * "known tags": `!!set`, `!!omap`, `!!pairs`, `!!binary`, `!!timestamp` (and 1.1's plain timestamps)
 * would make a JavaScript Set, Map, Buffer or Date, which no Go decoder makes and which the readers
 * saw as an empty object, i.e. an empty selector (attack finding 875). go-yaml ignores a tag on a
 * collection, and so does the core schema (a warning). Duplicate keys are refused by `checkYamlKeys`
 * (the package's own check is quadratic in a map's size: finding 877).
 */
const OPTIONS = {
  prettyErrors: true,
  logLevel: 'error' as const,
  schema: 'core',
  resolveKnownTags: false,
  uniqueKeys: false,
  customTags: (tags: Tags): Tags => [GO_NUMBER, refusedTag('binary'), refusedTag('timestamp'), ...tags],
};

/**
 * A boolean as kubectl reads a manifest: go-yaml v2 (sigs.k8s.io/yaml goyaml.v2/resolve.go) takes
 * `y`, `yes`, `on` (and `n`, `no`, `off`, each also capitalised or upper case) as booleans, which
 * YAML 1.2 reads as strings. A label `exposed: yes` is `true` to kubectl, which the API server
 * refuses as a label value; read as "yes", distill enforced a policy the cluster never holds. A
 * key `on:` becomes "true" (sigs.k8s.io/yaml convertToJSONableObject).
 */
const GO_BOOL: ScalarTag = {
  tag: 'tag:yaml.org,2002:bool',
  default: true,
  identify: (v) => typeof v === 'boolean',
  test: /^(?:y|Y|yes|Yes|YES|on|On|ON|n|N|no|No|NO|off|Off|OFF)$/,
  resolve: (s) => /^(?:y|Y|yes|Yes|YES|on|On|ON)$/.test(s),
};
/**
 * Manifests (what kubectl applies), with go-yaml v2's booleans and merge keys (`<<: *base`,
 * resolve.go's yaml_MERGE_TAG; a key written after `<<` wins, one written before it is refused:
 * `checkYamlKeys`); scenario files are distill's own format and keep YAML 1.2's.
 */
const MANIFEST_OPTIONS = { ...OPTIONS, merge: true, customTags: (tags: Tags): Tags => [GO_BOOL, ...OPTIONS.customTags(tags)] };

function toValue(doc: Document.Parsed, source: string, manifest: boolean): unknown {
  const err = doc.errors[0];
  if (err) throw new ManifestError(source, '', `invalid YAML: ${err.message}`);
  if (manifest) readAsGoYaml(doc, source);
  const targets = aliasTargets(doc);
  checkYamlKeys(doc, targets, source);
  checkAliasing(doc, targets, source);
  let value: unknown;
  try {
    // Resolving aliases can still fail (an alias to a missing anchor, the yaml package's alias budget).
    value = convertDocument(doc, targets);
  } catch (e) {
    throw new ManifestError(source, '', `invalid YAML: ${(e as Error).message}`);
  }
  checkInputDepth(value, source);
  return value;
}

type GoTag = 'null' | 'bool' | 'int' | 'float' | 'str';
const CORE = 'tag:yaml.org,2002:';
/** The explicit tags go-yaml v2 resolves (resolve.go `resolvableTag`; `!!timestamp` is refused above). */
const RESOLVED_TAGS = new Set<string>(['null', 'bool', 'int', 'float'].map((t) => CORE + t));
/** resolve.go `resolveMapList`: the words looked up before any number syntax. */
const GO_WORDS = new Map<string, [GoTag, unknown]>([
  ...['y', 'Y', 'yes', 'Yes', 'YES', 'true', 'True', 'TRUE', 'on', 'On', 'ON'].map((w): [string, [GoTag, unknown]] => [w, ['bool', true]]),
  ...['n', 'N', 'no', 'No', 'NO', 'false', 'False', 'FALSE', 'off', 'Off', 'OFF'].map((w): [string, [GoTag, unknown]] => [w, ['bool', false]]),
  ...['', '~', 'null', 'Null', 'NULL'].map((w): [string, [GoTag, unknown]] => [w, ['null', null]]),
  ...[...GO_FLOAT_WORDS].map(([w, v]): [string, [GoTag, unknown]] => [w, ['float', v]]),
]);

/** What go-yaml v2's `resolve` makes of a scalar's text under an explicit tag (no timestamp tried). */
function goResolve(text: string): [GoTag, unknown] {
  const word = GO_WORDS.get(text);
  if (word !== undefined) return word;
  if (!/^[-+.0-9]/.test(text)) return ['str', text];
  const v = goScalar(text);
  if (typeof v !== 'number') return ['str', text];
  return [!text.startsWith('.') && GO_INT.test(text.replace(/_/g, '')) ? 'int' : 'float', v];
}

/**
 * `.inf`, `-.inf`, `.nan` as a value anywhere in the document (an ignored field, `status`, an annotation too): go-yaml
 * makes a float64 that sigs.k8s.io/yaml's YAMLToJSON hands to encoding/json, which refuses it ("json: unsupported
 * value: +Inf"), so kubectl applies nothing of the file (attack finding 2531). As a map key it is the text "+Inf".
 */
function checkFiniteValue(node: { value: unknown; source?: unknown }, source: string): void {
  if (typeof node.value !== 'number' || Number.isFinite(node.value)) return;
  throw new ManifestError(source, '', `the value ${String(node.source)} is not finite: kubectl's YAML-to-JSON conversion refuses the file (json: unsupported value)`);
}

/**
 * Checks anchor names (`checkAnchorName`) and gives a scalar with an explicit `!!int`, `!!float`, `!!bool` or `!!null` tag go-yaml v2's value, or
 * refuses it as kubectl does. go-yaml resolves the text and fails unless it is of the tag's type
 * (resolve.go `resolve`: "cannot decode !!str `80x` as a !!int"; an integer under `!!float` is a
 * float), where the yaml package tries only its own tags' patterns and keeps the text on a miss:
 * `port: !!float 80` was the string "80" (kubectl: the number 80) and `!!int 80x`, `!!bool 1`,
 * `!!null x` strings kubectl never applies (attack finding 2470).
 */
function readAsGoYaml(doc: Document.Parsed, source: string): void {
  visit(doc, {
    Node(_, node) {
      checkAnchorName(isAlias(node) ? node.source : node.anchor, source);
    },
    Scalar(key, node, path) {
      checkAnchorName(node.anchor, source);
      checkFlowPlain(node, path, source);
      if (node.tag !== undefined && RESOLVED_TAGS.has(node.tag)) {
        const want = node.tag.slice(CORE.length);
        const text = String(node.source);
        const [tag, value] = goResolve(text);
        if (tag !== want && !(want === 'float' && tag === 'int')) {
          throw new ManifestError(source, '', `cannot decode !!${tag} \`${text}\` as a !!${want} (kubectl's go-yaml refuses the file)`);
        }
        node.value = value;
      }
      if (key !== 'key') checkFiniteValue(node, source);
    },
  });
}

/** A line break of YAML 1.1 that YAML 1.2 reads as text: a CR not followed by LF, NEL, LS, PS. */
const GO_ONLY_LINE_BREAK = /\r(?!\n)|[\u0085\u2028\u2029]/;

/**
 * Refuses a text with a line break only go-yaml sees. go-yaml v2 (kubectl's, a libyaml port) takes CR,
 * LF, NEL, LS and PS as line breaks (yamlprivateh.go `is_break`), so `# note<LS>  ingress: [{}]` is a
 * comment and then a rule to kubectl, and one comment to the yaml package (YAML 1.2 breaks are CR
 * and LF only, and it reads a lone CR as text): distill read a deny-all policy the cluster holds as
 * an allow-all one (attack finding 1102).
 */
function checkLineBreaks(text: string, source: string): void {
  const m = GO_ONLY_LINE_BREAK.exec(text);
  if (!m) return;
  const line = text.slice(0, m.index).split('\n').length;
  const name = m[0] === '\r' ? 'a CR without LF' : `U+${m[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;
  throw new ManifestError(source, '', `line ${line}: ${name} is a line break to kubectl's go-yaml and text to YAML 1.2, so the two read this file differently; use LF or CRLF line ends`);
}

/**
 * Where the JSON value that opens at `start` (`{` or `[`) closes (the index after it), or -1 when it does not, or -2
 * when it nests deeper than MAX_INPUT_DEPTH (JSON.parse of a 6 MB `[[[…` took 4 s: attack finding 3822).
 */
function jsonValueEnd(text: string, start: number): number {
  let depth = 0;
  for (let i = start; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // a string: skip to its closing quote, past escapes
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++;
      if (i >= text.length) return -1;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > MAX_INPUT_DEPTH) return -2;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return -1;
}

/** What Go's json.Decoder skips between values (scanner.go `isSpace`); a byte order mark is not. */
const JSON_SPACE = /[ \t\r\n]/;

/**
 * The values of a text that is a stream of two or more JSON objects (or arrays), one after another,
 * each valid JSON; `undefined` for every other text. kubectl reads a file whose first non-space
 * character is `{` as a JSON stream (k8s.io/apimachinery pkg/util/yaml/decoder.go: `YAMLOrJSONDecoder.Decode`
 * picks JSON by `GuessJSONStream`/`hasJSONPrefix` and reads it with Go's `json.Decoder`, one value per
 * `Decode`), so `kubectl get -o json` run twice into one file, or `kubectl get --watch -o json`,
 * applies object by object; the yaml package refused it as one invalid document (attack finding 2120).
 */
function jsonStreamValues(text: string, fileName: string): string[] | undefined {
  const values: string[] = [];
  // kubectl drops a byte order mark at the start of a file or stdin (cli-runtime FileVisitor, `unicode.BOMOverride`);
  // one between values stops Go's json.Decoder, and after two values kubectl reads no further: not a stream
  // here (read as YAML, so refused) rather than read on (review 26t, finding 2171).
  let i = text.startsWith('\uFEFF') ? 1 : 0;
  for (;;) {
    while (i < text.length && JSON_SPACE.test(text[i] as string)) i++;
    if (i >= text.length) break;
    const c = text[i];
    if (c !== '{' && (c !== '[' || values.length === 0)) return undefined;
    const end = jsonValueEnd(text, i);
    if (end === -2 && values.length > 0) throw tooDeep(`${fileName}#${values.length + 1}`);
    if (end < 0) return undefined;
    values.push(text.slice(i, end));
    i = end;
  }
  if (values.length < 2) return undefined; // one value (or none) is read as YAML, as always
  try {
    for (const v of values) JSON.parse(v);
  } catch {
    return undefined;
  }
  return values;
}

/**
 * Refuses a JSON text with a number a float64 cannot hold (`1e400`). kubectl reads a text that opens
 * with `{` with Go's json.Decoder and decodes each object with sigs.k8s.io/json, which fails on it
 * ("cannot unmarshal number 1e400 into Go value of type float64"), as the API server does; the
 * YAML reader made it the string "1e400" (go-yaml's reading of a YAML file), so `{"app": 1e400}` was a
 * label value kubectl never applies (review 26t, finding 2173). A text that is not JSON is left to the
 * YAML reader, as kubectl leaves it. Returns whether the text is JSON.
 */
function checkJsonNumbers(json: string, source: string): boolean {
  let bad: string | undefined;
  try {
    JSON.parse(json, (key, v: unknown) => {
      if (typeof v === 'number' && !Number.isFinite(v)) bad ??= key;
      return v;
    });
  } catch {
    return false;
  }
  if (bad === undefined) return true;
  throw new ManifestError(source, '', `a JSON number (at key ${JSON.stringify(bad)}) is out of range: kubectl's JSON decoder refuses it (a float64 holds at most about 1.8e308); quote it if it is a string`);
}

/** Every document of a multi-document manifest text (kubectl's scalars); `#n` (from 1) names document n in errors (value n of a JSON stream). */
export function loadYamlDocuments(text: string, fileName: string): { source: string; value: unknown }[] {
  checkLineBreaks(text, fileName);
  const stream = jsonStreamValues(text, fileName);
  if (stream !== undefined) {
    return stream.map((json, i) => {
      const source = `${fileName}#${i + 1}`;
      checkYamlDepth(json, source);
      checkJsonNumbers(json, source);
      return { source, value: toValue(parseDocument(json, MANIFEST_OPTIONS), source, true) };
    });
  }
  checkYamlDepth(text, fileName);
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  // A JSON object is JSON to kubectl (its decoder takes `\/`); anything else is go-yaml's.
  const json = /^[ \t\r\n]*\{/.test(body) && checkJsonNumbers(body, `${fileName}#1`);
  checkSeparators(body, fileName);
  if (!json) checkTabs(body, fileName);
  const parsed = parseAllDocuments(text, MANIFEST_OPTIONS);
  if (!Array.isArray(parsed)) return []; // an empty stream
  return parsed.map((d, i) => {
    const source = `${fileName}#${i + 1}`;
    if (i > 0 && d.directives.docStart !== true) throw new ManifestError(source, '', 'a document after "..." without "---": kubectl splits a file only at "---" lines and decodes one document of each part (sigs.k8s.io/yaml), so it never applies this one; start it with "---"');
    if (!json) checkGoEscapes(d, text, source);
    return { source, value: toValue(d, source, true) };
  });
}


/** A single-document YAML text (a scenario). */
export function loadYaml(text: string, source: string): unknown {
  checkLineBreaks(text, source);
  checkYamlDepth(text, source);
  const doc = parseDocument(text, OPTIONS);
  // The yaml package's own words ("please use YAML.parseAllDocuments()") name its API, not the fix.
  const multiple = doc.errors.find((e) => e.code === 'MULTIPLE_DOCS');
  if (multiple !== undefined) throw new ManifestError(source, '', `line ${multiple.linePos?.[0].line ?? '?'}: a second YAML document ("---"): a scenario is one document`);
  return toValue(doc, source, false);
}

/** A map key as sigs.k8s.io/yaml's JSON key (its text) and go-yaml's Go map key (the text and its type). */
interface KeyId {
  readonly text: unknown;
  readonly type: string;
}

/**
 * A map key's JSON text as `convertToJSONableObject` writes it (`1`, `"1"` and `!!str 1` are all "1";
 * `true`, `on` and `"true"` all "true"), and the type go-yaml keys its Go map with. A list or map key
 * is its node (checkKeyText refuses it).
 */
function keyOf(key: unknown): KeyId {
  if (!isScalar(key)) return { text: key, type: 'node' };
  const v = key.value;
  return typeof v === 'number' || typeof v === 'boolean' ? { text: String(v), type: typeof v } : { text: v, type: typeof v };
}

/**
 * Adds a key to a mapping's keys (text -> type). Two keys of one text and different types are two
 * entries of go-yaml's Go map that `convertToJSONableObject` writes to one JSON key in Go's random map
 * order: kubectl stores either value, the yaml package the last (attack finding 1540).
 */
function addKey(keys: Map<unknown, string>, k: KeyId, source: string): void {
  const type = keys.get(k.text);
  if (type !== undefined && type !== k.type) {
    throw new ManifestError(source, '', `the keys ${JSON.stringify(String(k.text))} as ${type} and as ${k.type} are one key to kubectl, which keeps one of the two values at random (sigs.k8s.io/yaml writes both to the JSON key ${JSON.stringify(String(k.text))}): write the key once`);
  }
  keys.set(k.text, k.type);
}

/**
 * Refuses, in linear time, a mapping that repeats a key (what `uniqueKeys` refused) or whose merge
 * key `<<` would give a key the mapping already set before it. go-yaml v2 (sigs.k8s.io/yaml's
 * decoder, so kubectl's) merges in order and lets the merged value overwrite (decode.go `mapping`
 * calls `merge` in place, which `SetMapIndex`es over earlier keys; strict decoding refuses it as "key
 * already set in map"); the yaml package keeps the earlier key. Refusing the ambiguous case reads no
 * manifest differently from kubectl (attack finding 876).
 */
function checkYamlKeys(doc: Document.Parsed, targets: AliasTargets, source: string): void {
  const memo = new Map<Node, Map<unknown, string>>();
  visit(doc, {
    Map(_, map) {
      const own = new Set<unknown>(); // keys written in the mapping
      const set = new Map<unknown, string>(); // and those merged so far, text -> type
      for (const pair of map.items) {
        if (isMergeKey(pair.key)) {
          // go-yaml v2 `merge`: an alias must name a mapping ("map merge requires map or sequence of
          // maps as the value"); the yaml package also merges an alias of a list (finding 879).
          if (isAlias(pair.value) && !isMap(targets.get(pair.value))) throw new ManifestError(source, '', 'the merge key "<<" names an alias of a list or a scalar: kubectl\'s go-yaml merges only an alias of a mapping');
          for (const [text, type] of mergedKeys(targets, pair.value as Node | null, memo, source)) {
            if (set.has(text)) throw new ManifestError(source, '', `the merge key "<<" sets ${JSON.stringify(String(text))}, which the mapping already set before it: kubectl's go-yaml lets the merge win, the YAML merge spec the earlier key; put "<<" first`);
            set.set(text, type);
          }
          continue;
        }
        checkKeyText(pair.key, isScalar(pair.key) ? pair.key.value : pair.key, source);
        const k = keyOf(pair.key);
        if (own.has(k.text) && set.get(k.text) === k.type) throw new ManifestError(source, '', `invalid YAML: the key ${JSON.stringify(String(k.text))} appears twice in one mapping`);
        addKey(set, k, source);
        own.add(k.text);
      }
    },
  });
}

/**
 * A map key that sigs.k8s.io/yaml turns into the same text as JavaScript does: a string, a boolean,
 * or an integer written in decimal. Its `convertToJSONableObject` writes a float key with
 * `FormatFloat(k, 'g', -1, 32)` (`1e7` -> "1e+07", `3.14159265358979` -> "3.1415927") and refuses a
 * null, list or map key (go-yaml: "invalid map key"); JavaScript writes "10000000", the full digits,
 * "" and "[ a ]", and rounds an integer past 2^53 (attack finding 878).
 */
function checkKeyText(key: unknown, k: unknown, source: string): void {
  if (typeof k === 'string' || typeof k === 'boolean') return;
  const text = isScalar(key) ? key.source : undefined;
  const float = isScalar(key) && key.tag === `${CORE}float`; // a Go float64 key, whatever its text
  if (typeof k === 'number' && !float && Number.isSafeInteger(k) && typeof text === 'string' && /^-?(?:0|[1-9][0-9]*)$/.test(text)) return;
  const shown = typeof text === 'string' ? JSON.stringify(text) : 'that is a list, a map or nothing';
  throw new ManifestError(source, '', `the map key ${shown} is not read as kubectl reads it (sigs.k8s.io/yaml writes a number key in Go's float format and refuses null, list and map keys): quote it`);
}

/**
 * The keys a merge value brings (aliases resolved; a merged mapping's own merges included). Memoized
 * per node, so `<<: [*a, *a, …]` nested many levels deep costs its size, not a power of it.
 */
function mergedKeys(targets: AliasTargets, value: Node | null, memo: Map<Node, Map<unknown, string>>, source: string, depth = 0): Map<unknown, string> {
  const target = isAlias(value) ? targets.get(value) : value;
  if (!target) return new Map();
  const known = memo.get(target);
  if (known) return known;
  const out = new Map<unknown, string>();
  memo.set(target, out);
  if (depth > 64) return out;
  const maps = isSeq(target) ? target.items.map((it) => (isAlias(it) ? targets.get(it) : it)) : [target];
  for (const m of maps) {
    if (!isMap(m)) continue;
    for (const pair of (m as YAMLMap).items) {
      if (isMergeKey(pair.key)) for (const [text, type] of mergedKeys(targets, pair.value as Node | null, memo, source, depth + 1)) addKey(out, { text, type }, source);
      else addKey(out, keyOf(pair.key), source);
    }
  }
  return out;
}
